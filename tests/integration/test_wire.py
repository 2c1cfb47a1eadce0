# -*- test-case-name: tests.test_wire -*-
"""
Behaviour that lives on the HTTP connection itself, tested over a real loopback socket:
what the bytes look like, a client hanging up mid-call, and keep-alive during a drain.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.tap import GatewaySite

from gwtest import GatewayHarness, token
from upstreams import Script, ScriptedCuebot


@pytest.fixture
def listening(scripted_gateway: GatewayHarness) -> Iterator[int]:
    """The gateway's resource tree served on a real loopback port."""
    port = reactor.listenTCP(0, GatewaySite(scripted_gateway.resource), interface="127.0.0.1")
    yield port.getHost().port
    port.stopListening()


def _request(path: str, body: bytes = b"{}", auth: bool = True) -> bytes:
    headers = [f"POST {path} HTTP/1.1", "Host: gw.test", f"Content-Length: {len(body)}"]
    if auth:
        headers.append(f"Authorization: Bearer {token()}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send requests one after another on one connection; return each raw answer."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for raw in requests:
            conn.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            answers.append(head + b"\r\n\r\n" + rest)
    return answers


@pytest_twisted.ensureDeferred
async def test_answer_bytes_on_the_wire(listening: int) -> None:
    """A success is HTTP/1.1 200 with JSON content type, a length and a compact body."""
    (answer,) = await deferToThread(_exchange, listening, _request("/show.ShowInterface/GetShows"))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/json" in lines
    assert b"Content-Length: 14" in lines
    assert not any(line.lower().startswith(b"content-encoding") for line in lines)
    assert body == b'{"shows":null}'


@pytest_twisted.ensureDeferred
async def test_error_answers_carry_a_length_not_chunks(listening: int) -> None:
    """
    Errors answered by a route (here malformed JSON, 400) have a Content-Length like the
    Go gateway's, not chunked transfer encoding.
    """
    (answer,) = await deferToThread(
        _exchange, listening, _request("/show.ShowInterface/GetShows", b"{nope")
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert f"Content-Length: {len(body)}".encode() in lines
    assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)
    assert json.loads(body)["code"] == 3


@pytest_twisted.ensureDeferred
async def test_form_content_type_is_not_parsed_as_a_form(listening: int) -> None:
    """
    A JSON body labelled multipart/form-data is read as JSON, as grpc-gateway does for a
    content type it has no marshaler for. Twisted's form parser, left on, would answer a
    bare non-JSON 400 and hang up; every route takes JSON, so it is off.
    """
    raw = _request("/show.ShowInterface/GetShows").replace(
        b"\r\n\r\n", b"\r\nContent-Type: multipart/form-data\r\n\r\n", 1
    )
    (answer,) = await deferToThread(_exchange, listening, raw)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert json.loads(payload) == {"shows": None}


@pytest_twisted.ensureDeferred
async def test_keep_alive_request_during_drain_gets_503_and_close(
    listening: int, scripted_gateway: GatewayHarness
) -> None:
    """On a kept-alive connection, a request that arrives while draining is refused and closed."""

    def talk() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", listening), timeout=10) as conn:
            first = _exchange_on(conn, _request("/show.ShowInterface/GetShows"))
            reactor.callFromThread(scripted_gateway.in_flight.drain, 5.0, reactor)
            import time

            time.sleep(0.2)
            second = _exchange_on(conn, _request("/show.ShowInterface/GetShows"))
            closed = conn.recv(1) == b""
            return [first, second, b"closed" if closed else b"open"]

    first, second, state = await deferToThread(talk)
    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 503")
    assert b"Connection: close" in second
    assert b'"code":14' in second
    assert state == b"closed"


def _exchange_on(conn: socket.socket, raw: bytes) -> bytes:
    conn.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest


@pytest_twisted.ensureDeferred
async def test_client_disconnect_cancels_the_rpc(
    listening: int, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A client that hangs up while Cuebot is still working cancels the gRPC call."""
    scripted.scripts["/job.JobInterface/GetJobs"] = Script(delay=10.0)

    def hang_up() -> bool:
        with socket.create_connection(("127.0.0.1", listening), timeout=10) as conn:
            conn.sendall(_request("/job.JobInterface/GetJobs", b'{"r":{}}'))
            for _ in range(200):
                if scripted.seen:
                    break
                import time

                time.sleep(0.01)
        return scripted.seen[-1].cancelled.wait(5.0)

    assert await deferToThread(hang_up)
    assert scripted_gateway.in_flight.count == 0
