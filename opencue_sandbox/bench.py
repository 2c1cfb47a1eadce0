"""Measure the sandbox as an upstream: FindShow throughput and a 2,000-job GetJobs.

``python -m opencue_sandbox.bench`` starts ``python -m opencue_sandbox`` in its own
process (so client and server do not share a GIL), then drives it from a grpc.aio
client in this process. Loopback only; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import grpc
from opencue_proto import job_pb2, job_pb2_grpc, show_pb2, show_pb2_grpc


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "opencue_sandbox",
        "--port",
        "0",
        "--speed",
        "0",
        "--jobs",
        str(args.jobs),
        "--hosts",
        str(args.hosts),
        "--max-workers",
        str(args.max_workers),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " on " not in line:
        proc.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return proc, line.rsplit(" on ", 1)[1].strip()


async def find_show_rate(address: str, calls: int, in_flight: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = show_pb2_grpc.ShowInterfaceStub(channel)
        request = show_pb2.ShowFindShowRequest(name="testing")
        await stub.FindShow(request)
        left = [calls]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await stub.FindShow(request)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return calls / (time.perf_counter() - started)


def get_jobs_latency(address: str, rounds: int) -> tuple[list[float], int, int]:
    options = [("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = job_pb2_grpc.JobInterfaceStub(channel)
        request = job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(include_finished=True))
        times = []
        reply = stub.GetJobs(request)
        for _ in range(rounds):
            started = time.perf_counter()
            reply = stub.GetJobs(request)
            times.append((time.perf_counter() - started) * 1000)
        return times, len(reply.jobs.jobs), reply.ByteSize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--max-workers", type=int, default=16)
    args = p.parse_args(argv)
    started = time.perf_counter()
    proc, address = start_server(args)
    print(
        f"sandbox with {args.jobs} jobs / {args.hosts} hosts up at {address} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    try:
        rate = asyncio.run(find_show_rate(address, args.calls, args.in_flight))
        print(f"FindShow: {rate:,.0f} calls/s ({args.calls} calls, {args.in_flight} in flight)")
        times, count, size = get_jobs_latency(address, args.rounds)
        print(
            f"GetJobs (all {count} jobs, {size / 1e6:.1f} MB): "
            f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms "
            f"over {args.rounds} calls"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
