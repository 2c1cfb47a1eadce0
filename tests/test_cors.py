# -*- test-case-name: tests.test_cors -*-
"""
Cross-origin access: preflights answered before authentication for listed origins,
credentials only for listed origins (never for C{*}), and nothing at all when
C{CORS_ORIGINS} is unset.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.config import resolve_config
from opencue_gw.tap import GatewaySite

from gwtest import SECRET, GatewayHarness, Reply
from upstreams import ScriptedCuebot

SHOWS = "/show.ShowInterface/GetShows"
APP = "https://app.example"
OTHER = "https://evil.example"


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def _cors_headers(reply: Reply) -> dict[str, str]:
    return {
        name.decode().lower(): values[0].decode()
        for name, values in reply.headers.getAllRawHeaders()
        if name.lower().startswith(b"access-control-")
    }


@pytest.fixture
def listed(scripted: ScriptedCuebot) -> Iterator[GatewayHarness]:
    """The gateway allowing two listed origins, configured as an operator would."""
    harness = GatewayHarness(
        scripted.address, options={"cors-origins": f" {APP}/ , https://tools.example "}
    )
    yield harness
    harness.close()


@pytest.fixture
def wildcard(scripted: ScriptedCuebot) -> Iterator[GatewayHarness]:
    """The gateway allowing any origin."""
    harness = GatewayHarness(scripted.address, options={"cors-origins": "*"})
    yield harness
    harness.close()


def test_cors_settings_parse_from_environment() -> None:
    """CORS_ORIGINS and CORS_HEADERS are comma lists; unset means CORS is off."""
    env = {"JWT_SECRET": SECRET.decode()}
    off = resolve_config({}, env)
    assert off.cors_origins == () and off.cors_headers == ()
    on = resolve_config(
        {}, {**env, "CORS_ORIGINS": "https://a.example, *,", "CORS_HEADERS": "X-One,X-Two"}
    )
    assert on.cors_origins == ("https://a.example", "*")
    assert on.cors_headers == ("X-One", "X-Two")


@pytest_twisted.ensureDeferred
async def test_preflight_from_listed_origin_is_204_without_token(
    scripted: ScriptedCuebot, listed: GatewayHarness
) -> None:
    """A preflight from a listed origin is 204 with methods, headers and max-age, no token."""
    reply = await listed.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
    assert reply.status == 204
    assert reply.body == b""
    assert _cors_headers(reply) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "Authorization, Content-Type, Grpc-Timeout, X-Request-ID",
        "access-control-max-age": "600",
        "access-control-expose-headers": (
            "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
        ),
    }
    assert reply.header("vary") == "Origin"
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_preflight_from_other_origin_is_403_json(listed: GatewayHarness) -> None:
    """A preflight from an origin not on the list is 403 JSON code 7 with no allow headers."""
    reply = await listed.request("OPTIONS", SHOWS, auth=None, headers=_preflight(OTHER))
    assert reply.status == 403
    payload = reply.json()
    assert set(payload) == {"code", "message", "details"}
    assert payload["code"] == 7
    assert OTHER in payload["message"]
    assert _cors_headers(reply) == {}


@pytest_twisted.ensureDeferred
async def test_request_from_listed_origin_gets_origin_and_credentials(
    listed: GatewayHarness,
) -> None:
    """A real call from a listed origin echoes that origin and allows credentials."""
    reply = await listed.post(SHOWS, headers={"Origin": "https://tools.example"})
    assert reply.status == 200
    cors = _cors_headers(reply)
    assert cors["access-control-allow-origin"] == "https://tools.example"
    assert cors["access-control-allow-credentials"] == "true"
    assert "X-Request-ID" in cors["access-control-expose-headers"]
    assert reply.header("vary") == "Origin"


@pytest_twisted.ensureDeferred
async def test_errors_for_listed_origin_are_readable_by_the_browser(
    listed: GatewayHarness,
) -> None:
    """A 401 to a listed origin still carries the CORS headers, so the page can read it."""
    reply = await listed.post(SHOWS, auth=None, headers={"Origin": APP})
    assert reply.status == 401
    assert _cors_headers(reply)["access-control-allow-origin"] == APP


@pytest_twisted.ensureDeferred
async def test_request_from_other_origin_gets_no_cors_headers(listed: GatewayHarness) -> None:
    """A call from an unlisted origin is served but gets no Access-Control headers."""
    reply = await listed.post(SHOWS, headers={"Origin": OTHER})
    assert reply.status == 200
    assert _cors_headers(reply) == {}
    assert reply.header("vary") == "Origin"


@pytest_twisted.ensureDeferred
async def test_options_without_preflight_headers_still_needs_a_token(
    listed: GatewayHarness,
) -> None:
    """An OPTIONS lacking Access-Control-Request-Method is no preflight: 401 without token."""
    reply = await listed.request("OPTIONS", SHOWS, auth=None, headers={"Origin": APP})
    assert reply.status == 401
    assert reply.json()["code"] == 16


@pytest_twisted.ensureDeferred
async def test_wildcard_allows_any_origin_without_credentials(
    wildcard: GatewayHarness,
) -> None:
    """With *, any origin gets Access-Control-Allow-Origin: * and never credentials."""
    preflight = await wildcard.request("OPTIONS", SHOWS, auth=None, headers=_preflight(OTHER))
    assert preflight.status == 204
    assert _cors_headers(preflight)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in _cors_headers(preflight)
    reply = await wildcard.post(SHOWS, headers={"Origin": OTHER})
    assert reply.status == 200
    cors = _cors_headers(reply)
    assert cors["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors


@pytest_twisted.ensureDeferred
async def test_listed_origin_beside_wildcard_keeps_credentials(scripted: ScriptedCuebot) -> None:
    """With * and a named origin, the named one is echoed with credentials, others get *."""
    harness = GatewayHarness(scripted.address, options={"cors-origins": f"*,{APP}"})
    try:
        named = await harness.post(SHOWS, headers={"Origin": APP})
        other = await harness.post(SHOWS, headers={"Origin": OTHER})
    finally:
        harness.close()
    assert _cors_headers(named)["access-control-allow-origin"] == APP
    assert _cors_headers(named)["access-control-allow-credentials"] == "true"
    assert _cors_headers(other)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in _cors_headers(other)


@pytest_twisted.ensureDeferred
async def test_cors_headers_setting_is_what_preflight_allows(scripted: ScriptedCuebot) -> None:
    """CORS_HEADERS replaces the default list of allowed request headers."""
    harness = GatewayHarness(
        scripted.address, options={"cors-origins": APP, "cors-headers": "Authorization, X-Mine"}
    )
    try:
        reply = await harness.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
    finally:
        harness.close()
    assert reply.status == 204
    assert _cors_headers(reply)["access-control-allow-headers"] == "Authorization, X-Mine"


@pytest_twisted.ensureDeferred
async def test_no_cors_at_all_when_unset(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Without CORS_ORIGINS there are no CORS headers and a preflight is a plain 401."""
    preflight = await scripted_gateway.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
    assert preflight.status == 401
    assert preflight.json()["code"] == 16
    assert _cors_headers(preflight) == {}
    reply = await scripted_gateway.post(SHOWS, headers={"Origin": APP})
    assert reply.status == 200
    assert _cors_headers(reply) == {}
    assert reply.header("vary") is None
    assert scripted.seen[-1].method == SHOWS


@pytest_twisted.ensureDeferred
async def test_preflight_on_the_wire(listed: GatewayHarness) -> None:
    """Over a real socket the 204 preflight has no body and the connection stays usable."""
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
