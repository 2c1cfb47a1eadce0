"""
L{opencue_gw.shared.events}: two event hubs (each with its own store and its own fake
Cuebot over one farm) sharing a real redis-server. One polls a scope and both fan its
events out; when it stops or dies the other takes the scope over; without Redis both
poll for themselves and the streams go on.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from opencue_proto import job_pb2
from test_process import Gateway
from twisted.internet import reactor
from twisted.internet.task import deferLater

from opencue_gw.errors import GatewayError
from opencue_gw.events import EventFilter, EventHub, EventSettings
from opencue_gw.events.diff import job_item
from opencue_gw.events.model import Event, ScopeKey
from opencue_gw.shared.address import parse_redis_url
from opencue_gw.shared.events import SharedEvents, decode_batch, encode_batch
from opencue_gw.shared.store import SharedStore
from opencue_gw.testing import FakeUpstream
from opencue_gw.upstream.rpcs import load_rpcs

from gwtest import SECRET, token
from redisserver import (
    PATIENT,
    RedisServer,
    TlsFiles,
    free_port,
    needs_redis,
    redis_server,
    until,
)

__all__ = ["redis_server"]

RPCS = load_rpcs()
INTERVAL = 0.2
SHOW = EventFilter(shows=frozenset({"testing"}))
SCOPE: ScopeKey = ("jobs", "testing")


class Farm:
    """The jobs both fake Cuebots answer from."""

    def __init__(self) -> None:
        self.jobs: dict[str, job_pb2.Job] = {}

    def add(self, job_id: str, running: int = 0) -> None:
        job = job_pb2.Job(id=job_id, name=f"testing-{job_id}", show="testing")
        job.job_stats.total_frames = 4
        job.job_stats.running_frames = running
        self.jobs[job_id] = job

    def upstream(self) -> FakeUpstream:
        def get_jobs(request: Any) -> Any:
            return job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=list(self.jobs.values())))

        return FakeUpstream({"/job.JobInterface/GetJobs": get_jobs}, answer_all=True)


class Recorder:
    """A subscriber keeping its events."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.errors: list[GatewayError] = []

    def deliver(self, events: Sequence[Event], wire: bytes) -> None:
        assert wire == b"".join(event.wire() for event in events)
        self.events.extend(events)

    def failed(self, key: ScopeKey, error: GatewayError) -> None:
        """A poll failed."""
        self.errors.append(error)

    def ping(self) -> None:
        """Heartbeats are not counted."""

    def close(self, name: str, payload: Mapping[str, Any]) -> None:
        """Shutdown."""

    def changes(self) -> list[tuple[int, str, tuple[str, ...]]]:
        """(id, job, changes) of each event but snapshots."""
        return [(e.id, e.item.id, e.changes) for e in self.events if e.changes != ("snapshot",)]


class Instance:
    """One gateway's event source: store, sharing, hub, fake Cuebot, one subscriber."""

    def __init__(self, url: str, farm: Farm, name: str) -> None:
        self.store = SharedStore(parse_redis_url(url), reactor, timeout=PATIENT, probe_interval=0.1)
        self.shared = SharedEvents(self.store, reactor, owner=name)
        self.cuebot = farm.upstream()
        self.hub = EventHub(
            self.cuebot,
            RPCS,
            reactor,
            settings=EventSettings(interval=INTERVAL),
            shared=self.shared,
        )
        self.sink = Recorder()

    async def start(self) -> Instance:
        """Connect, wait until Redis is in use, then subscribe to the show."""
        self.store.start()
        await until(lambda: self.store.up)
        self.hub.subscribe(self.sink, SHOW, "ann")
        await until(lambda: self.shared.listening(SCOPE))
        return self

    def polls(self) -> int:
        """GetJobs calls made to this instance's Cuebot."""
        return sum(1 for call in self.cuebot.calls if call.rpc.path.endswith("/GetJobs"))

    def role(self) -> str:
        """The scope's role here."""
        return self.hub._scopes[SCOPE].role

    async def stop(self) -> None:
        """Close the hub (giving its leases up) and the store."""
        await self.hub.close()
        await self.store.stop()


async def two(server: RedisServer, farm: Farm) -> list[Instance]:
    """Two started instances, and one of them the scope's leader."""
    gws = [await Instance(server.url, farm, name).start() for name in ("a", "b")]
    await until(lambda: sorted(gw.role() for gw in gws) == ["follower", "leader"])
    return gws


def leader_of(gws: list[Instance]) -> tuple[Instance, Instance]:
    """(leader, follower)."""
    leader = next(gw for gw in gws if gw.role() == "leader")
    return leader, next(gw for gw in gws if gw is not leader)


def test_batch_round_trip() -> None:
    """A batch comes back with its items, changes, data and the ids the script gave."""
    job = job_pb2.Job(id="j1", name="testing-j1", show="testing", state=job_pb2.FINISHED)
    event = Event(job_item(job), ("state", "finished"))
    data = event.data
    back = decode_batch(b"owner-a 41 " + encode_batch([event], ["j2"]))
    assert back is not None
    owner, first, events, gone = back
    assert (owner, first, gone) == ("owner-a", 41, ["j2"])
    assert events[0].id == 41 and events[0].changes == ("state", "finished")
    assert events[0].item.message == job and events[0].item.fingerprint[0] == "FINISHED"
    assert events[0].data == data
    assert decode_batch(b"not a batch") is None


@pytest_twisted.ensureDeferred
async def test_one_instance_polls_and_both_receive(redis_server: RedisServer) -> None:
    """
    With two instances watching one show only the lease holder polls every interval
    (the other once, for its snapshot); a change reaches both subscribers with the
    same id.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    try:
        leader, follower = leader_of(gws)
        polled, heard = leader.polls(), follower.polls()
        await deferLater(reactor, INTERVAL * 5)
        assert leader.polls() >= polled + 3
        assert follower.polls() == heard <= 1
        farm.add("j1", running=2)
        farm.add("j2")
        await until(lambda: all(len(gw.sink.changes()) == 2 for gw in gws))
        assert leader.sink.changes() == follower.sink.changes()
        assert {(job, changes) for _, job, changes in follower.sink.changes()} == {
            ("j1", ("progress",)),
            ("j2", ("appeared",)),
        }
        # The follower's snapshot follows the batches: a late subscriber sees j2.
        late = Recorder()
        follower.hub.subscribe(late, SHOW, "bob")
        assert {e.item.id for e in late.events} == {"j1", "j2"}
    finally:
        for gw in gws:
            await gw.stop()


@pytest_twisted.ensureDeferred
async def test_the_other_takes_over_when_the_holder_stops(redis_server: RedisServer) -> None:
    """
    The holder stops watching (its lease is given up): the other instance polls within
    one interval, and its subscriber's events go on with higher ids.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    leader, follower = leader_of(gws)
    try:
        farm.add("j1", running=1)
        await until(lambda: len(follower.sink.changes()) == 1)
        before = follower.polls()
        await leader.stop()
        stopped = time.monotonic()
        await until(lambda: follower.role() == "leader", within=2.0)
        assert time.monotonic() - stopped <= INTERVAL * 2  # one interval, and slack
        await until(lambda: follower.polls() > before)
        farm.add("j1", running=2)
        await until(lambda: len(follower.sink.changes()) == 2)
        ids = [event_id for event_id, _, _ in follower.sink.changes()]
        assert ids[1] > ids[0]
    finally:
        await follower.stop()
        if leader.store.up:
            await leader.stop()


def poll_times(gw: Instance) -> list[float]:
    """The (monotonic) times at which C{gw}'s Cuebot is asked for the show from now on."""
    times: list[float] = []
    call = gw.cuebot.call

    def timed(rpc: Any, request: Any, **options: Any) -> Any:
        if rpc.path.endswith("/GetJobs"):
            times.append(time.monotonic())
        return call(rpc, request, **options)

    gw.cuebot.call = timed  # type: ignore[method-assign]
    return times


async def lease_holder(gw: Instance) -> str | None:
    """Who holds the show's lease in Redis now."""
    holder = await gw.store.command("GET", gw.shared._lease(SCOPE))
    return None if holder is None else holder.decode()


@pytest_twisted.ensureDeferred
async def test_the_other_takes_over_when_the_holder_dies(redis_server: RedisServer) -> None:
    """
    A holder that vanishes without a word (its timers stopped, its connection dropped,
    its lease left in Redis) is replaced within one interval: the lease it last renewed
    expires within two thirds of one, and the other instance's next attempt, at most a
    third later, takes it and polls at once. Its stream goes on.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    leader, follower = leader_of(gws)
    try:
        await deferLater(reactor, INTERVAL * 1.7)  # a death anywhere between two renewals
        polled = poll_times(follower)
        # Dead: no more polls or lease attempts, no release, no connection.
        leader.hub._scopes[SCOPE].stop()
        leader.shared.stop()
        died = time.monotonic()
        assert await lease_holder(follower) == leader.shared.owner
        await until(lambda: len(polled) > 0, within=3.0)
        assert polled[0] - died <= INTERVAL + 0.1  # one interval, and scheduling slack
        assert follower.role() == "leader"
        assert await lease_holder(follower) == follower.shared.owner
        farm.add("j1", running=3)
        await until(lambda: len(follower.sink.changes()) == 1)
    finally:
        await follower.stop()
        await leader.stop()


@pytest.mark.parametrize("slowness", [1.5, 3.0])
@pytest_twisted.ensureDeferred
async def test_a_slow_poll_keeps_the_lease(redis_server: RedisServer, slowness: float) -> None:
    """
    The holder's Cuebot answers each poll after C{slowness} intervals: the lease,
    renewed on its own timer, stays the holder's (the other instance never polls), and
    the holder's events still reach both streams with the same ids.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    leader, follower = leader_of(gws)
    try:
        call = leader.cuebot.call

        def slow(rpc: Any, request: Any, **options: Any) -> Any:
            d = call(rpc, request, **options)
            return d.addCallback(
                lambda reply: deferLater(reactor, INTERVAL * slowness, lambda: reply)
            )

        leader.cuebot.call = slow  # type: ignore[method-assign]
        polled, heard = leader.polls(), follower.polls()
        holders: set[str | None] = set()
        for _ in range(int((slowness + 1) * 6)):  # three polls and their intervals
            await deferLater(reactor, INTERVAL / 2)
            holders.add(await lease_holder(follower))
        assert holders == {leader.shared.owner}
        assert follower.polls() == heard and follower.role() == "follower"
        assert leader.polls() >= polled + 2 and leader.role() == "leader"
        farm.add("j1", running=2)
        await until(lambda: all(len(gw.sink.changes()) == 1 for gw in gws))
        assert leader.sink.changes() == follower.sink.changes()
        assert follower.polls() == heard
    finally:
        for gw in gws:
            await gw.stop()


@pytest_twisted.ensureDeferred
async def test_without_redis_both_poll_and_streams_go_on(redis_server: RedisServer) -> None:
    """
    Redis killed: each instance polls for itself within an interval or so, and a change
    reaches both subscribers, their ids still increasing; back with Redis, one polls again.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    try:
        farm.add("j1", running=1)
        await until(lambda: all(len(gw.sink.changes()) == 1 for gw in gws))
        redis_server.stop()
        await until(lambda: all(gw.role() == "local" for gw in gws), within=3.0)
        counts = [gw.polls() for gw in gws]
        await deferLater(reactor, INTERVAL * 3)
        assert all(gw.polls() >= count + 2 for gw, count in zip(gws, counts, strict=True))
        farm.add("j1", running=2)
        await until(lambda: all(len(gw.sink.changes()) == 2 for gw in gws))
        for gw in gws:
            ids = [event_id for event_id, _, _ in gw.sink.changes()]
            assert ids[1] > ids[0]
        redis_server.start()
        await until(lambda: sorted(gw.role() for gw in gws) == ["follower", "leader"], within=5.0)
        farm.add("j1", running=3)
        await until(lambda: all(len(gw.sink.changes()) == 3 for gw in gws))
        for gw in gws:
            ids = [event_id for event_id, _, _ in gw.sink.changes()]
            assert ids == sorted(ids) and len(set(ids)) == 3
    finally:
        for gw in gws:
            await gw.stop()


@pytest_twisted.ensureDeferred
async def test_the_holders_poll_errors_reach_every_instance(redis_server: RedisServer) -> None:
    """
    The holder's poll fails: the other instance's subscribers are told too (once), and
    when it works again a new subscriber there is not told of the old error.
    """
    farm = Farm()
    farm.add("j1")
    gws = await two(redis_server, farm)
    leader, follower = leader_of(gws)
    try:
        answer = leader.cuebot.auto["/job.JobInterface/GetJobs"]

        def refuse(request: Any) -> Any:
            raise GatewayError.unavailable("Cuebot is away")

        leader.cuebot.auto["/job.JobInterface/GetJobs"] = refuse
        await until(lambda: len(follower.sink.errors) == 1)
        assert follower.sink.errors[0].message == "Cuebot is away"
        await deferLater(reactor, INTERVAL * 2)
        assert len(follower.sink.errors) == 1
        leader.cuebot.auto["/job.JobInterface/GetJobs"] = answer
        await until(lambda: follower.hub._scopes[SCOPE].error is None)
        late = Recorder()
        follower.hub.subscribe(late, SHOW, "bob")
        assert late.errors == [] and {e.item.id for e in late.events} == {"j1"}
    finally:
        for gw in gws:
            await gw.stop()


class EventReader:
    """An SSE stream of a gateway process read on a thread: the ids it has seen."""

    def __init__(self, port: int) -> None:
        self.ids: list[int] = []
        self.ended = False
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self._connection.request(
            "GET", "/api/v1/events?show=testing", headers={"Authorization": f"Bearer {token()}"}
        )
        answer = self._connection.getresponse()
        assert answer.status == 200
        self._thread = threading.Thread(target=self._read, args=(answer,), daemon=True)
        self._thread.start()

    def _read(self, answer: http.client.HTTPResponse) -> None:
        try:
            for line in answer:
                if line.startswith(b"id: "):
                    self.ids.append(int(line[4:]))
        except (OSError, ValueError, AttributeError):
            pass  # Hung up by close() (http.client drops its file then).
        self.ended = True

    def close(self) -> None:
        """Hang up."""
        self._connection.close()
        self._thread.join(5)


def _polls(port: int) -> float:
    """The gateway's polls of the jobs scope, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith('opencue_gateway_event_polls_total{scope="jobs"}'):
            return float(line.split()[-1])
    return 0.0


def _wait_for(predicate: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_hand_over_between_two_gateway_processes(redis_server: RedisServer, tmp_path: Path) -> None:
    """
    Two twistd gateway processes with --redis in front of one simulator: only one polls
    the show, both streams carry its events; the poller killed (SIGKILL, no goodbye),
    the other polls within one interval (and the time to see it through /metrics), and
    its stream goes on with increasing ids.
    """
    sim_port = free_port()
    sim_log = (tmp_path / "sim.log").open("wb")
    sim = subprocess.Popen(
        [sys.executable, "-m", "opencue_sandbox", "--port", str(sim_port), "--speed", "60"],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
    )
    gws: list[Gateway] = []
    readers: list[EventReader] = []
    try:
        _wait_for(lambda: _listening(sim_port), 20)
        args = ["--cuebot", f"127.0.0.1:{sim_port}", "--redis", redis_server.url]
        args += ["--events-interval", "0.3", "--redis-timeout", "0.5"]
        env = {"JWT_SECRET": SECRET.decode()}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            gws.append(Gateway(args, env, tmp_path / name))
        readers = [EventReader(gw.port) for gw in gws]
        _wait_for(lambda: all(len(r.ids) > 0 for r in readers), 15)
        time.sleep(1.0)  # both have their snapshot, and one holds the lease
        before = [_polls(gw.port) for gw in gws]
        time.sleep(1.5)
        grown = [_polls(gw.port) - count for gw, count in zip(gws, before, strict=True)]
        assert sorted(grown)[0] == 0 and sorted(grown)[1] >= 3, grown
        poller = 0 if grown[0] else 1
        other = 1 - poller
        _wait_for(lambda: len(readers[other].ids) > 3, 15)
        start = _polls(gws[other].port)  # a follower's count: still until it takes over
        gws[poller].proc.kill()
        gws[poller].proc.wait(5)
        killed = time.monotonic()
        _wait_for(lambda: _polls(gws[other].port) > start, 5)
        # One interval, and the time to see it through /metrics.
        assert time.monotonic() - killed <= 0.3 + 0.25
        seen = len(readers[other].ids)
        _wait_for(lambda: len(readers[other].ids) > seen + 3, 15)
        ids = readers[other].ids
        assert ids == sorted(ids)
        assert not readers[other].ended
    finally:
        for reader in readers:
            reader.close()
        for gw in gws:
            if gw.proc.poll() is None:
                gw.stop()
            else:
                gw._out.close()
        sim.kill()
        sim.wait(5)
        sim_log.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@needs_redis
@pytest_twisted.ensureDeferred
async def test_subscriber_connection_logs_in_and_hears_over_a_unix_socket(tmp_path: Path) -> None:
    """The subscriber connection sends the password (TCP) and works over a unix socket."""
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    server.start()
    heard: list[tuple[ScopeKey, str]] = []
    sharings = []
    try:
        for url in (server.url, f"unix://:s3cret@{server.socket_path}"):
            store = SharedStore(parse_redis_url(url), reactor, timeout=PATIENT, probe_interval=0.1)
            sharing = SharedEvents(store, reactor, owner=f"o{len(sharings)}")
            sharing.handler = lambda key, owner, events, gone: heard.append((key, owner))
            sharings.append(sharing)
            store.start()
            await until(lambda s=store: s.up)
            sharing.watch(SCOPE)
            await until(lambda s=sharing: s.listening(SCOPE))
        first, second = sharings
        assert await first.attempt(SCOPE, 0, 5.0) is True
        assert await second.attempt(SCOPE, 0, 5.0) is False
        assert await second.publish(SCOPE, [], [], 0, 5.0) is None
        assert await first.publish(SCOPE, [], [], 0, 5.0) is not None
        await until(lambda: len(heard) == 2)
        assert heard == [(SCOPE, "o0"), (SCOPE, "o0")]
    finally:
        for sharing in sharings:
            await sharing.release(SCOPE)
            await sharing.stop()
            await sharing.store.stop()
        server.stop()


@needs_redis
@pytest_twisted.ensureDeferred
async def test_subscriber_connection_over_tls(tmp_path: Path) -> None:
    """rediss://: the subscriber connection checks the server's certificate and hears."""
    server = RedisServer(tmp_path, tls=TlsFiles(tmp_path))
    server.start()
    store = SharedStore(parse_redis_url(server.url), reactor, timeout=PATIENT, probe_interval=0.1)
    sharing = SharedEvents(store, reactor, owner="tls")
    heard: list[str] = []
    sharing.handler = lambda key, owner, events, gone: heard.append(owner)
    try:
        store.start()
        await until(lambda: store.up)
        sharing.watch(SCOPE)
        await until(lambda: sharing.listening(SCOPE))
        assert await sharing.attempt(SCOPE, 0, 5.0) is True
        assert await sharing.publish(SCOPE, [], [], 0, 5.0) is not None
        await until(lambda: heard == ["tls"])
    finally:
        await sharing.stop()
        await store.stop()
        server.stop()
