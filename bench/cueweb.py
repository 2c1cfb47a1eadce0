"""
CueWeb's job table, as it loads a gateway: the driver of the ``cueweb`` scenario.

What CueWeb does (its ``updateJobsTableDataWorker`` and the job detail page; see the
compatibility facts, section 5.5): every 5 s each open tab refreshes every row of its job
table at once, from CueWeb's Next.js server, with one
``GetJobs {"r":{"ids":[<id>],"include_finished":true}}`` per row, all concurrent
(``Promise.all``, no cap), and its job page asks for a 500-frame ``GetFrames`` page on
the same tick. The model here, per tab and refresh:

* one token per refresh, signed as CueWeb signs (HS256, ``sub "user-id"``,
  ``role "user-role"``, ``iat`` now, ``exp`` an hour on). CueWeb signs one per request,
  but ``iat`` has whole seconds, so the requests of one refresh carry the same bytes;
* every request on its own new connection, closed after the answer: Node's fetch keeps
  a pool without a connection cap, and its idle connections close after 4 s, before the
  next refresh 5 s later;
* the tabs were opened at different times (spread evenly over the period) and each
  watches its own 200 jobs, so no two requests of the run are identical and read
  sharing cannot flatter the figure: whatever saves Cuebot calls here is batching.

A request's latency runs from the start of its connect to the end of its answer, as
CueWeb's server sees it; the driver's own event loop (200 connects and answers at once
in Python) is part of the figure.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.clients import HttpConnection, Load, percentile
from opencue_gw.auth.tokens import mint_token

GET_JOBS = "/job.JobInterface/GetJobs"
GET_FRAMES = "/job.JobInterface/GetFrames"
PERIOD = 5.0  # CueWeb's refresh, seconds
FRAMES_LIMIT = 500


@dataclass
class Cueweb:
    """What one run of the model measured."""

    load: Load
    refreshes: int = 0
    by_path: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    connects: list[float] = field(default_factory=list)  # seconds to connect, each request

    def p99_of(self, path: str) -> float:
        """p99 in ms of one RPC's requests."""
        return percentile(self.by_path.get(path, []), 99) * 1e3


def job_body(job_id: str) -> bytes:
    """CueWeb's by-id read of one row."""
    return json.dumps({"r": {"ids": [job_id], "include_finished": True}}).encode()


async def drive(
    port: int,
    secret: bytes,
    tables: Sequence[Sequence[str]],
    frames_job: str,
    seconds: float,
    period: float = PERIOD,
) -> Cueweb:
    """
    Run one tab per entry of ``tables`` (its job ids) for ``seconds``: every ``period``
    each tab sends all its rows' GetJobs and one GetFrames page at once, then waits for
    the next tick. A refresh still running at the next tick delays it, as in CueWeb
    (the worker awaits the whole ``Promise.all``).
    """
    result = Cueweb(Load(0, 0.0, 0.0, 0.0))
    latencies: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def request(path: str, body: bytes, token: str) -> None:
        t0 = time.perf_counter()
        status = 0
        try:
            conn = await HttpConnection.open(port)
        except OSError:
            conn = None
        result.connects.append(time.perf_counter() - t0)
        if conn is not None:
            try:
                status, _ = await conn.post(path, body, token)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
            finally:
                conn.close()
        elapsed = time.perf_counter() - t0
        latencies.append(elapsed)
        result.by_path.setdefault(path, []).append(elapsed)
        result.statuses[status] = result.statuses.get(status, 0) + 1

    async def tab(i: int, ids: Sequence[str]) -> None:
        bodies = [job_body(job_id) for job_id in ids]
        page = {"include_finished": True, "page": 1 + i % 4, "limit": FRAMES_LIMIT}
        frames = json.dumps({"job": {"id": frames_job}, "req": page}).encode()
        await asyncio.sleep(i * period / len(tables))
        while True:
            tick = time.perf_counter()
            if tick >= end:
                return
            token = mint_token(secret, sub="user-id", role="user-role", now=time.time())
            await asyncio.gather(
                *(request(GET_JOBS, body, token) for body in bodies),
                request(GET_FRAMES, frames, token),
            )
            result.refreshes += 1
            await asyncio.sleep(max(0.0, tick + period - time.perf_counter()))

    await asyncio.gather(*(tab(i, ids) for i, ids in enumerate(tables)))
    result.load = Load(
        requests=len(latencies),
        seconds=time.perf_counter() - start,
        p50_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
        errors=sum(n for status, n in result.statuses.items() if status != 200),
    )
    return result
