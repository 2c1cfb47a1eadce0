"""
The event stream's targets, measured: many subscribers to one show on one gateway.

The ``events`` scenario of the harness (``python -m bench.run`` runs it with the rest;
``python -m bench.events_bench`` runs it alone, with the same processes). The harness
starts a simulator of its own (a small farm that moves, so progress events flow as on a
real farm) and a gateway as operators run it (``twistd -n opencue-gateway``), then
:func:`measure` here:

* opens N streams to ``/api/v1/events?show=testing``, each with its own token (so the
  per-caller limit does not apply), and waits until every one is open and polling is
  steady;
* over the window, pauses and resumes jobs of the show through the gateway at known
  times, at a spacing that is not a multiple of the interval so the changes fall at
  every phase of the poll, and times when each subscriber receives the matching job
  event: the latency of an event is from the moment its change was sent to Cuebot to
  the moment a subscriber has read it (target: interval + 100 ms at p99, every
  delivery of every change; a delivery that never came counts as a miss);
* counts the Cuebot calls of the window with the simulator's counter: the show's poll
  is one ``GetJobs`` per interval whatever the number of subscribers (``GetJob`` calls
  for jobs that left the unfinished list are shown beside it);
* takes the gateway process's CPU over the window and its RSS growth from before the
  first subscriber to after the last one is in, per subscriber;
* then kills jobs through the gateway, each at a random phase of the poll, and times
  the job event that says so (``finished``) on the streams (target: within one
  interval).

Each latency is split in two with the simulator's record of when the show's polls
reached it: the wait for the poll that saw the change (up to the poll's spacing, which
is the interval plus the time a poll takes, as the next poll is scheduled an interval
after the answer), and the time from that poll's call to the delivery (Cuebot's answer,
the diff, the fan-out and this client's reading), which does not depend on the phase.

One asyncio client reads all N sockets, so its own reading is part of every latency;
the gateway's share (the ``opencue_gateway_event_fanout_seconds`` histogram, as the
upper bound of the bucket holding its p99) is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import re
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.clients import percentile, post_once
from opencue_gw.auth.tokens import mint_token

EVENTS_PATH = "/api/v1/events?show=testing"
PAUSE = "/job.JobInterface/Pause"
RESUME = "/job.JobInterface/Resume"
KILL = "/job.JobInterface/Kill"
POLL = "/job.JobInterface/GetJobs"  # a show's poll
DEPARTED = "/job.JobInterface/GetJob"  # what became of a job that left the show's list
_FANOUT = re.compile(
    r'^opencue_gateway_event_fanout_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M
)


@dataclass
class Change:
    """One change made through the gateway, and when each subscriber saw it."""

    job_id: str
    marker: str  # the name in the event's "changes" that says this change happened
    sent: float  # time.monotonic() just before the request went out
    got: dict[int, float] = field(default_factory=dict)  # subscriber -> seconds after sent
    answered: int = 0  # HTTP status of the change request

    def __post_init__(self) -> None:
        self.needle = self.job_id.encode()


class Watch:
    """What the streams saw: deliveries of the pending changes, drops, refusals."""

    def __init__(self) -> None:
        self.pending: list[Change] = []
        self.connected = 0
        self.refused: dict[int, int] = {}
        self.dropped = 0
        self.closed = 0
        self.events = 0

    def blocks(self, subscriber: int, blocks: Sequence[bytes], now: float) -> None:
        """SSE event blocks one subscriber has just read, at ``now``."""
        for block in blocks:
            if b"event: dropped" in block:
                self.dropped += 1
                continue
            if b"event: job" not in block:
                continue
            self.events += 1
            for change in self.pending:
                if subscriber in change.got or change.needle not in block:
                    continue
                data = _data(block)
                job = data.get("job", {})
                if job.get("id") == change.job_id and change.marker in data.get("changes", ()):
                    change.got[subscriber] = now - change.sent


def _data(block: bytes) -> dict[str, Any]:
    for line in block.split(b"\n"):
        if line.startswith(b"data: "):
            found: dict[str, Any] = json.loads(line[6:])
            return found
    return {}


async def _stream(
    subscriber: int, port: int, token: str, watch: Watch, stop: asyncio.Event
) -> None:
    """One subscriber: read the stream (chunked or not) until told to stop."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    except OSError:
        watch.refused[0] = watch.refused.get(0, 0) + 1
        return
    try:
        writer.write(
            (
                f"GET {EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split()[1])
        if status != 200:
            watch.refused[status] = watch.refused.get(status, 0) + 1
            return
        watch.connected += 1
        chunked = b"transfer-encoding: chunked" in head.lower()
        buffer = b""
        while not stop.is_set():
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    break
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(1 << 16)
                if not data:
                    break
            now = time.monotonic()
            buffer += data
            if b"\n\n" in buffer:
                *blocks, buffer = buffer.split(b"\n\n")
                watch.blocks(subscriber, blocks, now)
        watch.closed += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        watch.closed += 1
    finally:
        writer.close()


@dataclass
class EventsReport:
    """The figures of one run of :func:`measure`."""

    subscribers: int
    connected: int
    refused: dict[int, int]
    interval: float
    window: float
    calls: dict[str, int]  # Cuebot calls of the window, by method
    changes: list[Change]
    kills: list[Change]
    dropped: int
    events_read: int
    cpu_seconds: float | None
    rss_growth: int | None
    fanout_p99: float | None  # the gateway's own, seconds (bucket bound)
    polls_at: list[float] = field(default_factory=list)  # the show's polls at Cuebot, monotonic

    def detecting_poll(self, change: Change) -> float | None:
        """When the poll that saw ``change`` reached Cuebot: the last one before its event."""
        if not change.got or not self.polls_at:
            return None
        first = change.sent + min(change.got.values())
        i = bisect.bisect_right(self.polls_at, first)
        return self.polls_at[i - 1] if i else None

    def split(self, changes: Sequence[Change]) -> tuple[list[float], list[float]]:
        """
        Each change's wait for the poll that saw it (seconds, one per change), and each
        delivery's time from that poll's call to its reading (the gateway's poll, diff
        and fan-out, and this client's reading).
        """
        waits: list[float] = []
        after: list[float] = []
        for change in changes:
            poll = self.detecting_poll(change)
            if poll is None:
                continue
            waits.append(poll - change.sent)
            after.extend(change.sent + t - poll for t in change.got.values())
        return waits, after

    def spacing(self) -> list[float]:
        """Seconds between successive polls of the show over the window."""
        if not self.changes:
            return []
        start, end = self.changes[0].sent, self.changes[-1].sent
        inside = [t for t in self.polls_at if start <= t <= end]
        return [b - a for a, b in itertools.pairwise(inside)]

    def latencies(self) -> list[float]:
        """Every delivery of every change of the window, seconds."""
        return [t for change in self.changes for t in change.got.values()]

    def missing(self) -> int:
        """Deliveries of the window's changes that never came."""
        return sum(self.connected - len(change.got) for change in self.changes)

    def polls(self) -> int:
        return self.calls.get(POLL, 0)


def _fanout_p99(before: str, after: str) -> float | None:
    """The upper bound of the bucket holding the 99th percentile of the window's fan-outs."""
    b = [(float(le), float(n)) for le, n in _FANOUT.findall(before)]
    a = [(float(le), float(n)) for le, n in _FANOUT.findall(after)]
    if not a or len(a) != len(b):
        return None
    counts = [(le, n1 - n0) for (le, n1), (_, n0) in zip(a, b, strict=True)]
    total = counts[-1][1]
    for le, n in counts:
        if total and n >= 0.99 * total:
            return le
    return None


def _metrics(port: int, token: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


async def measure(
    port: int,
    secret: bytes,
    admin_token: str,
    *,
    subscribers: int,
    interval: float,
    window: float,
    toggle: Sequence[str],
    kill: Sequence[str],
    calls: Callable[[], dict[str, int]],
    cpu: Callable[[], float] | None = None,
    rss: Callable[[], int] | None = None,
    poll_times: Callable[[], list[float]] | None = None,
) -> EventsReport:
    """
    Subscribe, change, measure, kill (see the module's docstring). ``toggle`` are job
    ids of the show to pause and resume in turn (each is changed at most once per
    ``2 * interval``, so that no poll sees a pause undone), ``kill`` the ids to kill at
    the end; ``calls`` answers the simulator's counts by method, ``cpu`` and ``rss`` the
    gateway process's CPU seconds and RSS bytes, ``poll_times`` the arrival times at the
    simulator of the show's polls (``time.monotonic()``).
    """
    watch = Watch()
    stop = asyncio.Event()
    now = time.time()
    tokens = [
        mint_token(secret, sub=f"subscriber-{i}", role="viewer", now=now, ttl=7200)
        for i in range(subscribers)
    ]
    rss0 = rss() if rss else 0
    gate = asyncio.Semaphore(100)

    async def opened(i: int) -> None:
        async with gate:
            await _stream_until_open(i)

    tasks: list[asyncio.Task[None]] = []

    async def _stream_until_open(i: int) -> None:
        before = watch.connected + sum(watch.refused.values())
        tasks.append(asyncio.create_task(_stream(i, port, tokens[i], watch, stop)))
        deadline = time.monotonic() + 30
        while watch.connected + sum(watch.refused.values()) <= before:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(opened(i) for i in range(subscribers)))
    await asyncio.sleep(2 * interval)  # every snapshot read, polling steady
    rss1 = rss() if rss else 0
    metrics0 = await asyncio.to_thread(_metrics, port, admin_token)
    calls0 = await asyncio.to_thread(calls)
    cpu0 = cpu() if cpu else 0.0
    changes: list[Change] = []
    paused: dict[str, bool] = dict.fromkeys(toggle, False)
    # Not a multiple of the interval: successive changes land at every phase of the poll.
    gap = max(2 * interval / max(1, len(toggle)), 0.61 * interval)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < window - gap / 2:
        job_id = toggle[n % len(toggle)]
        n += 1
        paused[job_id] = not paused[job_id]
        change = Change(job_id, "paused" if paused[job_id] else "resumed", time.monotonic())
        watch.pending.append(change)
        changes.append(change)
        change.answered, _ = await post_once(
            port, PAUSE if paused[job_id] else RESUME, _job(job_id), admin_token
        )
        await asyncio.sleep(max(0.0, started + n * gap - time.monotonic()))
    elapsed = time.monotonic() - started
    cpu1 = cpu() if cpu else 0.0
    calls1 = await asyncio.to_thread(calls)
    metrics1 = await asyncio.to_thread(_metrics, port, admin_token)
    await _settle(watch, changes, 3 * interval)
    watch.pending.clear()
    kills: list[Change] = []
    rng = random.Random(5)
    for job_id in kill:
        await asyncio.sleep(rng.uniform(0.0, interval))
        change = Change(job_id, "finished", time.monotonic())
        watch.pending.append(change)
        kills.append(change)
        body = {"job": {"id": job_id}, "username": "bench", "reason": "bench: kill"}
        change.answered, _ = await post_once(port, KILL, json.dumps(body).encode(), admin_token)
        await _settle(watch, [change], 3 * interval)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return EventsReport(
        subscribers=subscribers,
        connected=watch.connected,
        refused=dict(watch.refused),
        interval=interval,
        window=elapsed,
        calls={k: calls1.get(k, 0) - calls0.get(k, 0) for k in calls1},
        changes=changes,
        kills=kills,
        dropped=watch.dropped,
        events_read=watch.events,
        cpu_seconds=(cpu1 - cpu0) if cpu else None,
        rss_growth=(rss1 - rss0) if rss else None,
        fanout_p99=_fanout_p99(metrics0, metrics1),
        polls_at=(await asyncio.to_thread(poll_times)) if poll_times else [],
    )


def _job(job_id: str) -> bytes:
    return json.dumps({"job": {"id": job_id}}).encode()


async def _settle(watch: Watch, changes: Sequence[Change], timeout: float) -> None:
    """Wait until every open stream has seen ``changes``, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(c.got) >= watch.connected - watch.closed for c in changes):
            return
        await asyncio.sleep(0.05)


def summarize(report: EventsReport) -> dict[str, Any]:
    """The report as JSON-able figures (what the standalone run prints)."""
    lat = report.latencies()
    out: dict[str, Any] = {
        "subscribers": report.subscribers,
        "connected": report.connected,
        "refused": report.refused,
        "interval_s": report.interval,
        "window_s": round(report.window, 1),
        "cuebot_calls": report.calls,
        "polls_per_interval": round(report.polls() / (report.window / report.interval), 2),
        "changes": len(report.changes),
        "deliveries": len(lat),
        "missing_deliveries": report.missing(),
        "dropped_subscribers": report.dropped,
    }
    if lat:
        out["latency_ms"] = {
            "p50": round(1e3 * percentile(lat, 50), 1),
            "p99": round(1e3 * percentile(lat, 99), 1),
            "max": round(1e3 * max(lat), 1),
        }
    waits, after = report.split(report.changes)
    if after:
        out["from_poll_to_delivery_ms"] = {
            "p50": round(1e3 * percentile(after, 50), 1),
            "p99": round(1e3 * percentile(after, 99), 1),
            "max": round(1e3 * max(after), 1),
        }
        out["wait_for_poll_ms_max"] = round(1e3 * max(waits), 1)
    spacing = report.spacing()
    if spacing:
        out["poll_spacing_ms"] = {
            "mean": round(1e3 * sum(spacing) / len(spacing), 1),
            "max": round(1e3 * max(spacing), 1),
        }
    out["kills_ms"] = [
        {
            "first": round(1e3 * min(k.got.values()), 1) if k.got else None,
            "p99": round(1e3 * percentile(list(k.got.values()), 99), 1) if k.got else None,
            "streams": len(k.got),
        }
        for k in report.kills
    ]
    if report.cpu_seconds is not None:
        out["gateway_cpu_percent"] = round(100 * report.cpu_seconds / report.window, 1)
    if report.rss_growth is not None:
        out["gateway_rss_kib_per_subscriber"] = round(
            report.rss_growth / 1024 / max(1, report.connected), 1
        )
    if report.fanout_p99 is not None:
        out["gateway_fanout_p99_ms_at_most"] = 1e3 * report.fanout_p99
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness's events scenario alone and print its rows, targets and figures."""
    from bench import run

    p = argparse.ArgumentParser(prog="python -m bench.events_bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="shorter window")
    p.add_argument("--subscribers", type=int, default=1000)
    a = p.parse_args(argv)
    extra = ["--quick"] if a.quick else []
    return run.main([*extra, "--only", "events", "--subscribers", str(a.subscribers)])


if __name__ == "__main__":
    raise SystemExit(main())
