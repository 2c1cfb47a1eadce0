# -*- test-case-name: tests.test_limits -*-
"""
Edge limits over real sockets: the request body limit enforced while the body arrives,
the HTTP idle timeout, and load shedding beyond C{max_in_flight}.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.threads import deferToThread

from opencue_gw.config import resolve_config
from opencue_gw.http.cors import CorsPolicy
from opencue_gw.http.wire import DEFAULT_MAX_BODY_BYTES, HeadLimits, body_limited_request
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.tap import GatewaySite, build_service

from gwtest import SECRET, GatewayHarness, Reply, token
from upstreams import Script, ScriptedCuebot

SHOWS = "/show.ShowInterface/GetShows"
LIMIT = 1024


@dataclass
class Served:
    """A gateway listening on a loopback port."""

    port: int
    harness: GatewayHarness


@pytest.fixture
def served(scripted_gateway: GatewayHarness) -> Iterator[Served]:
    """The tree on a real port with a 1 KiB body limit and a 1 s HTTP timeout."""
    site = GatewaySite(scripted_gateway.resource, timeout=1.0)
    site.requestFactory = body_limited_request(LIMIT)
    site.head_timeout = 1.0
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield Served(port.getHost().port, scripted_gateway)
    port.stopListening()


def _head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {SHOWS} HTTP/1.1", "Host: gw.test", f"Authorization: Bearer {token()}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_to_eof(conn: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _read_answer(conn: socket.socket) -> bytes:
    """One complete answer with a Content-Length, read from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed early: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest


def _assert_413(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 413 Payload Too Large", answer
    assert b"Content-Type: application/json" in lines
    assert b"Connection: close" in lines
    payload = json.loads(body)
    assert set(payload) == {"code", "message", "details"}
    assert payload["code"] == 8
    assert str(LIMIT) in payload["message"]


def _padded_json(size: int) -> bytes:
    return b"{}" + b" " * (size - 2)


@pytest_twisted.ensureDeferred
async def test_declared_oversized_body_is_refused_before_it_is_sent(
    served: Served, scripted: ScriptedCuebot
) -> None:
    """A Content-Length over the limit gets 413 JSON at once, before any body byte is sent."""

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
            conn.sendall(_head(length=100 * LIMIT))
            return _read_to_eof(conn)

    _assert_413(await deferToThread(talk))
    assert scripted.seen == []
    assert served.harness.in_flight.count == 0


@pytest_twisted.ensureDeferred
async def test_slow_chunked_body_is_refused_once_it_passes_the_limit(
    served: Served, scripted: ScriptedCuebot
) -> None:
    """A chunked body sent in small pieces with pauses gets 413 JSON soon after the limit."""

    def talk() -> tuple[int, bytes]:
        sent = 0
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
            conn.sendall(_head(chunked=True))
            for _ in range(40):
                conn.sendall(b"64\r\n" + b" " * 100 + b"\r\n")
                sent += 100
                time.sleep(0.02)
                if select.select([conn], [], [], 0)[0]:
                    return sent, _read_to_eof(conn)
            return sent, b""

    sent, answer = await deferToThread(talk)
    _assert_413(answer)
    # Refused within a few pieces of passing the limit, not after the whole body.
    assert LIMIT < sent <= LIMIT + 500
    assert scripted.seen == []
    assert served.harness.in_flight.count == 0


@pytest_twisted.ensureDeferred
async def test_bodies_at_the_limit_pass(served: Served, scripted: ScriptedCuebot) -> None:
    """A body of exactly the limit, declared or chunked, is served normally."""
    body = _padded_json(LIMIT)
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 300]), body[i : i + 300])
        for i in range(0, len(body), 300)
    )

    def talk() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
            conn.sendall(_head(length=len(body)) + body)
            first = _read_answer(conn)
            conn.sendall(_head(chunked=True) + chunked + b"0\r\n\r\n")
            second = _read_answer(conn)
            return [first, second]

    answers = await deferToThread(talk)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert answer.endswith(b'{"shows":null}')
    assert [s.method for s in scripted.seen] == [SHOWS, SHOWS]


@pytest_twisted.ensureDeferred
async def test_one_byte_over_the_limit_is_refused(served: Served) -> None:
    """Declaring limit + 1 bytes is already too much."""

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
            conn.sendall(_head(length=LIMIT + 1) + _padded_json(LIMIT + 1))
            return _read_to_eof(conn)

    _assert_413(await deferToThread(talk))


@pytest_twisted.ensureDeferred
async def test_half_a_request_line_is_disconnected_after_the_timeout(served: Served) -> None:
    """A client that stops halfway through the request line is dropped after ~1 s."""

    def talk() -> tuple[float, bytes]:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
            started = time.monotonic()
            conn.sendall(b"POST /show.Show")
            data = _read_to_eof(conn)
            return time.monotonic() - started, data

    elapsed, data = await deferToThread(talk)
    assert 0.8 <= elapsed < 5.0
    assert b"200 OK" not in data


@pytest.mark.parametrize(
    "trickle",
    [b"POST /show.ShowInterface/GetShows HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: gw\r\nX-Pad: "],
)
@pytest_twisted.ensureDeferred
async def test_trickled_request_head_is_dropped_at_the_deadline(
    trickle: bytes, served: Served
) -> None:
    """A client sending its request line or headers a byte every 0.2 s is dropped after ~1 s."""

    def talk() -> float:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
            started = time.monotonic()
            payload = trickle + b"x" * 200
            for index in range(len(payload)):
                try:
                    conn.sendall(payload[index : index + 1])
                except OSError:
                    return time.monotonic() - started
                ready, _, _ = select.select([conn], [], [], 0.2)
                try:
                    if ready and conn.recv(4096) == b"":
                        return time.monotonic() - started
                except OSError:  # aborted: a reset rather than a FIN
                    return time.monotonic() - started
            return time.monotonic() - started

    elapsed = await deferToThread(talk)
    assert 0.8 <= elapsed < 3.0


@pytest_twisted.ensureDeferred
async def test_idle_kept_alive_connection_is_closed_after_the_timeout(served: Served) -> None:
    """After an answer, a kept-alive connection that stays idle is closed after ~1 s."""

    def talk() -> tuple[bytes, float, bytes]:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
            conn.sendall(_head(length=2) + b"{}")
            answer = _read_answer(conn)
            started = time.monotonic()
            rest = _read_to_eof(conn)
            return answer, time.monotonic() - started, rest

    answer, elapsed, rest = await deferToThread(talk)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.8 <= elapsed < 5.0
    assert rest == b""


def test_build_service_applies_body_limit_and_timeout() -> None:
    """MAX_BODY_BYTES and HTTP_TIMEOUT reach the Site that build_service listens with."""
    config = resolve_config(
        {"port": ["tcp:0:interface=127.0.0.1"]},
        {
            "JWT_SECRET": SECRET.decode(),
            "MAX_BODY_BYTES": "4096",
            "HTTP_TIMEOUT": "7s",
            "CORS_ORIGINS": "https://cueweb.example",
        },
    )
    service = build_service(config, reactor)
    site: Any = service.connections.wrappedFactory  # type: ignore[attr-defined]
    assert isinstance(site, GatewaySite)
    assert site.timeOut == 7.0
    assert site.requestFactory.max_body == 4096
    # The refusal is answered with the edge's own CORS policy and counted in its metrics.
    edge = site.resource
    assert site.requestFactory.cors is edge.cors is not None
    assert site.requestFactory.metrics is edge.metrics is not None
    # Requests count in flight from the end of their head, in the drain's own counter.
    assert site.requestFactory.in_flight is service.in_flight  # type: ignore[attr-defined]
    assert site.head_timeout == 7.0
    assert site.requestFactory.head_limits == HeadLimits(
        config.max_request_line, config.max_header_line, config.max_headers, config.max_head_bytes
    )


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("https://cueweb.example", True), ("https://elsewhere.example", False), (None, False)],
)
@pytest_twisted.ensureDeferred
async def test_refusal_carries_cors_headers_and_is_counted(
    scripted_gateway: GatewayHarness, origin: str | None, allowed: bool
) -> None:
    """
    A browser can read the 413 (it carries the CORS answer headers for a listed origin),
    and /metrics counts it, though the request never reaches the edge.
    """
    metrics = GatewayMetrics()
    site = GatewaySite(scripted_gateway.resource)
    cors = CorsPolicy(["https://cueweb.example"])
    site.requestFactory = body_limited_request(LIMIT, cors=cors, metrics=metrics)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    head = _head(length=100 * LIMIT)
    if origin is not None:
        head = head.replace(b"\r\n\r\n", f"\r\nOrigin: {origin}\r\n\r\n".encode(), 1)

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as conn:
            conn.sendall(head)
            return _read_to_eof(conn)

    try:
        answer = await deferToThread(talk)
    finally:
        await port.stopListening()
    _assert_413(answer)
    lines = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"vary: Origin" in lines
    if allowed:
        assert b"access-control-allow-origin: https://cueweb.example" in lines
        assert b"access-control-allow-credentials: true" in lines
    else:
        assert not any(line.startswith(b"access-control-") for line in lines)
    exposition = metrics.exposition().decode()
    assert 'opencue_gateway_requests_total{rpc="",status="413"} 1.0' in exposition


def test_body_limit_and_timeout_defaults() -> None:
    """Unset, the body limit is 32 MiB and the HTTP timeout 60 s."""
    config = resolve_config({}, {"JWT_SECRET": SECRET.decode()})
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
    assert config.http_timeout == 60.0


# --- load shedding ---


@pytest_twisted.ensureDeferred
async def test_flood_beyond_max_in_flight_is_shed(scripted: ScriptedCuebot) -> None:
    """With 3 slow calls in flight, 3 more are shed 503 with Retry-After; health stays 200."""
    scripted.scripts[SHOWS] = Script(delay=0.6)
    harness = GatewayHarness(scripted.address, max_in_flight=3)
    try:
        flood = gatherResults([ensureDeferred(harness.post(SHOWS)) for _ in range(6)])
        # While the three admitted calls wait on Cuebot, health checks still answer.
        health = await harness.request("GET", "/healthz", auth=None)
        replies: list[Reply] = await flood
        after = await harness.post(SHOWS)
        metrics = (await harness.request("GET", "/metrics", auth=None)).body.decode()
    finally:
        harness.close()
    assert health.status == 200
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 200, 200, 503, 503, 503]
    for shed in (r for r in replies if r.status == 503):
        assert shed.json() == {
            "code": 14,
            "message": "the gateway is overloaded; retry shortly",
            "details": [],
        }
        assert shed.header("retry-after") == "1"
    assert after.status == 200
    assert "opencue_gateway_shed_requests_total 3.0" in metrics
