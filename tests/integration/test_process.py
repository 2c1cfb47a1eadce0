# -*- test-case-name: tests.test_process -*-
"""
The gateway as operators run it: C{twistd -n opencue-gateway ...} in its own process,
answering over a real socket, and stopping cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtest import SECRET, token
from upstreams import Script, ScriptedCuebot

REPO = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """A twistd-run gateway process and a way to call it."""

    def __init__(self, args: list[str], env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "gateway.log"
        self._out = self.log.open("wb")
        command = [
            *TWISTD,
            "-n",
            "--pidfile=",
            "opencue-gateway",
            "--port",
            f"tcp:{self.port}:interface=127.0.0.1",
            *args,
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("gateway exited: " + self.log.read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("gateway did not listen: " + self.log.read_text())

    def call(self, path: str, body: Any = None, bearer: str | None = None) -> tuple[int, Any]:
        """POST JSON and return (status, parsed body)."""
        data = json.dumps(body if body is not None else {}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method="POST"
        )
        if bearer is not None:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> int:
        """SIGTERM (unless it is already on its way out) and wait; returns the exit status."""
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._out.close()


@pytest.fixture
def scripted_process(scripted: ScriptedCuebot, tmp_path: Path) -> Iterator[Gateway]:
    """twistd running the gateway in front of the scripted Cuebot."""
    gateway = Gateway(
        ["--cuebot", scripted.address, "--grace-period", "10"],
        {"JWT_SECRET": SECRET.decode(), "LOG_LEVEL": "info"},
        tmp_path,
    )
    yield gateway
    gateway.stop()


def test_sigterm_lets_requests_in_flight_finish(
    scripted: ScriptedCuebot, scripted_process: Gateway
) -> None:
    """SIGTERM during a 1.5 s call: the call still answers 200, then twistd exits 0."""
    scripted.scripts["/show.ShowInterface/GetShows"] = Script(delay=1.5)
    answers: list[tuple[int, Any]] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            scripted_process.call("/show.ShowInterface/GetShows", {}, token())
        )
    )
    caller.start()
    deadline = time.monotonic() + 5

    def shows_seen() -> list[Any]:
        return [s for s in scripted.seen if s.method == "/show.ShowInterface/GetShows"]

    while not shows_seen() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shows_seen(), "the call never reached Cuebot"
    scripted_process.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", scripted_process.port), timeout=1).close()
    caller.join(10)
    assert answers == [(200, {"shows": None})]
    assert scripted_process.stop() == 0
    assert not shows_seen()[-1].cancelled.is_set()
    log = scripted_process.log.read_text()
    assert "waiting up to 10.0s for 1 requests in flight" in log
    assert "Traceback" not in log


def test_access_log_and_no_token_in_log(scripted_process: Gateway) -> None:
    """The running daemon logs one access line per request and never the token."""
    secret_token = token(sub="bob")
    assert scripted_process.call("/show.ShowInterface/GetShows", {}, secret_token)[0] == 200
    assert scripted_process.call("/show.ShowInterface/GetShows", {}, "nonsense")[0] == 401
    assert scripted_process.stop() == 0
    log = scripted_process.log.read_text()
    assert "POST /show.ShowInterface/GetShows 200" in log
    assert "POST /show.ShowInterface/GetShows 401" in log
    assert secret_token.rsplit(".", 1)[1] not in log
    assert secret_token not in log


def _wait_gone(pid: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while Path(f"/proc/{pid}").exists() and proc_state(pid) != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not exit"
        time.sleep(0.05)


def proc_state(pid: int) -> str:
    """
    A process's state letter from C{/proc/<pid>/stat}, or "" once it is gone. The
    command name is in parentheses and may hold spaces or parentheses: the fields
    after it start after the last ")".
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_json_log_of_a_daemonized_gateway_lands_in_its_logfile(
    scripted: ScriptedCuebot, tmp_path: Path
) -> None:
    """
    twistd daemonized with --logger=opencue_gw.logs.json_observer --logfile=F: every
    line of F is one JSON object, the access event among them, nothing goes elsewhere.
    """
    port = free_port()
    logfile = tmp_path / "gateway.json.log"
    pidfile = tmp_path / "gateway.pid"
    started = subprocess.run(
        [
            *TWISTD,
            "--logger=opencue_gw.logs.json_observer",
            f"--logfile={logfile}",
            f"--pidfile={pidfile}",
            "opencue-gateway",
            "--port",
            f"tcp:{port}:interface=127.0.0.1",
            "--cuebot",
            scripted.address,
        ],
        cwd=REPO,
        env={**os.environ, "JWT_SECRET": SECRET.decode(), "LOG_LEVEL": "info"},
        capture_output=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout == b"" and started.stderr == b""
    pid = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the daemon did not listen"
                time.sleep(0.05)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/show.ShowInterface/GetShows", data=b"{}", method="POST"
        )
        request.add_header("Authorization", f"Bearer {token(sub='carol')}")
        with urllib.request.urlopen(request, timeout=15) as answer:
            assert answer.status == 200
    finally:
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
    lines = [json.loads(line) for line in logfile.read_text().splitlines()]
    assert lines, "the log file is empty"
    for line in lines:
        assert {"time", "level", "namespace", "message"} <= set(line)
        assert not [key for key in line if key.startswith("log_")]
    access = [line for line in lines if line.get("path") == "/show.ShowInterface/GetShows"]
    assert len(access) == 1
    assert access[0]["status"] == 200 and access[0]["sub"] == "carol"
    assert access[0]["message"].startswith("POST /show.ShowInterface/GetShows 200")
    assert not pidfile.exists()


def _post(port: int, path: str, bearer: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}", method="POST")
    request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


def test_stale_if_error_answers_reads_while_cuebot_is_down(tmp_path: Path) -> None:
    """
    With --stale-if-error 60s and Cuebot stopped: a read answered before gets its last
    answer (200, Warning 110, Age), counted in /metrics; a mutation and a read never
    answered get 503.
    """
    cuebot = ScriptedCuebot()
    gateway = Gateway(
        ["--cuebot", cuebot.address, "--stale-if-error", "60s", "--no-coalesce"],
        {"JWT_SECRET": SECRET.decode(), "LOG_LEVEL": "info"},
        tmp_path,
    )
    try:
        bearer = token()
        assert _post(gateway.port, "/show.ShowInterface/GetShows", bearer)[0] == 200
        cuebot.stop()
        status, headers = _post(gateway.port, "/show.ShowInterface/GetShows", bearer)
        assert status == 200
        assert headers["warning"] == '110 - "Response is Stale"'
        assert int(headers["age"]) >= 0
        assert _post(gateway.port, "/show.ShowInterface/GetActiveShows", bearer)[0] == 503
        assert _post(gateway.port, "/show.ShowInterface/CreateShow", bearer)[0] == 503
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics") as answer:
            metrics = answer.read().decode()
        assert "opencue_gateway_stale_reads_total 1.0" in metrics
    finally:
        assert gateway.stop() == 0
        cuebot.stop()
    log = gateway.log.read_text()
    assert "Answered /show.ShowInterface/GetShows with the answer of" in log
