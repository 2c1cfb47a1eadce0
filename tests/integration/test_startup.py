"""
Starting the gateway as users do, in real processes: a busy port is one line and exit
status 2 before any demo token is shown, and the README's demo command leaves no file
behind in the directory it is run from.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_process import REPO, TWISTD, free_port

# The plugin is found through sys.path; the tests run twistd from other directories.
_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port someone else is listening on."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    "twistd_options",
    [
        pytest.param(["-n", "--pidfile="], id="foreground"),
        pytest.param([], id="daemon"),
    ],
)
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_busy_port_is_one_line_and_exit_2_without_a_token(
    busy_port: int, tmp_path: Path, twistd_options: list[str], workers: list[str]
) -> None:
    """The demo on a taken port: exit 2, one line naming the endpoint, no token, no files."""
    description = f"tcp:{busy_port}:interface=127.0.0.1"
    pidfile = [f"--pidfile={tmp_path / 'gw.pid'}"] if not twistd_options else []
    done = subprocess.run(
        [
            *TWISTD,
            *twistd_options,
            *pidfile,
            f"--logfile={tmp_path / 'gw.log'}",
            "opencue-gateway",
            "--demo",
            "--port",
            description,
            *workers,
        ],
        cwd=tmp_path,
        env=_ENV,
        capture_output=True,
        timeout=60,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, output
    assert output == (
        f"opencue-gateway: --port: cannot listen on {description!r}: Address already in use\n"
    )
    assert "TOKEN" not in output
    assert list(tmp_path.iterdir()) == []


def _readme_demo_command() -> list[str]:
    """The demo command of the README's set-up section, as a user would paste it."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if "twistd" in line and "--demo" in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].rsplit("&&", 1)[-1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until the gateway answers HTTP (its reactor runs, so SIGTERM is handled)."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the gateway exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not answer"
            time.sleep(0.05)


def test_readme_demo_command_leaves_nothing_in_the_checkout(tmp_path: Path) -> None:
    """
    The README's demo command, run in a directory standing for the checkout, creates no
    file there (no twistd.pid), so a second twistd started in the same directory with
    twistd's defaults, as the test command's would be, is not refused.
    """
    command = _readme_demo_command()
    assert Path(command[0]).name == "twistd"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    port, second_port = free_port(), free_port()
    with (tmp_path / "demo.out").open("wb") as out:
        demo = subprocess.Popen(
            [*TWISTD, *command[1:], "--port", f"tcp:{port}:interface=127.0.0.1"],
            cwd=checkout,
            env=_ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_listening(demo, port)
            assert list(checkout.iterdir()) == []
            second = subprocess.Popen(
                [
                    *TWISTD,
                    "-n",
                    "opencue-gateway",
                    "--demo",
                    "--port",
                    f"tcp:{second_port}:interface=127.0.0.1",
                ],
                cwd=checkout,
                env=_ENV,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_listening(second, second_port)
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=30) == 0
        finally:
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=30) == 0
    assert list(checkout.iterdir()) == []
    assert re.search(r"export TOKEN=\S+", (tmp_path / "demo.out").read_text())
