# -*- test-case-name: tests.test_health -*-
"""
Liveness, readiness and metrics: the readiness probe on a fake clock, the endpoints
through the real resource tree (no token needed), the Prometheus counters the edge
records, and the same endpoints from a real C{twistd --demo} process.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest_twisted
from test_process import Gateway, free_port
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from opencue_gw.errors import GatewayError
from opencue_gw.health import PROBE_PATH, ReadinessProbe
from opencue_gw.rpcs import load_rpcs

from gwtest import GatewayHarness, token
from upstreams import Script, ScriptedCuebot

SHOWS = "/show.ShowInterface/GetShows"


class FakeUpstream:
    """An upstream whose answers the test hands out by hand."""

    def __init__(self) -> None:
        self.calls: list[Deferred[Any]] = []
        self.raise_next: Exception | None = None

    def call(self, rpc: Any, request: Any, *, timeout: float | None, metadata: Any = ()) -> Any:
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error
        d: Deferred[Any] = Deferred()
        self.calls.append(d)
        return d


class ReadinessProbeTests(SynchronousTestCase):
    """The probe's memory of Cuebot's answers, on a fake clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.upstream = FakeUpstream()
        self.events: list[dict[str, Any]] = []
        self.probe = ReadinessProbe(
            self.upstream,
            load_rpcs()[PROBE_PATH],
            self.clock,
            interval=5.0,
            stale_after=15.0,
        )
        self.probe.log = Logger(observer=self.events.append)  # type: ignore[misc]

    def test_not_ready_before_any_probe(self) -> None:
        """Before Cuebot was ever asked, the probe is not ready and says so."""
        self.assertEqual(self.probe.ready(), (False, "Cuebot has not been asked yet"))

    def test_ready_after_answer_until_stale(self) -> None:
        """An answer makes it ready for exactly stale_after seconds, then it is not."""
        self.probe.probe()
        self.upstream.calls[0].callback(object())
        self.assertTrue(self.probe.ready()[0])
        self.clock.advance(15.0)
        self.assertTrue(self.probe.ready()[0])
        self.clock.advance(1.0)
        ready, reason = self.probe.ready()
        self.assertFalse(ready)
        self.assertEqual(reason, "Cuebot last answered 16s ago (no answer)")

    def test_one_failed_probe_does_not_flap(self) -> None:
        """A failure after a recent answer keeps it ready until the answer goes stale."""
        self.probe.probe()
        self.upstream.calls[0].callback(object())
        self.clock.advance(5.0)
        self.probe.probe()
        self.upstream.calls[1].errback(GatewayError(14, "connection refused", upstream=True))
        self.assertTrue(self.probe.ready()[0])
        self.clock.advance(11.0)
        ready, reason = self.probe.ready()
        self.assertFalse(ready)
        self.assertIn("Cuebot did not answer (UNAVAILABLE)", reason)
        self.assertNotIn("connection refused", reason)

    def test_failure_reason_before_any_answer(self) -> None:
        """A failed first probe gives the gRPC error as the reason."""
        self.probe.probe()
        self.upstream.calls[0].errback(GatewayError(4, "deadline", upstream=True))
        self.assertEqual(self.probe.ready(), (False, "Cuebot did not answer (DEADLINE_EXCEEDED)"))

    def test_probes_never_overlap(self) -> None:
        """A probe while the previous one is unanswered sends nothing."""
        self.assertIsNotNone(self.probe.probe())
        self.assertIsNone(self.probe.probe())
        self.assertEqual(len(self.upstream.calls), 1)
        self.upstream.calls[0].callback(object())
        self.probe.probe()
        self.assertEqual(len(self.upstream.calls), 2)

    def test_timer_loop_survives_a_raising_probe(self) -> None:
        """On the timer, a call that raises is logged once and the next tick probes again."""
        timer = self.probe.service()
        self.upstream.raise_next = RuntimeError("channel exploded")
        timer.startService()
        try:
            self.assertEqual(self.upstream.calls, [])
            ready, reason = self.probe.ready()
            self.assertFalse(ready)
            self.assertEqual(reason, "Cuebot probe failed")
            warnings = [e for e in self.events if "probe failed" in e["log_format"]]
            self.assertEqual(len(warnings), 1)
            self.clock.advance(5.0)
            self.assertEqual(len(self.upstream.calls), 1)
            self.upstream.calls[0].callback(object())
            self.assertTrue(self.probe.ready()[0])
            # A Deferred failing with an unexpected exception does not stop the loop either.
            self.clock.advance(5.0)
            self.upstream.calls[1].errback(ValueError("odd"))
            self.clock.advance(5.0)
            self.assertEqual(len(self.upstream.calls), 3)
            self.assertTrue(timer.running)
        finally:
            timer.stopService()

    def test_repeated_identical_failures_log_once(self) -> None:
        """The same failure reason on every tick is logged only the first time."""
        for _ in range(3):
            self.probe.probe()
            self.upstream.calls[-1].errback(GatewayError(14, "down", upstream=True))
        warnings = [e for e in self.events if "probe failed" in e["log_format"]]
        self.assertEqual(len(warnings), 1)


# --- through the resource tree ---


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if found == labels:
            return float(match.group(4))
    return None


async def _metrics(h: GatewayHarness, **kw: Any) -> str:
    reply = await h.request("GET", "/metrics", auth=None, **kw)
    assert reply.status == 200, reply.body
    return reply.body.decode()


@pytest_twisted.ensureDeferred
async def test_healthz_needs_no_token(scripted_gateway: GatewayHarness) -> None:
    """GET /healthz answers 200 {"status":"ok"} as JSON without any token."""
    reply = await scripted_gateway.request("GET", "/healthz", auth=None)
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-request-id")


@pytest_twisted.ensureDeferred
async def test_readyz_follows_the_probe(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """/readyz is 503 code 14 before any probe and 200 once Cuebot answered the probe."""
    before = await scripted_gateway.request("GET", "/readyz", auth=None)
    assert before.status == 503
    assert before.json() == {
        "code": 14,
        "message": "Cuebot has not been asked yet",
        "details": [],
    }
    assert before.header("retry-after") == "5"
    await scripted_gateway.probe.probe()
    assert [s.method for s in scripted.seen] == [PROBE_PATH]
    after = await scripted_gateway.request("GET", "/readyz", auth=None)
    assert after.status == 200
    assert after.json()["status"] == "ready"


@pytest_twisted.ensureDeferred
async def test_readyz_503_with_reason_when_cuebot_is_down() -> None:
    """With nothing listening at the Cuebot address, /readyz says UNAVAILABLE."""
    harness = GatewayHarness(f"127.0.0.1:{free_port()}")
    try:
        await harness.probe.probe()
        reply = await harness.request("GET", "/readyz", auth=None)
    finally:
        harness.close()
    assert reply.status == 503
    payload = reply.json()
    assert payload["code"] == 14 and payload["details"] == []
    assert payload["message"] == "Cuebot did not answer (UNAVAILABLE)"


@pytest_twisted.ensureDeferred
async def test_readyz_503_while_draining(scripted_gateway: GatewayHarness) -> None:
    """A ready gateway answers /readyz 503 once it starts draining for shutdown."""
    await scripted_gateway.probe.probe()
    assert (await scripted_gateway.request("GET", "/readyz", auth=None)).status == 200
    await scripted_gateway.in_flight.drain(1.0, reactor)
    reply = await scripted_gateway.request("GET", "/readyz", auth=None)
    assert reply.status == 503
    assert reply.json() == {"code": 14, "message": "the gateway is shutting down", "details": []}


@pytest_twisted.ensureDeferred
async def test_health_paths_refuse_other_methods_with_json_405(
    scripted_gateway: GatewayHarness,
) -> None:
    """Any method but GET/HEAD on a health path is 405 JSON code 12 with Allow, never 500."""
    for path in ("/healthz", "/readyz", "/metrics"):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "FROB"):
            reply = await scripted_gateway.request(method, path, b"{}", auth=None)
            assert reply.status == 405, (method, path, reply.body)
            assert reply.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
            assert reply.header("allow") == "GET, HEAD"


@pytest_twisted.ensureDeferred
async def test_head_healthz_is_200_without_body(scripted_gateway: GatewayHarness) -> None:
    """HEAD /healthz answers like GET with an empty body."""
    reply = await scripted_gateway.request("HEAD", "/healthz", auth=None)
    assert reply.status == 200
    assert reply.body == b""


@pytest_twisted.ensureDeferred
async def test_metrics_count_requests_by_rpc_and_status(
    scripted_gateway: GatewayHarness,
) -> None:
    """After a call, /metrics has the request counter and latency for that RPC and status."""
    assert (await scripted_gateway.post(SHOWS)).status == 200
    reply = await scripted_gateway.request("GET", "/metrics", auth=None)
    assert reply.header("content-type").startswith("text/plain")  # type: ignore[union-attr]
    text = reply.body.decode()
    rpc = SHOWS[1:]
    assert _metric(text, "opencue_gateway_requests_total", rpc=rpc, status="200") == 1.0
    assert _metric(text, "opencue_gateway_request_duration_seconds_count", rpc=rpc) == 1.0
    # The scrape itself is still in flight while it renders; the API call is not.
    assert _metric(text, "opencue_gateway_requests_in_flight") == 1.0


@pytest_twisted.ensureDeferred
async def test_metrics_count_auth_failures_by_reason(scripted_gateway: GatewayHarness) -> None:
    """A missing and a malformed token are counted under their reasons."""
    assert (await scripted_gateway.post(SHOWS, auth=None)).status == 401
    assert (await scripted_gateway.post(SHOWS, auth="Bearer not-a-jwt")).status == 401
    assert (await scripted_gateway.post(SHOWS, auth="Bearer not-a-jwt")).status == 401
    text = await _metrics(scripted_gateway)
    assert _metric(text, "opencue_gateway_auth_failures_total", reason="missing") == 1.0
    assert _metric(text, "opencue_gateway_auth_failures_total", reason="malformed") == 2.0
    assert _metric(text, "opencue_gateway_requests_total", rpc="", status="401") == 3.0


@pytest_twisted.ensureDeferred
async def test_metrics_count_upstream_errors_by_code(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A NOT_FOUND from Cuebot is counted as an upstream error; a gateway 404 is not."""
    scripted.scripts[SHOWS] = Script(code=grpc.StatusCode.NOT_FOUND, details="no show")
    assert (await scripted_gateway.post(SHOWS)).status == 404
    assert (await scripted_gateway.post("/no.Such/Route")).status == 404
    text = await _metrics(scripted_gateway)
    assert _metric(text, "opencue_gateway_upstream_errors_total", code="NOT_FOUND") == 1.0
    assert _metric(text, "opencue_gateway_requests_total", rpc=SHOWS[1:], status="404") == 1.0
    # The unknown route is never labelled with its raw path.
    assert "no.Such" not in text


@pytest_twisted.ensureDeferred
async def test_metrics_behind_token_when_not_public(scripted: ScriptedCuebot) -> None:
    """With metrics_public=False, /metrics is 401 without a token and 200 with one."""
    harness = GatewayHarness(scripted.address, metrics_public=False)
    try:
        refused = await harness.request("GET", "/metrics", auth=None)
        allowed = await harness.request("GET", "/metrics")
        health = await harness.request("GET", "/healthz", auth=None)
    finally:
        harness.close()
    assert refused.status == 401
    assert refused.json()["code"] == 16
    assert allowed.status == 200
    assert allowed.header("content-type").startswith("text/plain")  # type: ignore[union-attr]
    assert "opencue_gateway_auth_failures_total" in allowed.body.decode()
    assert health.status == 200


# --- a real daemon ---


def _get(port: int, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read(), answer.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")


def test_demo_daemon_serves_health_without_token(tmp_path: Path) -> None:
    """twistd --demo answers /healthz, becomes ready on /readyz, and serves /metrics."""
    daemon = Gateway(["--demo", "--demo-speed", "0"], {"LOG_LEVEL": "info"}, tmp_path)
    try:
        status, body, _ = _get(daemon.port, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        deadline = time.monotonic() + 10
        while True:
            status, body, _ = _get(daemon.port, "/readyz")
            if status == 200 or time.monotonic() > deadline:
                break
            assert json.loads(body)["code"] == 14
            time.sleep(0.1)
        assert status == 200, body
        assert json.loads(body)["status"] == "ready"
        status, body, content_type = _get(daemon.port, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert b'opencue_gateway_requests_total{rpc="",status="200"}' in body
        # Everything else still needs a token.
        assert daemon.call(SHOWS)[0] == 401
        assert daemon.call(SHOWS, {}, token())[0] == 401  # not the demo's secret
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log.read_text()
