"""
The event routes over a real socket in front of the simulator: C{opencue-gw wait} and
C{watch} exit codes and output, the clients' event iterators, and clean shutdown.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from opencue_gw.cli import main
from opencue_gw.client import AsyncGatewayClient, GatewayClient, GatewayClientError

REPO = Path(__file__).resolve().parents[2]


class EventsGateway:
    """tests/eventsgw.py in a subprocess: its URL and tokens."""

    def __init__(self, directory: Path, speed: float = 0.0) -> None:
        self.directory = directory
        self.log = (directory / "gateway.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "eventsgw.py"), str(directory), str(speed)],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (directory / "port").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError((directory / "gateway.log").read_text())
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{(directory / 'port').read_text()}"
        self.admin = (directory / "admin.token").read_text()
        self.viewer = (directory / "viewer.token").read_text()

    def env(self, token: str | None = None) -> dict[str, str]:
        """The environment the command line finds the gateway in."""
        return {"OPENCUE_GATEWAY_URL": self.url, "OPENCUE_GATEWAY_TOKEN": token or self.admin}

    def client(self, token: str | None = None) -> GatewayClient:
        """A synchronous client with the admin token."""
        return GatewayClient(self.url, token or self.admin)

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventsGateway]:
    """One gateway for the module, on a frozen simulated farm (speed 0)."""
    running = EventsGateway(tmp_path_factory.mktemp("eventsgw"))
    try:
        yield running
    finally:
        running.stop()


def _cli(gateway: EventsGateway, *argv: str, token: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, environ=gateway.env(token))
    return code, out.getvalue(), err.getvalue()


def _pending_jobs(gateway: EventsGateway) -> list[dict[str, Any]]:
    return [j for j in gateway.client().jobs("testing") if j["state"] == "PENDING"]


def test_wait_exits_0_when_the_job_finishes_with_every_frame_done(gateway: EventsGateway) -> None:
    """wait blocks until the job finishes (its frames eaten meanwhile), then exits 0."""
    job = next(j for j in _pending_jobs(gateway) if not j["jobStats"]["deadFrames"])
    result: list[tuple[int, str, str]] = []
    waiting = threading.Thread(
        target=lambda: result.append(_cli(gateway, "wait", job["id"], "--timeout", "60s"))
    )
    waiting.start()
    time.sleep(1.0)
    assert not result, result
    gateway.client().eat_frames(job["id"])
    waiting.join(30)
    code, out, _ = result[0]
    assert code == 0, result
    assert f"{job['name']}: finished" in out


def test_wait_exits_1_for_a_job_finished_with_dead_frames(gateway: EventsGateway) -> None:
    """A job killed with dead frames: exit 1; --json prints the job and its counts."""
    job = next(j for j in _pending_jobs(gateway) if j["jobStats"]["deadFrames"])
    gateway.client().kill_job(job["id"], "test")
    code, out, _ = _cli(gateway, "wait", job["id"], "--json")
    assert code == 1
    answer = json.loads(out)
    assert answer["job"]["id"] == job["id"] and answer["job"]["state"] == "FINISHED"
    assert answer["frameCounts"]["dead"] == job["jobStats"]["deadFrames"]


def test_wait_exits_6_on_timeout_and_4_for_an_unknown_job(gateway: EventsGateway) -> None:
    """A job that does not finish in time: 6; a job id Cuebot does not know: 4."""
    job = _pending_jobs(gateway)[0]
    started = time.monotonic()
    code, out, _ = _cli(gateway, "wait", job["id"], "--timeout", "1s")
    assert code == 6 and "did not finish within 1s" in out
    assert time.monotonic() - started < 10
    code, _, err = _cli(gateway, "wait", "00000000-0000-0000-0000-000000000000")
    assert code == 4, err


def test_wait_exits_5_when_the_gateway_is_unreachable(gateway: EventsGateway) -> None:
    """Nothing listening: exit 5."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    env = {"OPENCUE_GATEWAY_URL": f"http://127.0.0.1:{port}", "OPENCUE_GATEWAY_TOKEN": "x"}
    code = main(
        ["wait", "00000000-0000-0000-0000-000000000000", "--timeout", "5s"],
        stdout=out,
        stderr=err,
        environ=env,
    )
    assert code == 5, err.getvalue()


def test_wait_route_answers_408_with_code_4(gateway: EventsGateway) -> None:
    """The route's own timeout answer: HTTP 408, gRPC code 4, a message that says so."""
    job = _pending_jobs(gateway)[0]
    with pytest.raises(GatewayClientError) as timed_out:
        gateway.client().wait_for_job(job["id"], timeout=1)
    assert (timed_out.value.http_status, timed_out.value.code) == (408, 4)


def test_watch_prints_one_line_per_event(gateway: EventsGateway) -> None:
    """watch --show prints the show's jobs (first their snapshot), one line or JSON each."""
    code, out, _ = _cli(gateway, "watch", "--show", "testing", "--max-events", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert all(line.startswith("job   snapshot") for line in lines), lines
    code, out, _ = _cli(gateway, "watch", "--show", "testing", "--max-events", "2", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["event"] for r in records] == ["job", "job"]
    assert all(r["data"]["job"]["show"] == "testing" for r in records)


def test_stream_headers_and_viewer_may_not_watch_hosts(gateway: EventsGateway) -> None:
    """The SSE answer's headers; a viewer asking for host events is refused with 403."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        gateway.url + "/api/v1/events?types=job",
        headers={"Authorization": f"Bearer {gateway.admin}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.headers["x-accel-buffering"] == "no"
        assert answer.readline().startswith(b"retry: ")
    request = urllib.request.Request(
        gateway.url + "/api/v1/events?types=host",
        headers={"Authorization": f"Bearer {gateway.viewer}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["code"] == 7
    viewer = gateway.client(gateway.viewer).call("job.JobInterface/GetJobs", {"r": {}})
    assert viewer["jobs"]["jobs"]
    request = urllib.request.Request(
        gateway.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {gateway.viewer}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        me = json.loads(answer.read())
    assert me["sub"] == "viewer-user" and me["roles"] == ["viewer"]
    assert me["may"] == dict.fromkeys(("pause", "resume", "kill", "retry", "retryFrame"), False)


@pytest_twisted.ensureDeferred
async def test_async_client_iterates_events(gateway: EventsGateway) -> None:
    """The Twisted client's async iterator yields the stream's events; leaving closes it."""
    client = AsyncGatewayClient(gateway.url, gateway.admin)
    seen = []
    async for event in client.events(show="testing"):
        seen.append(event)
        if len(seen) == 2:
            break
    assert [e.type for e in seen] == ["job", "job"]
    assert seen[0].changes == ["snapshot"] and seen[0].object["show"] == "testing"


def test_shutdown_ends_streams_with_a_shutdown_event(tmp_path: Path) -> None:
    """SIGTERM: an open stream gets event: shutdown and ends; the process exits."""
    running = EventsGateway(tmp_path)
    try:
        client = running.client()
        received: list[str] = []

        def read() -> None:
            try:
                for event in client.events(show="testing", reconnect=False):
                    received.append(event.type)
            except GatewayClientError:
                received.append("error")

        reader = threading.Thread(target=read)
        reader.start()
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(running.proc.pid, signal.SIGTERM)
        reader.join(15)
        assert not reader.is_alive()
        assert received[-1] == "shutdown", received
    finally:
        running.stop()
