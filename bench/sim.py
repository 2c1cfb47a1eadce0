"""The benchmark's Cuebot: the sandbox farm behind a gRPC server that counts calls served.

``python -m bench.sim --port P --counter-port Q`` runs in its own process (so its CPU is
not charged to the gateway) and differs from ``python -m opencue_sandbox`` in three
ways the benchmark needs:

* it counts the calls it serves (a server interceptor) and reports the counts as JSON on
  ``GET http://127.0.0.1:Q/calls``, because the scenarios measure how many upstream calls
  the gateway saves and the sandbox keeps no counter; ``GET /times?method=M`` answers
  the arrival times (``time.monotonic()``, the same clock in every process of the host)
  of the last 10,000 calls of method M, which the ``events`` scenario uses to tell the
  wait for a poll from what the gateway adds after it;
* it adds one job with a single 10,000-frame layer next to the demo jobs, because the
  sandbox gives every job the same number of frames and 2,000 jobs of 10,000 frames
  would not fit in memory;
* it simulates 60 s of warm-up instead of the sandbox's 30 minutes; by default no work
  progresses (speed 0) during the run, so every scenario reads the same farm. The
  ``events`` scenario runs its own small farm with ``--speed`` above 0, so that progress
  events flow as they do on a real farm.

It starts the farm with ``start_sandbox``, through its two hooks (a server interceptor
and a ``prepare`` step for the big job), and prints one line of JSON (address, big job
id) once it serves.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc

from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.farm import Farm
from opencue_sandbox.launch import JobPlan, LayerPlan, create_job
from opencue_sandbox.server import start_sandbox

BIG_JOB_FRAMES = 10_000


class CallCounter(grpc.ServerInterceptor):
    """Counts every call by method; the count is taken when the call arrives."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Count the call, then serve it unchanged."""
        now = time.monotonic()
        method = handler_call_details.method
        with self._lock:
            self.counts[method] += 1
            self.times.setdefault(method, deque(maxlen=10_000)).append(now)
        return continuation(handler_call_details)

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self.counts)

    def arrivals(self, method: str) -> list[float]:
        """Arrival times (time.monotonic()) of the last calls of ``method``, oldest first."""
        with self._lock:
            return list(self.times.get(method, ()))


def serve_counts(counter: CallCounter, port: int) -> ThreadingHTTPServer:
    """
    Serve ``GET /calls`` (the counts) and ``GET /times?method=M`` (arrival times) as JSON
    on 127.0.0.1:port, in a daemon thread.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/times":
                method = parse_qs(url.query).get("method", [""])[0]
                body = json.dumps(counter.arrivals(method)).encode()
            else:
                body = json.dumps(counter.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the bench reads these many times."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="counter", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """Build the farm, serve it, print the ready line and run until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--counter-port", type=int, required=True)
    p.add_argument("--jobs", type=int, default=1999)
    p.add_argument("--layers-per-job", type=int, default=1)
    p.add_argument("--frames-per-layer", type=int, default=10)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--max-workers", type=int, default=16)
    p.add_argument("--speed", type=float, default=0.0, help="simulated work speed (0: still)")
    a = p.parse_args(argv)
    config = SandboxConfig(
        port=a.port,
        speed=a.speed,
        jobs=a.jobs,
        layers_per_job=a.layers_per_job,
        frames_per_layer=a.frames_per_layer,
        hosts=a.hosts,
        frame_page_cap=BIG_JOB_FRAMES,
        max_workers=a.max_workers,
        warmup_seconds=60.0,
    )
    big_job: list[str] = []

    def add_big_job(farm: Farm) -> None:
        big = create_job(
            farm,
            JobPlan(
                name="bench_big",
                show="testing",
                shot="sh999",
                user="bench",
                layers=[LayerPlan(name="big", range=f"1-{BIG_JOB_FRAMES}")],
            ),
            start_time=farm.state.now_int,
        )
        big_job.append(big.id)

    counter = CallCounter()
    try:
        sandbox = start_sandbox(config, interceptors=[counter], prepare=add_big_job)
    except OSError as err:
        raise SystemExit(str(err)) from None
    counts = serve_counts(counter, a.counter_port)
    print(json.dumps({"address": sandbox.address, "big_job": big_job[0]}), flush=True)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not done.wait(0.5):
        pass
    counts.shutdown()
    sandbox.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
