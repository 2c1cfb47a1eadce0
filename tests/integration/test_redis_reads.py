"""
L{opencue_gw.shared.reads}: two gateway instances (each with its own store, in front of
upstreams that count their calls) sharing a real redis-server: the read cache and
single flight make one Cuebot call for both, a waiter whose holder does not publish in
time calls for itself within its deadline, and a killed or paused Redis only sends
reads to the local path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
import pytest_twisted
from google.protobuf.message import Message
from opencue_proto import job_pb2
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.task import deferLater

from opencue_gw.errors import GatewayError
from opencue_gw.shared.address import parse_redis_url
from opencue_gw.shared.reads import SharedReads, decode_answer, encode_answer
from opencue_gw.shared.store import SharedStateMetrics, SharedStore
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, load_rpcs

from redisserver import PATIENT, RedisServer, redis_server, until

__all__ = ["redis_server"]

RPCS = load_rpcs()
GET_JOBS = RPCS["/job.JobInterface/GetJobs"]
KILL = RPCS["/job.JobInterface/Kill"]
HEADERS = (("x-cuebot", "1"), ("trace-bin", b"\x00\xff"))


def jobs_request(job_id: str) -> job_pb2.JobGetJobsRequest:
    """GetJobs by one id, as CueWeb polls."""
    return job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=[job_id]))


class CountingCuebot:
    """An upstream answering after C{delay} seconds (or failing), counting its calls."""

    def __init__(self, delay: float = 0.0, error: GatewayError | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls: list[tuple[str, float | None]] = []

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Answer like Cuebot would, later."""
        self.calls.append((rpc.path, timeout))

        def answer() -> UpstreamReply:
            if self.error is not None:
                raise self.error
            ids = list(getattr(request, "r", job_pb2.JobSearchCriteria()).ids)
            jobs = [job_pb2.Job(id=i, name=f"show-shot-{i}") for i in ids]
            message = job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=jobs))
            return UpstreamReply(message, HEADERS, message.ByteSize())

        return deferLater(reactor, self.delay, answer)


class Instance:
    """One gateway instance's read path: its own store, upstream and fallback."""

    def __init__(
        self,
        url: str,
        cuebot: CountingCuebot,
        cache_seconds: float = 0.0,
        timeout: float = PATIENT,
    ) -> None:
        self.registry = CollectorRegistry()
        self.metrics = SharedStateMetrics(self.registry)
        self.store = SharedStore(
            parse_redis_url(url),
            reactor,
            timeout=timeout,
            probe_interval=0.1,
            metrics=self.metrics,
        )
        self.cuebot = cuebot
        self.fallback = CountingCuebot()
        self.reads = SharedReads(
            cuebot,
            self.store,
            reactor,
            cache_seconds=cache_seconds,
            fallback=self.fallback,
            metrics=self.metrics,
        )

    async def start(self) -> Instance:
        """Connect, and wait until Redis is in use."""
        self.store.start()
        await until(lambda: self.store.up)
        return self

    def read(self, job_id: str, timeout: float | None = 5.0) -> Deferred[Any]:
        """GetJobs for one id through the shared read path."""
        return self.reads.call(GET_JOBS, jobs_request(job_id), timeout=timeout, metadata=())

    def count(self, name: str, **labels: str) -> float:
        """A shared-state metric's value."""
        return self.registry.get_sample_value(name, labels or None) or 0.0


async def two(url: str, cuebot: CountingCuebot, cache_seconds: float = 0.0) -> list[Instance]:
    """Two started instances in front of the same Cuebot."""
    return [await Instance(url, cuebot, cache_seconds).start() for _ in range(2)]


async def stop(instances: list[Instance]) -> None:
    """Close every instance's connections."""
    for gw in instances:
        await gw.store.stop()


def test_answer_round_trip() -> None:
    """An answer stored in Redis comes back with its message and headers, binary ones too."""
    message = job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id="j1")]))
    back = decode_answer(encode_answer(UpstreamReply(message, HEADERS)), GET_JOBS)
    assert isinstance(back, UpstreamReply)
    assert back.message == message and tuple(back.headers) == HEADERS
    assert back.wire_size == message.ByteSize()
    assert decode_answer(b"not ours", GET_JOBS) is None


@pytest_twisted.ensureDeferred
async def test_shared_cache_one_cuebot_call(redis_server: RedisServer) -> None:
    """With the read cache in Redis, a read on one instance answers the other's."""
    cuebot = CountingCuebot()
    a, b = gws = await two(redis_server.url, cuebot, cache_seconds=2.0)
    try:
        first = await a.read("j1")
        await until(lambda: redis_server.command("DBSIZE") == b":2")  # the cache + the result
        second = await b.read("j1")
        assert len(cuebot.calls) == 1
        assert second.message == first.message and tuple(second.headers) == HEADERS
        assert b.count("opencue_gateway_shared_cache_hits_total") == 1
        await b.read("j2")
        assert len(cuebot.calls) == 2
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_cache_expires(redis_server: RedisServer) -> None:
    """A cached answer lives its PX: after it, the read calls Cuebot again."""
    cuebot = CountingCuebot()
    a, b = gws = await two(redis_server.url, cuebot, cache_seconds=0.2)
    try:
        await a.read("j1")
        await deferLater(reactor, 0.3)
        await b.read("j1")
        assert len(cuebot.calls) == 2
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_single_flight_across_instances(redis_server: RedisServer) -> None:
    """
    Without a cache, identical reads in flight on two instances make one Cuebot call:
    the second instance receives the first one's answer.
    """
    cuebot = CountingCuebot(delay=0.3)
    a, b = gws = await two(redis_server.url, cuebot)
    try:
        holder = a.read("j1")
        await deferLater(reactor, 0.05)
        asked = time.monotonic()
        waiter = await b.read("j1")
        assert time.monotonic() - asked < 0.4
        assert (await holder).message == waiter.message
        assert len(cuebot.calls) == 1
        assert b.count("opencue_gateway_shared_flight_joins_total") == 1
        # Finished: the next read is a new question, not the old answer.
        await a.read("j1")
        assert len(cuebot.calls) == 2
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_many_concurrent_reads_one_call(redis_server: RedisServer) -> None:
    """Ten reads started together, five on each instance: one Cuebot call in all."""
    cuebot = CountingCuebot(delay=0.2)
    gws = await two(redis_server.url, cuebot)
    try:
        answers = await gatherResults([gws[i % 2].read("j7") for i in range(10)])
        assert len(cuebot.calls) == 1
        assert {a.message.jobs.jobs[0].id for a in answers} == {"j7"}
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_waiter_calls_itself_when_holder_is_late(redis_server: RedisServer) -> None:
    """
    The holder's Cuebot call takes longer than half the waiter's deadline: the waiter
    stops waiting then and calls Cuebot itself with the time it has left.
    """
    slow, fast = CountingCuebot(delay=3.0), CountingCuebot()
    a = await Instance(redis_server.url, slow).start()
    b = await Instance(redis_server.url, fast).start()
    try:
        holder = a.read("j1", timeout=5.0)
        await deferLater(reactor, 0.05)
        asked = time.monotonic()
        answer = await b.read("j1", timeout=0.4)
        took = time.monotonic() - asked
        assert 0.15 <= took < 0.6
        assert answer.message.jobs.jobs[0].id == "j1"
        [(_, left)] = fast.calls
        assert left is not None and 0 < left <= 0.25
        assert b.count("opencue_gateway_shared_flight_timeouts_total") == 1
        holder.cancel()
        with pytest.raises(CancelledError):
            await holder
    finally:
        await stop([a, b])


@pytest_twisted.ensureDeferred
async def test_holder_cancelled_waiter_calls_at_once(redis_server: RedisServer) -> None:
    """The holder's client leaves: the lock is released, its waiter calls at once."""
    slow, fast = CountingCuebot(delay=3.0), CountingCuebot()
    a = await Instance(redis_server.url, slow).start()
    b = await Instance(redis_server.url, fast).start()
    try:
        holder = a.read("j1", timeout=10.0)
        await deferLater(reactor, 0.05)
        waiting = b.read("j1", timeout=10.0)
        await deferLater(reactor, 0.1)
        holder.cancel()
        asked = time.monotonic()
        answer = await waiting
        assert time.monotonic() - asked < 0.2
        assert answer.message.jobs.jobs[0].id == "j1" and len(fast.calls) == 1
        with pytest.raises(CancelledError):
            await holder
    finally:
        await stop([a, b])


@pytest_twisted.ensureDeferred
async def test_cuebot_error_reaches_waiters(redis_server: RedisServer) -> None:
    """Cuebot's error to the holder's call is the waiter's answer too (one call)."""
    cuebot = CountingCuebot(delay=0.2, error=GatewayError(5, "no such job", upstream=True))
    a, b = gws = await two(redis_server.url, cuebot, cache_seconds=2.0)
    try:
        holder = a.read("j1")
        await deferLater(reactor, 0.05)
        with pytest.raises(GatewayError) as waited:
            await b.read("j1")
        assert (waited.value.code, waited.value.message) == (5, "no such job")
        with pytest.raises(GatewayError):
            await holder
        assert len(cuebot.calls) == 1
        # Errors are not cached.
        with pytest.raises(GatewayError):
            await b.read("j1")
        assert len(cuebot.calls) == 2
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_mutations_pass_through(redis_server: RedisServer) -> None:
    """Identical mutations each reach Cuebot; Redis holds nothing for them."""
    cuebot = CountingCuebot()
    a, b = gws = await two(redis_server.url, cuebot, cache_seconds=2.0)
    try:
        kill = KILL.request_class()
        await gatherResults([gw.reads.call(KILL, kill, timeout=1.0) for gw in (a, b)])
        assert len(cuebot.calls) == 2
        assert redis_server.command("DBSIZE") == b":0"
    finally:
        await stop(gws)


@pytest_twisted.ensureDeferred
async def test_redis_killed_reads_go_local(redis_server: RedisServer) -> None:
    """Redis killed mid-run: every read is answered (by the local path), none fails."""
    cuebot = CountingCuebot()
    gw = await Instance(redis_server.url, cuebot, cache_seconds=1.0).start()
    try:
        answers = []
        for i in range(30):
            if i == 10:
                redis_server.stop()
            if i == 20:
                redis_server.start()
                await until(lambda: gw.store.up)
            answers.append(await gw.read(f"j{i}"))
            await deferLater(reactor, 0.01)
        assert [a.message.jobs.jobs[0].id for a in answers] == [f"j{i}" for i in range(30)]
        assert len(gw.fallback.calls) >= 1
        assert len(gw.cuebot.calls) + len(gw.fallback.calls) == 30
        assert gw.count("opencue_gateway_redis_fallbacks_total", use="read") == len(
            gw.fallback.calls
        )
    finally:
        await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_slow_redis_reads_bounded(redis_server: RedisServer) -> None:
    """Redis paused: a read waits at most the bound, then the local path answers."""
    gw = await Instance(redis_server.url, CountingCuebot(), cache_seconds=1.0, timeout=0.05).start()
    try:
        redis_server.command("CLIENT", "PAUSE", 800, "ALL")
        asked = time.monotonic()
        answer = await gw.read("j1")
        assert time.monotonic() - asked < 0.25
        assert answer.message.jobs.jobs[0].id == "j1" and len(gw.fallback.calls) == 1
    finally:
        await gw.store.stop()
