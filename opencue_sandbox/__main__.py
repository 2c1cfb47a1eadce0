"""``python -m opencue_sandbox``: serve a simulated Cuebot until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.server import service_names, start_sandbox


def parse_args(argv: list[str] | None) -> SandboxConfig:
    p = argparse.ArgumentParser(
        prog="opencue-sandbox",
        description="A Cuebot stand-in: OpenCue's gRPC API over a simulated render farm.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8443, help="port (default 8443; 0 = any)")
    p.add_argument("--seed", type=int, default=7, help="seed for ids and simulation")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="how many times faster than real frames run (0 freezes the work; "
        "timestamps stay real)",
    )
    p.add_argument(
        "--failure-rate",
        type=float,
        default=0.05,
        help="chance that a frame run fails (default 0.05)",
    )
    p.add_argument("--jobs", type=int, default=None, help="number of demo jobs")
    p.add_argument("--layers-per-job", type=int, default=None, help="layers in each job")
    p.add_argument("--frames-per-layer", type=int, default=None, help="frames in each layer")
    p.add_argument("--hosts", type=int, default=None, help="number of render hosts")
    p.add_argument(
        "--frame-page-cap",
        type=int,
        default=1000,
        help="most frames one GetFrames page returns (Cuebot: 1000)",
    )
    p.add_argument("--max-workers", type=int, default=16, help="gRPC server threads")
    a = p.parse_args(argv)
    for name in ("jobs", "layers_per_job", "frames_per_layer", "hosts"):
        value = getattr(a, name)
        if value is not None and value < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if a.speed < 0:
        p.error("--speed must not be negative")
    if not 0.0 <= a.failure_rate <= 1.0:
        p.error("--failure-rate must be between 0 and 1")
    return SandboxConfig(
        host=a.host,
        port=a.port,
        seed=a.seed,
        speed=a.speed,
        failure_rate=a.failure_rate,
        jobs=a.jobs,
        layers_per_job=a.layers_per_job,
        frames_per_layer=a.frames_per_layer,
        hosts=a.hosts,
        frame_page_cap=max(1, a.frame_page_cap),
        max_workers=max(1, a.max_workers),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    started = time.perf_counter()
    try:
        sb = start_sandbox(config)
    except OSError as err:
        print(f"opencue-sandbox: {err}", file=sys.stderr)
        return 1
    with sb.farm.read() as state:
        counts = (len(state.shows), len(state.active_jobs), len(state.jobs), len(state.hosts))
        frames = len(state.frames)
    services = service_names()
    print(f"opencue-sandbox serving Cuebot gRPC on {sb.address}", flush=True)
    print(
        f"  {counts[0]} shows, {counts[1]} pending jobs ({counts[2]} in all), {frames} frames, "
        f"{counts[3]} hosts; seed {config.seed}, speed {config.speed}x, "
        f"failure rate {config.failure_rate}; ready in {time.perf_counter() - started:.2f}s",
        flush=True,
    )
    print(f"  {len(services)} services modelled: {', '.join(services)}", flush=True)
    print("  monitoring.MonitoringInterface is not served (as on Cuebot)", flush=True)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not done.wait(0.5):
        pass
    print("opencue-sandbox stopping", flush=True)
    sb.stop(grace=2.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
