# -*- test-case-name: tests.test_wire_hardening -*-
"""
The connection as an attacker or a careless client meets it (issue 11 §2-5, §7), over a
real loopback socket: head limits, framing per RFC 9112, Host, C{Expect: 100-continue},
and the C{Server} header. Every refusal is JSON, closes the connection, and a request
pipelined behind it is never answered.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.logger import LogEvent, globalLogPublisher

from opencue_gw.http.wire import GatewaySite, HeadLimits, build_site, valid_host

from gwtest import SECRET, GatewayHarness, token
from upstreams import Script, ScriptedCuebot

SHOWS = "/show.ShowInterface/GetShows"
LIMIT = 1024
ORIGIN = "https://cueweb.example"


@dataclass
class Wire:
    """A gateway on a loopback port, and what it logged."""

    port: int
    harness: GatewayHarness
    site: GatewaySite
    events: list[LogEvent]

    def access(self) -> list[LogEvent]:
        """The access events logged so far."""
        return [
            e
            for e in self.events
            if str(e.get("log_namespace", "")).startswith("opencue_gw.http.access")
        ]


@pytest.fixture
def wire(scripted: ScriptedCuebot) -> Iterator[Wire]:
    """The whole gateway (built by L{build_site}) with a 1 KiB body limit and CORS on."""
    harness = GatewayHarness(scripted.address, options={"cors-origins": ORIGIN})
    config = replace(harness.config, max_body_bytes=LIMIT, http_timeout=5.0)
    site = build_site(harness.resource, config, reactor, harness.in_flight)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield Wire(port.getHost().port, harness, site, events)
    globalLogPublisher.removeObserver(events.append)
    port.stopListening()
    harness.close()


def _head(
    *extra: str, method: str = "POST", path: str = SHOWS, host: str | None = "gw.test"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.append(f"Authorization: Bearer {token()}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _good() -> bytes:
    return _head("Content-Length: 2") + b"{}"


def _talk(port: int, raw: bytes, wait: float = 3.0) -> tuple[bytes, float]:
    """Send C{raw}; read until the gateway closes. Returns what came and how long it took."""
    started = time.monotonic()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        try:
            conn.sendall(raw)
        except OSError:
            pass
        while True:
            try:
                chunk = conn.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - started


def _answers(data: bytes) -> list[bytes]:
    """Each final status line in C{data} (a 100 Continue is not an answer)."""
    return [
        line
        for line in data.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ") and not line.startswith(b"HTTP/1.1 100 ")
    ]


def _refusal(data: bytes, status: int) -> tuple[dict[bytes, bytes], Any]:
    """The one answer in C{data}: its status, headers and JSON body, checked."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status), data[:300]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert len(headers[b"x-request-id"]) == 32
    assert b"server" not in headers
    payload = json.loads(body[: int(headers[b"content-length"])])
    assert set(payload) == {"code", "message", "details"} and payload["details"] == []
    return headers, payload


def _refused_alone(wire: Wire, raw: bytes, status: int) -> tuple[dict[bytes, bytes], Any]:
    """
    C{raw} followed by a pipelined valid request: only the refusal is answered, the
    connection is closed, and nothing reached Cuebot.
    """
    data, elapsed = _talk(wire.port, raw + _good())
    assert len(_answers(data)) == 1, data[:500]
    assert elapsed < 2.9, "the gateway did not close the connection"
    return _refusal(data, status)


async def _still_serves(wire: Wire) -> None:
    data, _ = await deferToThread(
        _talk, wire.port, _head("Content-Length: 2", "Connection: close") + b"{}"
    )
    assert data.startswith(b"HTTP/1.1 200 "), data[:300]


# --- head limits ---


@pytest_twisted.ensureDeferred
async def test_request_line_over_the_limit_is_414_json(
    wire: Wire, scripted: ScriptedCuebot
) -> None:
    """
    A request line over 16 KiB is 414 JSON (code 3), counted and logged; its Origin was
    never read, so only C{Vary} of the CORS headers is sent.
    """
    path = "/" + "a" * 17000
    raw = _head(f"Origin: {ORIGIN}", "Content-Length: 2", path=path) + b"{}"
    headers, payload = await deferToThread(_refused_alone, wire, raw, 414)
    assert payload["code"] == 3 and "16384" in payload["message"]
    assert headers[b"vary"] == b"Origin"
    assert b"access-control-allow-origin" not in headers
    assert scripted.seen == []
    (event,) = wire.access()
    assert event["status"] == 414 and event["method"] == "POST"
    assert event["request_id"] == headers[b"x-request-id"].decode()
    assert event["sub"] is None and event["grpc_code"] == "INVALID_ARGUMENT"
    # The log line does not repeat a 17 KB path.
    assert event["path"].startswith("/aaa") and len(event["path"]) <= 515
    metrics = wire.harness.metrics.exposition().decode()
    assert 'opencue_gateway_requests_total{rpc="",status="414"} 1.0' in metrics
    await _still_serves(wire)


@pytest_twisted.ensureDeferred
async def test_unfinished_request_line_over_the_limit_is_414_at_once(wire: Wire) -> None:
    """A request line still without its CRLF is refused as soon as it passes the limit."""

    def talk() -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", wire.port), timeout=3) as conn:
            started = time.monotonic()
            conn.sendall(b"GET /" + b"a" * 20000)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            return data, time.monotonic() - started

    data, elapsed = await deferToThread(talk)
    _refusal(data, 414)
    assert elapsed < 1.0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([f"Origin: {ORIGIN}", "X-Big: " + "b" * 70000], "longer than 65536"),
        ([f"Origin: {ORIGIN}"] + [f"X-H{i}: v" for i in range(101)], "more than 100"),
        ([f"Origin: {ORIGIN}"] + [f"X-H{i}: " + "v" * 1100 for i in range(60)], "larger than"),
    ],
    ids=["header-line", "header-count", "whole-head"],
)
@pytest_twisted.ensureDeferred
async def test_headers_over_a_limit_are_431_json_with_cors(
    wire: Wire, scripted: ScriptedCuebot, extra: list[str], words: str
) -> None:
    """A header line, the number of headers or the whole head over its limit: 431 JSON."""
    raw = _head(*extra, "Content-Length: 2") + b"{}"
    headers, payload = await deferToThread(_refused_alone, wire, raw, 431)
    assert payload["code"] == 3 and words in payload["message"]
    # The Origin header came before the limit was crossed: a browser can read the answer.
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert scripted.seen == []
    assert [e["status"] for e in wire.access()] == [431]
    await _still_serves(wire)


@pytest_twisted.ensureDeferred
async def test_sixteen_kib_signed_token_is_accepted(wire: Wire, scripted: ScriptedCuebot) -> None:
    """A validly signed token of 16 KiB (group claims of single sign-on) is served."""
    now = int(time.time())
    claims = {"sub": "sso-user", "role": "admin", "iat": now, "exp": now + 600}
    claims["groups"] = [f"group-{i:05d}" for i in range(850)]
    big = jwt.encode(claims, SECRET, algorithm="HS256")
    assert 15_000 < len(big) <= 16_384, len(big)
    raw = (
        f"POST {SHOWS} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {big}\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    ).encode()
    data, _ = await deferToThread(_talk, wire.port, raw)
    assert data.startswith(b"HTTP/1.1 200 "), data[:400]
    assert [s.method for s in scripted.seen] == [SHOWS]


# --- framing (RFC 9112 §6) ---


@pytest.mark.parametrize(
    ("extra", "status", "body"),
    [
        (
            ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            400,
            b"2\r\n{}\r\n0\r\n\r\n",
        ),
        (["Transfer-Encoding: chunked, chunked"], 400, b"2\r\n{}\r\n0\r\n\r\n"),
        (["Transfer-Encoding: chunked, gzip"], 400, b"2\r\n{}\r\n0\r\n\r\n"),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: identity"], 400, b""),
        (["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], 501, b"0\r\n\r\n"),
        (["Transfer-Encoding: x-custom, chunked"], 501, b"0\r\n\r\n"),
        (["Transfer-Encoding: identity"], 400, b""),
        (["Content-Length: 2", "Transfer-Encoding: chunked"], 400, b"0\r\n\r\n"),
        (["Transfer-Encoding: chunked", "Content-Length: 2"], 400, b"0\r\n\r\n"),
        (["Content-Length: 2", "Content-Length: 2"], 400, b"{}"),
        (["Content-Length: 2, 2"], 400, b"{}"),
        (["Content-Length: +2"], 400, b"{}"),
        (["Content-Length: -1"], 400, b""),
        (["Content-Length: 0x2"], 400, b"{}"),
        (["Content-Length: " + "9" * 5000], 413, b""),
        (["Transfer-Encoding : chunked"], 400, b"0\r\n\r\n"),
        (["Transfer-Encoding: chunked", " , identity"], 400, b"0\r\n\r\n"),
        (["Transfer-Encoding: chunked"], 400, b"zz\r\n{}\r\n0\r\n\r\n"),
        (["Transfer-Encoding: chunked"], 400, b"2\r\n{}XX0\r\n\r\n"),
    ],
    ids=[
        "te-chunked-twice-lines",
        "te-chunked-twice-list",
        "te-chunked-not-final",
        "te-identity-after-chunked",
        "te-gzip-then-chunked-lines",
        "te-unknown-coding",
        "te-identity-alone",
        "cl-then-te",
        "te-then-cl",
        "cl-duplicate",
        "cl-list",
        "cl-plus",
        "cl-negative",
        "cl-hex",
        "cl-huge",
        "te-space-before-colon",
        "te-folded",
        "chunk-size-not-hex",
        "chunk-without-crlf",
    ],
)
@pytest_twisted.ensureDeferred
async def test_framing_errors_are_refused_and_nothing_is_smuggled(
    wire: Wire, scripted: ScriptedCuebot, extra: list[str], status: int, body: bytes
) -> None:
    """Each framing error gets its JSON answer and the pipelined request behind it none."""
    raw = _head(*extra) + body
    _, payload = await deferToThread(_refused_alone, wire, raw, status)
    assert payload["code"] == {400: 3, 413: 8, 501: 12}[status]
    assert scripted.seen == []
    assert [e["status"] for e in wire.access()] == [status]
    assert wire.harness.in_flight.count == 0
    await _still_serves(wire)


@pytest_twisted.ensureDeferred
async def test_transfer_encoding_in_http10_is_refused(wire: Wire) -> None:
    """HTTP/1.0 has no transfer codings (RFC 9112 §6.1): 400, and the caller's id echoed."""
    raw = (
        f"POST {SHOWS} HTTP/1.0\r\nHost: gw.test\r\nX-Request-ID: caller-42\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ).encode()
    data, _ = await deferToThread(_talk, wire.port, raw + _good())
    assert len(_answers(data)) == 1
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nX-Request-ID: caller-42\r\n" in head
    assert json.loads(body)["code"] == 3
    assert wire.access()[0]["request_id"] == "caller-42"


@pytest.mark.parametrize(
    "size", [b"fffffffffffffffffffffffff", b"401", b"ffffffff"], ids=["huge", "limit+1", "4GiB"]
)
@pytest_twisted.ensureDeferred
async def test_chunk_size_over_the_limit_is_refused_at_once(
    wire: Wire, scripted: ScriptedCuebot, size: bytes
) -> None:
    """A chunk size that would cross the body limit is 413 before its data is sent."""

    def talk() -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", wire.port), timeout=3) as conn:
            conn.sendall(_head("Transfer-Encoding: chunked") + size + b"\r\n" + b" " * 10)
            started = time.monotonic()
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            return data, time.monotonic() - started

    data, elapsed = await deferToThread(talk)
    _, payload = _refusal(data, 413)
    assert payload["code"] == 8 and str(LIMIT) in payload["message"]
    assert elapsed < 1.0
    assert scripted.seen == []


@pytest.mark.parametrize(
    "raw",
    [
        b"POST " + SHOWS.encode() + b" HTTP/1.1\nHost: gw.test\nContent-Length: 2\n\n{}",
        b"POST " + SHOWS.encode() + b" HTTP/1.1\r\nHost: gw.test\nContent-Length: 2\r\n\r\n{}",
        b"POST " + SHOWS.encode() + b" HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\n{}",
    ],
    ids=["all-bare-lf", "one-bare-lf", "bare-lf-ending"],
)
@pytest_twisted.ensureDeferred
async def test_bare_lf_heads_are_answered_400_not_held(wire: Wire, raw: bytes) -> None:
    """A head with bare-LF line endings is answered 400 at once, never left to time out."""
    data, elapsed = await deferToThread(_talk, wire.port, raw + _good())
    assert len(_answers(data)) == 1
    _, payload = _refusal(data, 400)
    assert "CRLF" in payload["message"]
    assert elapsed < 1.0
    await _still_serves(wire)


@pytest_twisted.ensureDeferred
async def test_folded_header_is_refused(wire: Wire, scripted: ScriptedCuebot) -> None:
    """Obsolete line folding (RFC 9112 §5.2) is refused rather than guessed at."""
    raw = _head("X-Folded: a", "  b", "Content-Length: 2") + b"{}"
    await deferToThread(_refused_alone, wire, raw, 400)
    assert scripted.seen == []


# --- Host (RFC 9112 §3.2) ---


@pytest.mark.parametrize(
    "raw",
    [
        _head("Content-Length: 2", host=None) + b"{}",
        _head("Host: other.test", "Content-Length: 2") + b"{}",
        _head("Content-Length: 2", host="bad host") + b"{}",
        _head("Content-Length: 2", host="gw.test:99999") + b"{}",
        _head("Content-Length: 2", host="gw.test/x") + b"{}",
        _head("Content-Length: 2", host="") + b"{}",
    ],
    ids=["missing", "two", "space", "port-out-of-range", "slash", "empty"],
)
@pytest_twisted.ensureDeferred
async def test_bad_host_is_400_json(wire: Wire, scripted: ScriptedCuebot, raw: bytes) -> None:
    """An HTTP/1.1 request without one valid Host is answered 400 JSON and closed."""
    _, payload = await deferToThread(_refused_alone, wire, raw, 400)
    assert payload["code"] == 3 and "Host" in payload["message"]
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_http10_without_host_is_served(wire: Wire) -> None:
    """HTTP/1.0 has no Host requirement."""
    raw = (
        f"POST {SHOWS} HTTP/1.0\r\nAuthorization: Bearer {token()}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    data, _ = await deferToThread(_talk, wire.port, raw)
    assert data.startswith(b"HTTP/1.0 200 ") or data.startswith(b"HTTP/1.1 200 "), data[:300]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gw.test", "gw.test"),
        (b"gw.test:8448", "gw.test:8448"),
        (b"127.0.0.1", "127.0.0.1"),
        (b"[::1]:8448", "[::1]:8448"),
        (b"render_farm-01.example.com", "render_farm-01.example.com"),
        (b"", None),
        (b"gw.test:", None),
        (b"gw.test:65536", None),
        (b"gw..test", None),
        (b"-gw.test", None),
        (b"gw.test\r\nx: y", None),
        (b"user@gw.test", None),
        (b"gw.test, evil.test", None),
        (b"[::1", None),
        (b"g" * 300, None),
    ],
)
def test_valid_host(value: bytes, expected: str | None) -> None:
    """Names, addresses and ports are valid; anything a header could smuggle is not."""
    assert valid_host(value) == expected


# --- Expect: 100-continue (RFC 9110 §10.1.1) ---


def _read_until_close(conn: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


@pytest_twisted.ensureDeferred
async def test_expect_with_oversized_body_is_413_and_no_continue(wire: Wire) -> None:
    """A declared body over the limit is refused before it is sent, without a 100."""

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", wire.port), timeout=3) as conn:
            conn.sendall(_head("Expect: 100-continue", f"Content-Length: {LIMIT * 100}"))
            return _read_until_close(conn)

    data = await deferToThread(talk)
    assert b"100 Continue" not in data
    _refusal(data, 413)


@pytest_twisted.ensureDeferred
async def test_expect_without_a_token_is_401_before_the_body(
    wire: Wire, scripted: ScriptedCuebot
) -> None:
    """No Authorization at all: 401 JSON before the body is sent, no 100, then close."""
    raw = (
        f"POST {SHOWS} HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\n"
        "Content-Length: 500\r\n\r\n"
    ).encode()

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", wire.port), timeout=3) as conn:
            conn.sendall(raw)
            return _read_until_close(conn)

    data = await deferToThread(talk)
    assert b"100 Continue" not in data
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), data[:300]
    assert json.loads(body)["code"] == 16
    assert scripted.seen == []
    assert [e["status"] for e in wire.access()] == [401]


@pytest_twisted.ensureDeferred
async def test_expect_with_a_token_gets_100_then_the_answer(wire: Wire) -> None:
    """An acceptable request gets 100 Continue, then its answer once the body is sent."""

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", wire.port), timeout=3) as conn:
            conn.sendall(_head("Expect: 100-continue", "Content-Length: 2", "Connection: close"))
            first = conn.recv(65536)
            assert first == b"HTTP/1.1 100 Continue\r\n\r\n", first
            conn.sendall(b"{}")
            return _read_until_close(conn)

    data = await deferToThread(talk)
    assert data.startswith(b"HTTP/1.1 200 "), data[:300]


# --- answers that give away nothing (§7) ---


@pytest_twisted.ensureDeferred
async def test_no_server_header_on_any_answer(wire: Wire) -> None:
    """Success, a guard refusal and a raw refusal: none names the server software."""
    answers = [
        _head("Content-Length: 2", "Connection: close") + b"{}",
        b"GET /healthz HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        b"POST /show.ShowInterface/GetShows HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}",
        _head("Content-Length: 99999"),
    ]
    for raw in answers:
        data, _ = await deferToThread(_talk, wire.port, raw)
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 "), data[:200]
        assert b"\r\nserver:" not in head, head
        assert b"twisted" not in head


def test_head_limits_default_fit_a_large_token() -> None:
    """The defaults: a 16 KiB request line, 64 KiB header lines and head, 100 headers."""
    limits = HeadLimits()
    assert (limits.max_request_line, limits.max_header_line) == (16384, 65536)
    assert (limits.max_headers, limits.max_head_bytes) == (100, 65536)


# --- shutdown (issue 12 §2) on the wire ---


@pytest_twisted.ensureDeferred
async def test_grace_end_answers_uploading_and_waiting_requests_503(
    wire: Wire, scripted: ScriptedCuebot
) -> None:
    """
    At the end of the grace period, a request still uploading its body and one waiting
    on a slow Cuebot both get 503 JSON with Connection: close, and are logged as 503.
    """
    scripted.scripts[SHOWS] = Script(delay=3.0)
    uploading = socket.create_connection(("127.0.0.1", wire.port), timeout=3)
    waiting = socket.create_connection(("127.0.0.1", wire.port), timeout=3)
    try:
        uploading.sendall(_head("Content-Length: 100") + b"{")
        waiting.sendall(_good())

        def both_in_flight() -> bool:
            for _ in range(200):
                if wire.harness.in_flight.count == 2 and scripted.seen:
                    return True
                time.sleep(0.01)
            return False

        assert await deferToThread(both_in_flight)
        drained = await wire.harness.in_flight.drain(0.2, reactor)
        assert drained is False
        answers = await deferToThread(
            lambda: [_read_until_close(uploading), _read_until_close(waiting)]
        )
    finally:
        uploading.close()
        waiting.close()
    for data in answers:
        _, payload = _refusal(data, 503)
        assert payload == {"code": 14, "message": "the gateway is shutting down", "details": []}
    assert sorted(e["status"] for e in wire.access()) == [503, 503]


# --- anything at all (issue 11 Tests) ---

_TOKEN_BYTES = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"\n" not in b and b"\r" not in b
)
_METHODS = st.one_of(
    st.sampled_from([b"GET", b"POST", b"OPTIONS", b"PUT", b"G T", b""]), _TOKEN_BYTES
)
_TARGETS = st.one_of(
    st.sampled_from([SHOWS.encode(), b"/", b"*", b"/healthz", b"http://gw/x", b"/%ff%00"]),
    st.binary(max_size=80),
)
_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"", b"http/1.1"])
_NAMES = st.one_of(
    st.sampled_from([b"Host", b"Origin", b"Expect", b"Connection", b"X-Request-ID", b"Cookie"]),
    st.binary(max_size=20),
)
_HEADERS = st.lists(st.tuples(_NAMES, st.binary(max_size=60)), max_size=8)


def _loose_request(
    method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    lines = [method + b" " + target + b" " + version]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _answered_or_closed_within_a_second(port: int, raw: bytes) -> bool:
    """Whether the gateway answers (a status line) or closes within a second."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        try:
            conn.sendall(raw)
            data = conn.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return data == b"" or data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 "))


@pytest_twisted.ensureDeferred
async def test_arbitrary_request_heads_get_an_answer_or_a_close(wire: Wire) -> None:
    """
    Random request lines and headers (no body framing headers, which wait for a body by
    design): each connection is answered or closed within a second, nothing is logged
    as a failure, and the gateway still serves a normal call after each.
    """
    unanswered: list[bytes] = []
    tried: list[bytes] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_METHODS, _TARGETS, _VERSIONS, _HEADERS)
    def probe(
        method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        headers = [
            (n, v)
            for n, v in headers
            if b"content-length" not in n.lower() and b"transfer-encoding" not in n.lower()
        ]
        raw = _loose_request(method, target, version, headers)
        tried.append(raw)
        if not _answered_or_closed_within_a_second(wire.port, raw):
            unanswered.append(raw)
        data, _ = _talk(wire.port, _head("Content-Length: 2", "Connection: close") + b"{}")
        assert data.startswith(b"HTTP/1.1 200 "), (raw, data[:300])

    await deferToThread(probe)
    assert len(tried) >= 50
    assert unanswered == []
    failures = [e for e in wire.events if "log_failure" in e or e.get("isError")]
    assert failures == []
