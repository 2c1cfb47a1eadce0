# -*- test-case-name: tests.test_health -*-
"""
Liveness, readiness and metrics: the readiness probe on a fake clock, the endpoints
through the real resource tree (no token needed) in front of a fake upstream, and the
Prometheus counters the edge records. The same endpoints from a real C{twistd --demo}
process are in L{test_health_wire}.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from opencue_gw.ops.health import PROBE_PATH, ReadinessProbe
from opencue_gw.testing import FakeUpstream, GatewayUnderTest
from opencue_gw.upstream.rpcs import load_rpcs

SHOWS = "/show.ShowInterface/GetShows"


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
        self.upstream.calls[0].succeed()
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
        self.upstream.calls[0].succeed()
        self.clock.advance(5.0)
        self.probe.probe()
        self.upstream.calls[1].fail(14, "connection refused")
        self.assertTrue(self.probe.ready()[0])
        self.clock.advance(11.0)
        ready, reason = self.probe.ready()
        self.assertFalse(ready)
        self.assertIn("Cuebot did not answer (UNAVAILABLE)", reason)
        self.assertNotIn("connection refused", reason)

    def test_failure_reason_before_any_answer(self) -> None:
        """A failed first probe gives the gRPC error as the reason."""
        self.probe.probe()
        self.upstream.calls[0].fail(4, "deadline")
        self.assertEqual(self.probe.ready(), (False, "Cuebot did not answer (DEADLINE_EXCEEDED)"))

    def test_probes_never_overlap(self) -> None:
        """A probe while the previous one is unanswered sends nothing."""
        self.assertIsNotNone(self.probe.probe())
        self.assertIsNone(self.probe.probe())
        self.assertEqual(len(self.upstream.calls), 1)
        self.upstream.calls[0].succeed()
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
            self.upstream.calls[0].succeed()
            self.assertTrue(self.probe.ready()[0])
            # A Deferred failing with an unexpected exception does not stop the loop either.
            self.clock.advance(5.0)
            self.upstream.calls[1].deferred.errback(ValueError("odd"))
            self.clock.advance(5.0)
            self.assertEqual(len(self.upstream.calls), 3)
            self.assertTrue(timer.running)
        finally:
            timer.stopService()

    def test_repeated_identical_failures_log_once(self) -> None:
        """The same failure reason on every tick is logged only the first time."""
        for _ in range(3):
            self.probe.probe()
            self.upstream.calls[-1].fail(14, "down")
        warnings = [e for e in self.events if "probe failed" in e["log_format"]]
        self.assertEqual(len(warnings), 1)


# --- through the resource tree ---


@pytest.fixture
def gw() -> GatewayUnderTest:
    """The gateway in front of a fake upstream whose calls the test answers."""
    return GatewayUnderTest()


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


def _metrics(h: GatewayUnderTest, **kw: Any) -> str:
    reply = h.request("GET", "/metrics", auth=None, **kw)
    assert reply.status == 200, reply.body
    return reply.body.decode()


def test_healthz_needs_no_token(gw: GatewayUnderTest) -> None:
    """GET /healthz answers 200 {"status":"ok"} as JSON without any token."""
    reply = gw.request("GET", "/healthz", auth=None)
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-request-id")


def test_readyz_follows_the_probe(gw: GatewayUnderTest) -> None:
    """/readyz is 503 code 14 before any probe and 200 once Cuebot answered the probe."""
    before = gw.request("GET", "/readyz", auth=None)
    assert before.status == 503
    assert before.json() == {
        "code": 14,
        "message": "Cuebot has not been asked yet",
        "details": [],
    }
    assert before.header("retry-after") == "5"
    gw.probe.probe()
    assert gw.upstream.paths == [PROBE_PATH]
    gw.upstream.last.succeed()
    after = gw.request("GET", "/readyz", auth=None)
    assert after.status == 200
    assert after.json()["status"] == "ready"


def test_readyz_503_with_reason_when_cuebot_is_down(gw: GatewayUnderTest) -> None:
    """When the probe's call fails UNAVAILABLE, /readyz says so."""
    gw.probe.probe()
    gw.upstream.last.fail(14, "failed to connect to all addresses")
    reply = gw.request("GET", "/readyz", auth=None)
    assert reply.status == 503
    payload = reply.json()
    assert payload["code"] == 14 and payload["details"] == []
    assert payload["message"] == "Cuebot did not answer (UNAVAILABLE)"


def test_readyz_503_while_draining(gw: GatewayUnderTest) -> None:
    """A ready gateway answers /readyz 503 once it starts draining for shutdown."""
    gw.probe.probe()
    gw.upstream.last.succeed()
    assert (gw.request("GET", "/readyz", auth=None)).status == 200
    gw.in_flight.drain(1.0, gw.clock)
    reply = gw.request("GET", "/readyz", auth=None)
    assert reply.status == 503
    assert reply.json() == {"code": 14, "message": "the gateway is shutting down", "details": []}


def test_health_paths_refuse_other_methods_with_json_405(
    gw: GatewayUnderTest,
) -> None:
    """Any method but GET/HEAD on a health path is 405 JSON code 12 with Allow, never 500."""
    for path in ("/healthz", "/readyz", "/metrics"):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "FROB"):
            reply = gw.request(method, path, b"{}", auth=None)
            assert reply.status == 405, (method, path, reply.body)
            assert reply.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
            assert reply.header("allow") == "GET, HEAD"


def test_head_healthz_is_200_without_body(gw: GatewayUnderTest) -> None:
    """HEAD /healthz answers like GET with an empty body."""
    reply = gw.request("HEAD", "/healthz", auth=None)
    assert reply.status == 200
    assert reply.body == b""


def test_metrics_count_requests_by_rpc_and_status(gw: GatewayUnderTest) -> None:
    """After a call, /metrics has the request counter and latency for that RPC and status."""
    gw.upstream.answer_all = True
    assert (gw.post(SHOWS)).status == 200
    reply = gw.request("GET", "/metrics", auth=None)
    assert reply.header("content-type").startswith("text/plain")  # type: ignore[union-attr]
    text = reply.body.decode()
    rpc = SHOWS[1:]
    assert _metric(text, "opencue_gateway_requests_total", rpc=rpc, status="200") == 1.0
    assert _metric(text, "opencue_gateway_request_duration_seconds_count", rpc=rpc) == 1.0
    # The scrape itself is still in flight while it renders; the API call is not.
    assert _metric(text, "opencue_gateway_requests_in_flight") == 1.0


def test_metrics_count_auth_failures_by_reason(gw: GatewayUnderTest) -> None:
    """A missing and a malformed token are counted under their reasons."""
    assert (gw.post(SHOWS, auth=None)).status == 401
    assert (gw.post(SHOWS, auth="Bearer not-a-jwt")).status == 401
    assert (gw.post(SHOWS, auth="Bearer not-a-jwt")).status == 401
    text = _metrics(gw)
    assert _metric(text, "opencue_gateway_auth_failures_total", reason="missing") == 1.0
    assert _metric(text, "opencue_gateway_auth_failures_total", reason="malformed") == 2.0
    assert _metric(text, "opencue_gateway_requests_total", rpc="", status="401") == 3.0


def test_metrics_count_upstream_errors_by_code(gw: GatewayUnderTest) -> None:
    """A NOT_FOUND from Cuebot is counted as an upstream error; a gateway 404 is not."""
    pending = gw.send("POST", SHOWS, b"{}")
    gw.upstream.last.fail(5, "no show")
    assert pending.answer().status == 404
    assert (gw.post("/no.Such/Route")).status == 404
    text = _metrics(gw)
    assert _metric(text, "opencue_gateway_upstream_errors_total", code="NOT_FOUND") == 1.0
    assert _metric(text, "opencue_gateway_requests_total", rpc=SHOWS[1:], status="404") == 1.0
    # The unknown route is never labelled with its raw path.
    assert "no.Such" not in text


def test_metrics_behind_token_when_not_public() -> None:
    """With metrics_public=False, /metrics is 401 without a token and 200 with one."""
    gateway = GatewayUnderTest(metrics_public=False)
    refused = gateway.request("GET", "/metrics", auth=None)
    allowed = gateway.request("GET", "/metrics")
    health = gateway.request("GET", "/healthz", auth=None)
    assert refused.status == 401
    assert refused.json()["code"] == 16
    assert allowed.status == 200
    assert allowed.header("content-type").startswith("text/plain")  # type: ignore[union-attr]
    assert "opencue_gateway_auth_failures_total" in allowed.body.decode()
    assert health.status == 200
