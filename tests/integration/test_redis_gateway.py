"""
Two whole gateways (each its own resource tree, Cuebot channel, store and metrics) in
front of the simulator, sharing one real redis-server through C{--redis}: one caller
limited once across both, the read cache shared, Redis killed and restarted under load
with no failed request, and C{/readyz} saying which state is in use.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

import opencue_gw.tap as tap
from opencue_gw.config import resolve_config
from opencue_gw.ops.health import PROBE_PATH, ReadinessProbe
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.testing import HTTPReply
from opencue_gw.upstream.rpcs import load_rpcs

from gwtest import SECRET, token
from redisserver import PATIENT, RedisServer, redis_server, until

__all__ = ["redis_server"]

GET_JOBS = "/job.JobInterface/GetJobs"


class Gateway:
    """One gateway instance with C{--redis}, driven through StubTreq."""

    def __init__(self, target: str, redis_url: str, **settings: Any) -> None:
        options = {"cuebot": target, "redis": redis_url}
        settings.setdefault("redis_timeout", PATIENT)
        config = replace(resolve_config(options, {"JWT_SECRET": SECRET.decode()}), **settings)
        self.client = tap.cuebot_client_for(config, reactor)
        self.client.open()
        self.metrics = GatewayMetrics()
        self.shared = tap.shared_store_for(config, reactor, self.metrics)
        assert self.shared is not None
        self.probe = ReadinessProbe(self.client, load_rpcs()[PROBE_PATH], reactor)
        upstream = tap.upstream_chain(config, self.client, reactor, self.metrics, self.shared)
        resource = tap.build_root_resource(
            config,
            reactor,
            upstream,
            InFlight(),
            None,
            metrics=self.metrics,
            probe=self.probe,
            shared=self.shared,
        )
        self.stub = StubTreq(resource)

    async def start(self) -> Gateway:
        """Probe Cuebot once and wait until Redis is in use."""
        self.shared.start()
        await self.probe.probe()
        await until(lambda: self.shared is not None and self.shared.up)
        return self

    async def close(self) -> None:
        """Close the Redis connections and the gRPC channel."""
        await self.shared.stop()
        self.client.close()

    async def _settle(self, d: Deferred[Any]) -> Any:
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        deadline = time.monotonic() + 10.0
        while not outcome:
            self.stub.flush()
            assert time.monotonic() < deadline, "no answer from the gateway in time"
            await deferLater(reactor, 0.001)
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    async def request(self, method: str, path: str, body: Any = None, sub: str = "ci") -> HTTPReply:
        """One request with a token for C{sub}; the whole answer."""
        headers = {"Authorization": f"Bearer {token(sub=sub)}"}
        data = json.dumps(body).encode() if body is not None else None
        response = await self._settle(
            self.stub.request(method, "http://gateway.test" + path, data=data, headers=headers)
        )
        content = await self._settle(self.stub.content(response))
        return HTTPReply(response.code, response.headers, content)

    def count(self, name: str, **labels: str) -> float:
        """A metric's value on this gateway."""
        return self.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def two(farm: Any, server: RedisServer, **settings: Any) -> list[Gateway]:
    """Two started gateways in front of the simulator, sharing C{server}."""
    return [
        await Gateway(farm.address, server.url, **settings).start()  # type: ignore[attr-defined]
        for _ in range(2)
    ]


@pytest_twisted.ensureDeferred
async def test_one_limit_across_two_gateways(farm: object, redis_server: RedisServer) -> None:
    """
    One caller sending three times its limit for 3 s, alternating between the two
    gateways: accepted within 10% of the one limit (burst + rate x time), and the
    refusals are 429 with the X-RateLimit headers and Retry-After.
    """
    rate, burst, seconds = 10.0, 5.0, 3.0
    gws = await two(farm, redis_server, rate_limit_rps=rate, rate_limit_burst=burst)
    try:
        statuses: list[int] = []
        refused: HTTPReply | None = None
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * 3 * rate) + 1
            while sent < due:
                reply = await gws[sent % 2].request("POST", "/cue.CueInterface/GetSystemStats", {})
                statuses.append(reply.status)
                if reply.status == 429:
                    refused = reply
                sent += 1
            await deferLater(reactor, 0.01)
        limit = burst + rate * (time.monotonic() - started)
        accepted = statuses.count(200)
        fallbacks = [
            gw.count("opencue_gateway_redis_fallbacks_total", use="rate_limit") for gw in gws
        ]
        assert abs(accepted - limit) <= 0.1 * limit, (accepted, limit, sent, fallbacks)
        assert set(statuses) == {200, 429}
        assert refused is not None and refused.header("Retry-After") is not None
        assert refused.header("X-RateLimit-Limit") == "5"
    finally:
        for gw in gws:
            await gw.close()


@pytest_twisted.ensureDeferred
async def test_read_cache_shared(farm: object, redis_server: RedisServer) -> None:
    """A read answered on one gateway is answered from Redis on the other."""
    a, b = gws = await two(farm, redis_server, read_cache_ms=5000.0)
    try:
        body = {"r": {"include_finished": True}}
        first = await a.request("POST", GET_JOBS, body)
        await until(lambda: redis_server.command("KEYS", "ocgw:c:*") == b"*1")
        second = await b.request("POST", GET_JOBS, body)
        assert first.status == second.status == 200 and first.body == second.body
        assert b.count("opencue_gateway_shared_cache_hits_total") == 1
    finally:
        for gw in gws:
            await gw.close()


@pytest_twisted.ensureDeferred
async def test_redis_stopped_under_load(farm: object, redis_server: RedisServer) -> None:
    """
    Reads and rate-limited calls keep coming while Redis is killed and restarted: no
    request fails, /readyz stays 200 and says what is in use, and metrics count it.
    """
    gws = await two(farm, redis_server, rate_limit_rps=1000.0, read_cache_ms=200.0)
    try:
        statuses: list[int] = []

        async def load(seconds: float) -> None:
            stop = time.monotonic() + seconds
            n = 0
            while time.monotonic() < stop:
                reply = await gws[n % 2].request("POST", GET_JOBS, {"r": {}})
                statuses.append(reply.status)
                n += 1

        ready = json.loads((await gws[0].request("GET", "/readyz")).body)
        assert ready["redis"].startswith("shared state in Redis at redis://127.0.0.1")
        await load(0.3)
        redis_server.stop()
        await load(0.8)
        down = await gws[0].request("GET", "/readyz")
        assert down.status == 200 and "using local state" in json.loads(down.body)["redis"]
        redis_server.start()
        await until(lambda: all(gw.shared.up for gw in gws))
        await load(0.3)
        assert set(statuses) == {200}
        assert all(gw.count("opencue_gateway_redis_outages_total") == 1 for gw in gws)
        assert all(gw.count("opencue_gateway_redis_up") == 1 for gw in gws)
    finally:
        for gw in gws:
            await gw.close()
