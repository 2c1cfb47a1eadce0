# -*- test-case-name: tests.test_cors_wire -*-
"""
CORS over a real socket: what StubTreq cannot show is the framing of a 204 preflight on a
kept-alive connection. The handler behaviour is tested synchronously in L{test_cors}.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.tap import GatewaySite
from opencue_gw.testing import FakeUpstream, GatewayUnderTest

SHOWS = "/show.ShowInterface/GetShows"
APP = "https://app.example"


@pytest_twisted.ensureDeferred
async def test_preflight_on_the_wire() -> None:
    """Over a real socket the 204 preflight has no body and the connection stays usable."""
    listed = GatewayUnderTest(FakeUpstream(answer_all=True), options={"cors-origins": APP})
    port = reactor.listenTCP(0, GatewaySite(listed.resource), interface="127.0.0.1")
    raw = (
        f"OPTIONS {SHOWS} HTTP/1.1\r\nHost: gw.test\r\nOrigin: {APP}\r\n"
        "Access-Control-Request-Method: POST\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    ).encode()

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as conn:
            conn.sendall(raw)
            data = b""
            while b'{"status":"ok"}' not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    try:
        data = await deferToThread(talk)
    finally:
        await port.stopListening()
    first, _, second = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 ")
    assert f"Access-Control-Allow-Origin: {APP}".encode() in first
    assert second.startswith(b"HTTP/1.1 200 ")
    assert second.endswith(b'{"status":"ok"}')
