"""
L{opencue_gw.shared.buckets}: one token bucket per caller in a real redis-server,
shared by two gateway instances (two stores with their own connections and local
state), with the local buckets' C{X-RateLimit-*} numbers, and local state at once when
Redis is killed or paused.
"""

from __future__ import annotations

import time

import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock, deferLater

from opencue_gw.http.ratelimit import Decision, TokenBuckets
from opencue_gw.shared.address import parse_redis_url
from opencue_gw.shared.buckets import SharedTokenBuckets
from opencue_gw.shared.store import SharedStateMetrics, SharedStore

from redisserver import PATIENT, RedisServer, free_port, redis_server, shared_logs, until

__all__ = ["redis_server", "shared_logs"]


class Instance:
    """One gateway instance's rate-limit state: its own store, local buckets, metrics."""

    def __init__(
        self, url: str, rate: float = 10.0, burst: float = 5.0, timeout: float = PATIENT
    ) -> None:
        self.registry = CollectorRegistry()
        metrics = SharedStateMetrics(self.registry)
        self.store = SharedStore(
            parse_redis_url(url), reactor, timeout=timeout, probe_interval=0.1, metrics=metrics
        )
        self.local = TokenBuckets(reactor, rate, burst)
        self.buckets = SharedTokenBuckets(self.store, self.local, metrics=metrics)

    async def start(self) -> Instance:
        """Connect, and wait until Redis is in use."""
        self.store.start()
        await until(lambda: self.store.up)
        return self

    def fallbacks(self) -> float:
        """Takes the local buckets answered."""
        value = self.registry.get_sample_value(
            "opencue_gateway_redis_fallbacks_total", {"use": "rate_limit"}
        )
        return value or 0.0


@pytest_twisted.ensureDeferred
async def test_same_numbers_as_local_buckets(redis_server: RedisServer) -> None:
    """
    A burst of takes gets the same decisions and headers from Redis as from the local
    buckets on a frozen clock: remaining counts down, then 429 with Retry-After.
    """
    gw = await Instance(redis_server.url).start()
    local = TokenBuckets(Clock(), 1.0, 5.0)
    try:
        shared = [await gw.buckets.take("sub:alice", 1.0, 5.0) for _ in range(7)]
        expected = [local.take("sub:alice", 1.0, 5.0) for _ in range(7)]
        assert shared == expected
        assert shared[4] == Decision(True, 5, 0, 5, 0)
        assert shared[5].headers()["Retry-After"] == "1"
        assert gw.fallbacks() == 0
        assert redis_server.command("EXISTS", "ocgw:rl:sub:alice") == b":1"
        # Another caller has a bucket of its own.
        assert (await gw.buckets.take("sub:bob", 1.0, 5.0)).remaining == 4
    finally:
        await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_two_instances_share_one_limit(redis_server: RedisServer) -> None:
    """
    One caller sending three times its limit, alternating between two instances, for
    3 s: the requests accepted are the limit (burst + rate x time) within 10%.
    """
    rate, burst, seconds = 20.0, 5.0, 3.0
    gws = [await Instance(redis_server.url, rate, burst).start() for _ in range(2)]
    try:
        decisions: list[Decision] = []
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < seconds:
            # Every request due by now at 3 x rate, alternating instances: a late wake-up
            # (a busy machine) sends the ones it owes together instead of fewer.
            due = int((time.monotonic() - started) * 3 * rate) + 1
            takes = [gws[n % 2].buckets.take("sub:script", rate, burst) for n in range(sent, due)]
            sent = max(sent, due)
            decisions.extend(await gatherResults(takes))
            await deferLater(reactor, 0.01)
        elapsed = time.monotonic() - started
        accepted = sum(d.allowed for d in decisions)
        limit = burst + rate * elapsed
        assert abs(accepted - limit) <= 0.1 * limit, (accepted, limit, sent)
        assert sent >= 2.5 * limit, (sent, limit)
        assert all(gw.fallbacks() == 0 for gw in gws)
    finally:
        for gw in gws:
            await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_redis_killed_and_restarted_mid_run(
    redis_server: RedisServer, shared_logs: list[str]
) -> None:
    """
    Takes keep coming while Redis is killed and restarted: every one is answered
    promptly (local buckets meanwhile), the change is logged once each way, and the
    shared bucket is used again once Redis is back.
    """
    gw = await Instance(redis_server.url, rate=1000.0, burst=1000.0).start()
    try:
        answered: list[Decision] = []
        slowest = 0.0

        async def take_for(seconds: float) -> None:
            nonlocal slowest
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                asked = time.monotonic()
                answered.append(await gw.buckets.take("sub:ci", 1000.0, 1000.0))
                slowest = max(slowest, time.monotonic() - asked)
                await deferLater(reactor, 0.005)

        await take_for(0.3)
        redis_server.stop()
        await take_for(0.5)
        assert not gw.store.up and gw.fallbacks() > 0
        redis_server.start()
        await until(lambda: gw.store.up)
        before = gw.fallbacks()
        await take_for(0.3)
        assert gw.fallbacks() == before
        assert all(d.allowed for d in answered)
        assert slowest < 0.25
        assert shared_logs == [
            "using Redis at {redis}",
            "Redis at {redis} unavailable ({reason})",
            "using Redis at {redis}",
        ]
        # The bucket in the restarted Redis is a fresh one, spent by the takes since.
        assert redis_server.command("EXISTS", "ocgw:rl:sub:ci") == b":1"
    finally:
        await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_slow_redis_adds_bounded_latency(redis_server: RedisServer) -> None:
    """
    Redis paused for 1 s under 20 concurrent takes: each is answered within the 50 ms
    bound (by the local buckets), and later takes do not wait at all.
    """
    gw = await Instance(redis_server.url, timeout=0.05).start()
    try:
        redis_server.command("CLIENT", "PAUSE", 1000, "ALL")
        asked = time.monotonic()
        first = await gatherResults([gw.buckets.take(f"sub:{i}", 10.0, 5.0) for i in range(20)])
        took = time.monotonic() - asked
        assert all(d.allowed for d in first) and took < 0.25
        later = gw.buckets.take("sub:later", 10.0, 5.0)
        assert later.called
        assert gw.fallbacks() == 21
    finally:
        await gw.store.stop()


@pytest_twisted.ensureDeferred
async def test_fallback_uses_this_workers_share() -> None:
    """
    Without Redis, one of two workers limits a caller to its share (burst 6 -> 3), while
    the limits it reports for the shared bucket stay whole.
    """
    store = SharedStore(parse_redis_url(f"redis://127.0.0.1:{free_port()}"), reactor)
    buckets = SharedTokenBuckets(store, TokenBuckets(Clock(), 1.0, 6.0), workers=2)
    try:
        assert buckets.limits_for(None) == (1.0, 6.0)
        decisions = [await buckets.take("sub:x", 1.0, 6.0) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[0].limit == 3
    finally:
        await store.stop()
