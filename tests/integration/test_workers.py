# -*- test-case-name: tests.test_workers -*-
"""
C{--workers N} as operators run it: one port, N processes answering on it, a dead worker
replaced, and SIGTERM passed on for a graceful stop with exit status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_process import REPO, TWISTD, free_port

from opencue_gw.config import ConfigError
from opencue_gw.ops.workers import shareable, worker_argv


def _parent_of(stat: str) -> int:
    """
    The parent pid from a C{/proc/<pid>/stat} line. The command name (second field) is in
    parentheses and may hold spaces and parentheses itself; the fields after it start
    after the last ")": state, then the parent pid.
    """
    return int(stat[stat.rindex(")") + 1 :].split()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if _parent_of(stat) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("name", ["python3", "tmux: server", "a) b (c", "(sd-pam)", ") 1 2 3"])
def test_parent_pid_is_read_past_any_command_name(name: str) -> None:
    """Names with spaces and parentheses do not shift the fields that follow them."""
    assert _parent_of(f"4242 ({name}) S 17 4242 4242 0 -1 4194560 1 0 0 0") == 17


def _get(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_for(condition: object, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def pool(tmp_path: Path) -> subprocess.Popen[bytes]:
    """twistd with two workers in front of the demo farm."""
    port = free_port()
    log = (tmp_path / "pool.log").open("wb")
    proc = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            "opencue-gateway",
            "--demo",
            "--workers",
            "2",
            "--port",
            f"tcp:{port}:interface=127.0.0.1",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.port = port  # type: ignore[attr-defined]
    proc.log = tmp_path / "pool.log"  # type: ignore[attr-defined]
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_workers_serve_restart_and_stop(pool: subprocess.Popen[bytes]) -> None:
    """Two workers answer on the shared port; a killed one is replaced; SIGTERM exits 0."""
    port = pool.port  # type: ignore[attr-defined]
    _wait_for(lambda: len(_children(pool.pid)) == 2)
    _wait_for(lambda: _get(port, "/healthz") == 200)
    assert [_get(port, "/healthz") for _ in range(10)] == [200] * 10
    first = sorted(_children(pool.pid))
    os.kill(first[0], signal.SIGKILL)
    _wait_for(lambda: len(_children(pool.pid)) == 2 and first[0] not in _children(pool.pid))
    _wait_for(lambda: _get(port, "/healthz") == 200)
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=60) == 0
    log = pool.log.read_text()  # type: ignore[attr-defined]
    assert "restarting" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("description", "shared"),
    [
        ("8448", ("", 8448, 1024)),
        ("tcp:9000:interface=127.0.0.1", ("127.0.0.1", 9000, 1024)),
        ("tcp:9001:backlog=50", ("", 9001, 50)),
    ],
)
def test_shareable_descriptions(description: str, shared: tuple[str, int, int]) -> None:
    """tcp descriptions and bare ports can be shared by workers."""
    assert shareable(description) == shared


@pytest.mark.parametrize("description", ["ssl:8448:privateKey=k:certKey=c", "unix:/tmp/s"])
def test_unshareable_descriptions_are_refused(description: str) -> None:
    """Other endpoint types are refused with a message naming --workers."""
    with pytest.raises(ConfigError, match="--workers"):
        shareable(description)


def test_worker_argv_drops_parent_only_options() -> None:
    """Workers get the parent's options minus --workers, --port and --demo, plus their own."""
    argv = [
        "twistd",
        "-n",
        "opencue-gateway",
        "--demo",
        "--workers",
        "2",
        "--port=tcp:1",
        "--read-cache-ms",
        "500",
        "--demo-token-file",
        "t",
    ]
    built = worker_argv(argv, ["--worker-fd", "3"])
    assert built[-5:] == ["opencue-gateway", "--read-cache-ms", "500", "--worker-fd", "3"]
    assert "--demo" not in built and "--workers" not in built


def test_worker_argv_passes_logging_and_reactor_on() -> None:
    """--logger/--reactor go to workers; a log file gets a per-worker name."""
    argv = [
        "twistd",
        "--logfile",
        "/var/log/gw.log",
        "--reactor=epoll",
        "-n",
        "opencue-gateway",
        "--workers",
        "2",
    ]
    built = worker_argv(argv, ["--worker-fd", "3"], index=1)
    twistd_part = built[: built.index("opencue-gateway")]
    assert "--logfile=/var/log/gw.log.worker1" in twistd_part
    assert "--reactor=epoll" in twistd_part


def test_sighup_is_passed_on_and_parent_death_stops_workers(
    pool: subprocess.Popen[bytes],
) -> None:
    """SIGHUP leaves the pool running; SIGKILL of the parent makes the workers exit."""
    port = pool.port  # type: ignore[attr-defined]
    _wait_for(lambda: len(_children(pool.pid)) == 2)
    _wait_for(lambda: _get(port, "/healthz") == 200)
    workers = _children(pool.pid)
    pool.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert pool.poll() is None
    assert sorted(_children(pool.pid)) == sorted(workers)
    pool.kill()
    pool.wait()
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), limit=15)


def test_json_logs_with_workers_one_file_each(tmp_path: Path) -> None:
    """--logger json with --logfile F and two workers: F and F.worker0/1, all JSON lines."""
    import json

    port = free_port()
    logfile = tmp_path / "gw.log"
    proc = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            "--logger=opencue_gw.logs.json_observer",
            f"--logfile={logfile}",
            "opencue-gateway",
            "--demo",
            "--workers",
            "2",
            "--port",
            f"tcp:{port}:interface=127.0.0.1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(_children(proc.pid)) == 2)
        # Each worker opens its file when twistd starts its logging, before it serves.
        _wait_for(lambda: len(list(tmp_path.glob("gw.log.worker*"))) == 2)
        _wait_for(lambda: _get(port, "/healthz") == 200)
        assert [_get(port, "/healthz") for _ in range(6)] == [200] * 6
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gw.log", "gw.log.worker0", "gw.log.worker1"]
    access = 0
    for name in files:
        lines = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        assert lines and all({"time", "level", "namespace", "message"} <= set(x) for x in lines)
        access += sum(1 for line in lines if line.get("path") == "/healthz")
    assert access >= 7
