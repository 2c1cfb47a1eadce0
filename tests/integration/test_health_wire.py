# -*- test-case-name: tests.test_health_wire -*-
"""
Health endpoints where the wire is the behaviour: readiness against a Cuebot address
nobody listens on (the real client's UNAVAILABLE), and the endpoints of a real
C{twistd --demo} process. The handlers are tested synchronously in L{test_health}.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest_twisted
from test_process import Gateway, free_port

from gwtest import GatewayHarness, token

SHOWS = "/show.ShowInterface/GetShows"


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
