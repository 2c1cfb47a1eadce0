"""
The harness's own HTTP client pieces, shared by the scenarios: what a load run measured
(:class:`Load`), a nearest-rank percentile, and a minimal keep-alive HTTP/1.1 connection.

They are plain asyncio, not an HTTP library, so that what the client costs per request is
small and known (the latencies of the paced scenarios include it), and so that each
scenario decides exactly when a connection opens and closes, which the CueWeb model needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MB = 1024 * 1024


@dataclass
class Load:
    """What a load run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of a sample."""
    s = sorted(values)
    if not s:
        return 0.0
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client connection (Content-Length or chunked bodies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.headers: dict[str, str] = {}  # of the last answer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * MB)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        """Send one POST and read the whole answer; returns (status, body)."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        pairs = (x.partition(":") for x in lines[1:])
        headers = self.headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            return status, b"".join(chunks)
        return status, await self.reader.readexactly(int(headers.get("content-length", "0")))

    def close(self) -> None:
        self.writer.close()


async def post_once(port: int, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    """One POST on a new connection, closed after the answer (status 0: no answer)."""
    try:
        conn = await HttpConnection.open(port)
    except OSError:
        return 0, b""
    try:
        return await conn.post(path, body, token)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return 0, b""
    finally:
        conn.close()


@dataclass
class Paced:
    """What a paced (open-loop) run saw: answers by status, by gateway, and latencies."""

    statuses: dict[int, int]
    by_port: dict[int, dict[int, int]]
    latencies: list[float]
    seconds: float
    late: int = 0  # sends that went out more than 50 ms after their time

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def failed(self) -> int:
        """Requests not answered 200."""
        return sum(n for status, n in self.statuses.items() if status != 200)


async def paced(
    ports: Sequence[int],
    token: str,
    path: str,
    body: bytes,
    rate: float,
    seconds: float,
    on_tick: Callable[[float], None] | None = None,
) -> Paced:
    """
    Send ``rate`` requests a second for ``seconds``, each at its own time whatever the
    answers before it (open loop), to ``ports`` in turn, on keep-alive connections taken
    from a pool per port (a new one when all are busy). ``on_tick(elapsed)`` is called
    before every send, for a scenario that acts in the middle of a run.
    """
    statuses: dict[int, int] = {}
    by_port: dict[int, dict[int, int]] = {port: {} for port in ports}
    latencies: list[float] = []
    idle: dict[int, list[HttpConnection]] = {port: [] for port in ports}
    tasks: list[asyncio.Task[None]] = []
    late = 0

    async def one(port: int) -> None:
        t0 = time.perf_counter()
        conn = idle[port].pop() if idle[port] else None
        status = 0
        try:
            if conn is None:
                conn = await HttpConnection.open(port)
            status, _ = await conn.post(path, body, token)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if conn is not None:
                conn.close()
            conn = None
        latencies.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
        by_port[port][status] = by_port[port].get(status, 0) + 1
        if conn is not None:
            idle[port].append(conn)

    start = time.perf_counter()
    total = int(rate * seconds)
    for k in range(total):
        due = start + k / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.05:
            late += 1
        if on_tick is not None:
            on_tick(time.perf_counter() - start)
        tasks.append(asyncio.create_task(one(ports[k % len(ports)])))
    await asyncio.gather(*tasks)
    for conns in idle.values():
        for conn in conns:
            conn.close()
    return Paced(statuses, by_port, latencies, time.perf_counter() - start, late)
