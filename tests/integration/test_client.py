"""The Python clients against the gateway over a real socket in front of the demo farm."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from opencue_gw.client import (
    AsyncGatewayClient,
    Call,
    GatewayClient,
    GatewayClientError,
    RetryPolicy,
    resolve_token,
    resolve_url,
)
from opencue_gw.tap import GatewaySite

from gwtest import GatewayHarness, token
from upstreams import ScriptedCuebot

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def listen(site: Site) -> tuple[str, Any]:
    """Serve C{site} on a loopback port; its base URL and the listening port."""
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}", port


@pytest.fixture
def url(gateway: GatewayHarness) -> Iterator[str]:
    """The gateway's resource tree served on a real loopback socket."""
    base, port = listen(GatewaySite(gateway.resource))
    yield base
    port.stopListening()


class Flaky(Resource):
    """A real HTTP server that answers 503 (with code 14) C{failures} times, then 200."""

    isLeaf = True

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.seen: list[bytes] = []

    def render(self, request: Any) -> bytes:
        """503 until the failures are used up."""
        self.seen.append(request.method)
        request.setHeader(b"content-type", b"application/json")
        if len(self.seen) <= self.failures:
            request.setResponseCode(503)
            return b'{"code":14,"message":"Cuebot is unavailable","details":[]}'
        return b'{"items":[{"name":"x"}],"page":1,"limit":1000,"nextPage":null}'


@pytest_twisted.ensureDeferred
async def test_async_client_reads(url: str, gateway: GatewayHarness) -> None:
    """Shows, jobs, a job, frames by state and any RPC come back as JSON values."""
    client = AsyncGatewayClient(url, token(), reactor=reactor)
    shows = await client.shows()
    assert "testing" in {s["name"] for s in shows}
    jobs = await client.jobs("testing", user="alice")
    assert jobs and {j["user"] for j in jobs} == {"alice"}
    job = await client.job(jobs[0]["id"])
    assert job["name"] == jobs[0]["name"]
    running = await client.frames(job["id"], state="RUNNING")
    assert len(running) == job["jobStats"]["runningFrames"]
    assert {f["state"] for f in running} == {"RUNNING"}
    answer = await client.call("job.JobInterface/GetJobs", {"r": {"shows": ["testing"]}})
    assert len(answer["jobs"]["jobs"]) == len(await client.jobs("testing"))
    layers = await client.layers(job["id"])
    assert (await client.layer(layers[0]["id"]))["id"] == layers[0]["id"]
    hosts = await client.hosts(state="UP")
    assert (await client.host(hosts[0]["name"]))["id"] == hosts[0]["id"]


@pytest_twisted.ensureDeferred
async def test_async_client_errors_carry_codes(url: str) -> None:
    """Not found and a bad token raise GatewayClientError with gRPC code and HTTP status."""
    client = AsyncGatewayClient(url, token(), reactor=reactor)
    with pytest.raises(GatewayClientError) as missing:
        await client.show("no-such-show")
    assert (missing.value.code, missing.value.http_status) == (5, 404)
    assert missing.value.code_name == "NOT_FOUND"
    stranger = AsyncGatewayClient(url, "not-a-token", reactor=reactor)
    with pytest.raises(GatewayClientError) as refused:
        await stranger.shows()
    assert (refused.value.code, refused.value.http_status) == (16, 401)


@pytest_twisted.ensureDeferred
async def test_async_client_changes(fresh_gateway: GatewayHarness) -> None:
    """pause_job and resume_job change the job through the resource routes."""
    base, port = listen(GatewaySite(fresh_gateway.resource))
    try:
        client = AsyncGatewayClient(base, token(), reactor=reactor)
        job = (await client.jobs("testing"))[0]
        await client.pause_job(job["id"])
        assert (await client.job(job["id"]))["isPaused"] is True
        await client.resume_job(job["id"])
        assert (await client.job(job["id"]))["isPaused"] is False
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sync_client_reads_and_errors(url: str) -> None:
    """The urllib client gives the same values and the same errors, from a thread."""
    client = GatewayClient(url, token())
    async_jobs = await AsyncGatewayClient(url, token(), reactor=reactor).jobs("testing")
    jobs = await deferToThread(client.jobs, "testing")
    assert [j["id"] for j in jobs] == [j["id"] for j in async_jobs]
    frames = await deferToThread(client.frames, jobs[0]["id"])
    assert len(frames) == jobs[0]["jobStats"]["totalFrames"]
    with pytest.raises(GatewayClientError) as bad:
        await deferToThread(client.call, "job.JobInterface/GetJob", {"id": 12})
    assert (bad.value.code, bad.value.http_status) == (3, 400)


@pytest_twisted.ensureDeferred
async def test_reads_retry_on_503_until_they_succeed() -> None:
    """A read that meets 503 twice is tried a third time and succeeds."""
    flaky = Flaky(failures=2)
    base, port = listen(Site(flaky))
    try:
        client = AsyncGatewayClient(base, "t", reactor=reactor, retry=FAST)
        assert await client.shows() == [{"name": "x"}]
        assert flaky.seen == [b"GET", b"GET", b"GET"]
        sync = GatewayClient(base, "t", retry=FAST, sleep=lambda _: None)
        flaky.seen.clear()
        assert await deferToThread(sync.shows) == [{"name": "x"}]
        assert len(flaky.seen) == 3
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_retries_are_bounded_and_skip_writes() -> None:
    """Retries stop after the policy's attempts; a write is not retried at all."""
    flaky = Flaky(failures=100)
    base, port = listen(Site(flaky))
    try:
        client = AsyncGatewayClient(base, "t", reactor=reactor, retry=FAST)
        with pytest.raises(GatewayClientError) as read:
            await client.jobs("testing")
        assert (read.value.code, read.value.http_status, len(flaky.seen)) == (14, 503, 3)
        flaky.seen.clear()
        with pytest.raises(GatewayClientError):
            await client.kill_job("some-id")
        assert flaky.seen == [b"POST"]
        flaky.seen.clear()
        with pytest.raises(GatewayClientError):
            await client.call("job.JobInterface/Pause", {})
        assert len(flaky.seen) == 1
    finally:
        await port.stopListening()


def test_unreachable_gateway_is_unavailable() -> None:
    """No listener: code 14, no HTTP status, after the bounded retries of a read."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    pauses: list[float] = []
    client = GatewayClient(f"http://127.0.0.1:{free}", "t", retry=FAST, sleep=pauses.append)
    with pytest.raises(GatewayClientError) as error:
        client.shows()
    assert (error.value.code, error.value.http_status) == (14, None)
    assert len(pauses) == FAST.attempts - 1


def test_retry_delays_are_jittered_and_capped() -> None:
    """Delays stay within the exponential bound, honour Retry-After, and stop at the limit."""
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=2.0)
    read = Call.resource("GET", ["shows"])
    unavailable = GatewayClientError(14, "down", 503)
    rng = random.Random(3)
    for attempt, bound in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0)]:
        delays = {policy.delay(read, unavailable, attempt, rng) for _ in range(50)}
        assert all(d is not None and 0 <= d <= bound for d in delays) and len(delays) > 1
    assert policy.delay(read, unavailable, 5, rng) is None
    assert policy.delay(read, GatewayClientError(5, "gone", 404), 1, rng) is None
    later = GatewayClientError(14, "down", 503, retry_after=1.5)
    assert policy.delay(read, later, 1, rng) == 1.5
    write = Call.resource("POST", ["jobs", "x", "kill"])
    assert policy.delay(write, unavailable, 1, rng) is None
    assert RetryPolicy(retry_writes=True).delay(write, unavailable, 1, rng) is not None


def test_token_and_url_come_from_arguments_files_or_environment(tmp_path: Path) -> None:
    """An explicit token wins, then a token file, then the environment variables."""
    saved = tmp_path / "token"
    saved.write_text("from-file\n")
    env = {"OPENCUE_GATEWAY_TOKEN": "from-env", "OPENCUE_GATEWAY_URL": "http://gw:9/"}
    assert resolve_token("given", str(saved), env) == "given"
    assert resolve_token(None, str(saved), env) == "from-file"
    assert resolve_token(None, None, env) == "from-env"
    assert resolve_token(None, None, {"OPENCUE_GATEWAY_TOKEN_FILE": str(saved)}) == "from-file"
    assert resolve_token(None, None, {}) is None
    with pytest.raises(GatewayClientError):
        resolve_token(None, str(tmp_path / "missing"), {})
    assert resolve_url(None, env) == "http://gw:9"
    assert resolve_url(None, {}) == "http://localhost:8448"


def test_calls_quote_paths_and_encode_parameters() -> None:
    """Path segments are quoted; lists repeat; booleans are lowercase; RPC reads idempotent."""
    call = Call.resource("GET", ["hosts", "a/b c"], {"state": ["UP", "DOWN"], "x": True})
    assert call.url("http://g") == "http://g/api/v1/hosts/a%2Fb%20c?state=UP&state=DOWN&x=true"
    assert Call.rpc("job.JobInterface/GetJobs").idempotent
    assert not Call.rpc("/job.JobInterface/Kill").idempotent
    assert Call.resource("POST", ["jobs"], {"spec": "<x/>", "n": None}).body == b'{"spec": "<x/>"}'


@pytest_twisted.ensureDeferred
async def test_rate_limited_calls_wait_for_retry_after_and_go_through(
    scripted: ScriptedCuebot,
) -> None:
    """
    Against a gateway limiting to one call per second, a second call in a row (a write
    too: the refused call never reached Cuebot) waits out the 429's Retry-After and then
    succeeds; Cuebot sees each call once.
    """
    limited = GatewayHarness(
        scripted.address, options={"rate-limit-rps": "1", "rate-limit-burst": "1"}
    )
    base, port = listen(GatewaySite(limited.resource))
    try:
        client = AsyncGatewayClient(
            base, token(), reactor=reactor, retry=RetryPolicy(attempts=3, max_delay=3.0)
        )
        await client.call("show.ShowInterface/GetShows")
        started = reactor.seconds()
        await client.call("job.JobInterface/Pause", {"job": {"id": "j1"}})
        waited = reactor.seconds() - started
    finally:
        await port.stopListening()
        limited.close()
    assert 0.5 <= waited < 3.0
    assert [seen.method for seen in scripted.seen] == [
        "/show.ShowInterface/GetShows",
        "/job.JobInterface/Pause",
    ]


def test_429_is_retried_only_with_a_retry_after_within_the_limit() -> None:
    """
    The limiter's 429 (with Retry-After) is retried after that wait; Cuebot's
    RESOURCE_EXHAUSTED (429 without Retry-After) is not, nor a wait past max_delay.
    """
    policy = RetryPolicy(attempts=3, base_delay=0.5, max_delay=2.0)
    write = Call.resource("POST", ["jobs", "x", "kill"])
    rng = random.Random(5)
    limited = GatewayClientError(8, "rate limit exceeded", 429, retry_after=1.0)
    delays = {policy.delay(write, limited, 1, rng) for _ in range(20)}
    assert all(d is not None and 1.0 <= d <= 1.5 for d in delays)
    assert policy.delay(write, limited, 3, rng) is None
    assert policy.delay(write, GatewayClientError(8, "too large", 429), 1, rng) is None
    too_long = GatewayClientError(8, "rate limit exceeded", 429, retry_after=30.0)
    assert policy.delay(write, too_long, 1, rng) is None
