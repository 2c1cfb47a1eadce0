"""The standalone ``python -m opencue_sandbox`` command."""

from __future__ import annotations

import signal
import subprocess
import sys

import grpc
import pytest
from opencue_proto import show_pb2, show_pb2_grpc

from opencue_sandbox.__main__ import main, parse_args


def test_cli_serves_and_stops_cleanly_on_sigterm() -> None:
    """The command prints what it serves, answers gRPC, and exits 0 on SIGTERM."""
    cmd = [
        sys.executable,
        "-m",
        "opencue_sandbox",
        "--port",
        "0",
        "--jobs",
        "4",
        "--hosts",
        "4",
        "--speed",
        "0",
        "--seed",
        "3",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        third = proc.stdout.readline()
        assert first.startswith("opencue-sandbox serving Cuebot gRPC on 127.0.0.1:")
        assert "3 shows" in second and "4 hosts" in second
        assert "show.ShowInterface" in third and "job.JobInterface" in third
        address = first.rsplit(" on ", 1)[1].strip()
        with grpc.insecure_channel(address) as channel:
            shows = show_pb2_grpc.ShowInterfaceStub(channel).GetShows(
                show_pb2.ShowGetShowsRequest(), timeout=10
            )
        assert "testing" in {s.name for s in shows.shows.shows}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_options_map_to_config() -> None:
    """Every CLI option lands in the SandboxConfig it builds."""
    config = parse_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--seed",
            "5",
            "--speed",
            "2.5",
            "--failure-rate",
            "0.2",
            "--jobs",
            "30",
            "--layers-per-job",
            "2",
            "--frames-per-layer",
            "12",
            "--hosts",
            "8",
            "--frame-page-cap",
            "20000",
        ]
    )
    assert (config.host, config.port, config.seed, config.speed) == ("0.0.0.0", 9000, 5, 2.5)
    assert (config.failure_rate, config.jobs, config.layers_per_job) == (0.2, 30, 2)
    assert (config.frames_per_layer, config.hosts, config.frame_page_cap) == (12, 8, 20000)


@pytest.mark.parametrize("bad", [["--speed", "-1"], ["--failure-rate", "2"], ["--jobs", "-3"]])
def test_cli_rejects_bad_options(bad: list[str]) -> None:
    """Nonsense sizes, speeds and rates are refused with a usage error."""
    with pytest.raises(SystemExit) as info:
        main(bad)
    assert info.value.code == 2


def test_cli_reports_a_port_in_use() -> None:
    """A port that cannot be bound makes the command exit 1 with a message."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["--port", str(port), "--jobs", "1", "--hosts", "1", "--speed", "0"]) == 1
