"""
L{opencue_gw.shared.stale}: stale-if-error answers kept in a real redis-server, so one
instance covers a failed read with the answer another instance got; Redis forgets them
after the maximum age; without Redis each instance has its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import pytest_twisted
from opencue_proto import job_pb2
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater

from opencue_gw.errors import GatewayError
from opencue_gw.shared.address import parse_redis_url
from opencue_gw.shared.stale import SharedStaleStore
from opencue_gw.shared.store import SharedStateMetrics, SharedStore
from opencue_gw.upstream import stale
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, load_rpcs, read_key

from redisserver import PATIENT, RedisServer, redis_server, until

__all__ = ["redis_server"]

GET_JOBS = load_rpcs()["/job.JobInterface/GetJobs"]


class DictStore:
    """The smallest in-process store: the last answer per key."""

    def __init__(self) -> None:
        self.kept: dict[tuple[Any, ...], tuple[Any, float]] = {}

    def keep(self, key: tuple[Any, ...], rpc: Rpc, reply: Any, at: float) -> None:
        """Remember."""
        self.kept[key] = (reply, at)

    def find(self, key: tuple[Any, ...], rpc: Rpc) -> Deferred[tuple[Any, float] | None]:
        """Recall."""
        return succeed(self.kept.get(key))

    def forget(self, key: tuple[Any, ...]) -> None:
        """Drop."""
        self.kept.pop(key, None)


def key_for(job_id: str) -> tuple[Any, ...]:
    """The read key of GetJobs for one id."""
    request = job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=[job_id]))
    return read_key(GET_JOBS, request, ())


def reply_for(job_id: str) -> UpstreamReply:
    """Cuebot's answer to GetJobs for one id."""
    message = job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=job_id)]))
    return UpstreamReply(message, (("x-cuebot", "1"),), message.ByteSize())


class Instance:
    """One instance's stale store: Redis over its own in-process store."""

    def __init__(self, url: str, max_age: float = 60.0, max_bytes: int = 1 << 20) -> None:
        self.registry = CollectorRegistry()
        metrics = SharedStateMetrics(self.registry)
        self.store = SharedStore(
            parse_redis_url(url), reactor, timeout=PATIENT, probe_interval=0.1, metrics=metrics
        )
        self.local = DictStore()
        self.stale = SharedStaleStore(
            self.store, self.local, max_age=max_age, max_bytes=max_bytes, metrics=metrics
        )

    async def start(self) -> Instance:
        """Connect, and wait until Redis is in use."""
        self.store.start()
        await until(lambda: self.store.up)
        return self


async def kept_in_redis(server: RedisServer, count: int) -> None:
    """Wait until Redis holds C{count} keys (keeping does not wait for Redis)."""
    await until(lambda: server.command("DBSIZE") == b":%d" % count)


@pytest_twisted.ensureDeferred
async def test_one_instance_finds_the_others_answer(redis_server: RedisServer) -> None:
    """An answer kept by one instance is found, with its time, by another."""
    a, b = [await Instance(redis_server.url).start() for _ in range(2)]
    try:
        a.stale.keep(key_for("j1"), GET_JOBS, reply_for("j1"), 1000.5)
        await kept_in_redis(redis_server, 1)
        found = await b.stale.find(key_for("j1"), GET_JOBS)
        assert found is not None
        reply, at = found
        assert reply.message == reply_for("j1").message and at == 1000.5
        assert await b.stale.find(key_for("j2"), GET_JOBS) is None
    finally:
        for gw in (a, b):
            await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_redis_forgets_after_max_age(redis_server: RedisServer) -> None:
    """The answer lives in Redis only as long as it could be given."""
    a, b = [await Instance(redis_server.url, max_age=0.2).start() for _ in range(2)]
    try:
        a.stale.keep(key_for("j1"), GET_JOBS, reply_for("j1"), 1.0)
        await kept_in_redis(redis_server, 1)
        await deferLater(reactor, 0.3)
        assert await b.stale.find(key_for("j1"), GET_JOBS) is None
    finally:
        for gw in (a, b):
            await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_large_answers_are_not_shared(redis_server: RedisServer) -> None:
    """Over the byte budget: kept in the process only."""
    gw = await Instance(redis_server.url, max_bytes=4).start()
    try:
        gw.stale.keep(key_for("j1"), GET_JOBS, reply_for("j1"), 1.0)
        await deferLater(reactor, 0.05)
        assert redis_server.command("DBSIZE") == b":0"
        assert key_for("j1") in gw.local.kept
    finally:
        await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_without_redis_each_instance_has_its_own(redis_server: RedisServer) -> None:
    """Redis killed: finding is local at once, and counted as a fallback."""
    a, b = [await Instance(redis_server.url).start() for _ in range(2)]
    try:
        a.stale.keep(key_for("j1"), GET_JOBS, reply_for("j1"), 1.0)
        await kept_in_redis(redis_server, 1)
        redis_server.stop()
        await until(lambda: not a.store.up and not b.store.up)
        assert await b.stale.find(key_for("j1"), GET_JOBS) is None
        assert await a.stale.find(key_for("j1"), GET_JOBS) is not None
        fallbacks = b.registry.get_sample_value(
            "opencue_gateway_redis_fallbacks_total", {"use": "stale"}
        )
        assert fallbacks == 1
    finally:
        for gw in (a, b):
            await gw.store.stop()


class Flaky:
    """An upstream that answers, or fails with UNAVAILABLE once told to."""

    def __init__(self) -> None:
        self.down = False

    def call(
        self,
        rpc: Rpc,
        request: Any,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Cuebot's answer, or its absence."""
        if self.down:
            return fail(GatewayError(14, "Cuebot is away", upstream=True))
        return succeed(reply_for(request.r.ids[0]))


@pytest_twisted.ensureDeferred
async def test_stale_if_error_across_instances(redis_server: RedisServer) -> None:
    """
    Through L{StaleIfError} with the pluggable store: instance B covers a read that
    fails while Cuebot is away with the answer instance A got before.
    """
    a, b = [await Instance(redis_server.url).start() for _ in range(2)]
    cuebot = Flaky()
    try:
        via = [stale.StaleIfError(cuebot, reactor, max_age=60.0, store=gw.stale) for gw in (a, b)]
        request = job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=["j1"]))
        await via[0].call(GET_JOBS, request, timeout=1.0)
        await kept_in_redis(redis_server, 1)
        cuebot.down = True
        covered = await via[1].call(GET_JOBS, request, timeout=1.0)
        assert isinstance(covered, stale.StaleReply)
        assert covered.message.jobs.jobs[0].id == "j1" and covered.stale_age >= 0
        with pytest.raises(GatewayError):
            await via[1].call(
                GET_JOBS,
                job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=["j2"])),
                timeout=1.0,
            )
    finally:
        for gw in (a, b):
            await gw.store.stop()
