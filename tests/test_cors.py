# -*- test-case-name: tests.test_cors -*-
"""
Cross-origin access: preflights answered before authentication for listed origins,
credentials only for listed origins (never for C{*}), and nothing at all when
C{CORS_ORIGINS} is unset. Synchronous, through the real resource tree in front of a
fake upstream; the preflight over a real socket is in L{test_cors_wire}.
"""

from __future__ import annotations

import pytest

from opencue_gw.config import resolve_config
from opencue_gw.testing import TEST_SECRET, FakeUpstream, GatewayUnderTest, HTTPReply

SECRET = TEST_SECRET

SHOWS = "/show.ShowInterface/GetShows"
APP = "https://app.example"
OTHER = "https://evil.example"


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def _cors_headers(reply: HTTPReply) -> dict[str, str]:
    return {
        name.decode().lower(): values[0].decode()
        for name, values in reply.headers.getAllRawHeaders()
        if name.lower().startswith(b"access-control-")
    }


def _gateway(**options: str) -> GatewayUnderTest:
    return GatewayUnderTest(FakeUpstream(answer_all=True), options=options)


@pytest.fixture
def listed() -> GatewayUnderTest:
    """The gateway allowing two listed origins, configured as an operator would."""
    return _gateway(**{"cors-origins": f" {APP}/ , https://tools.example "})


@pytest.fixture
def wildcard() -> GatewayUnderTest:
    """The gateway allowing any origin."""
    return _gateway(**{"cors-origins": "*"})


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


def test_preflight_from_listed_origin_is_204_without_token(listed: GatewayUnderTest) -> None:
    """A preflight from a listed origin is 204 with methods, headers and max-age, no token."""
    reply = listed.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
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
    assert listed.upstream.calls == []


def test_preflight_from_other_origin_is_403_json(listed: GatewayUnderTest) -> None:
    """A preflight from an origin not on the list is 403 JSON code 7 with no allow headers."""
    reply = listed.request("OPTIONS", SHOWS, auth=None, headers=_preflight(OTHER))
    assert reply.status == 403
    payload = reply.json()
    assert set(payload) == {"code", "message", "details"}
    assert payload["code"] == 7
    assert OTHER in payload["message"]
    assert _cors_headers(reply) == {}


def test_request_from_listed_origin_gets_origin_and_credentials(
    listed: GatewayUnderTest,
) -> None:
    """A real call from a listed origin echoes that origin and allows credentials."""
    reply = listed.post(SHOWS, headers={"Origin": "https://tools.example"})
    assert reply.status == 200
    cors = _cors_headers(reply)
    assert cors["access-control-allow-origin"] == "https://tools.example"
    assert cors["access-control-allow-credentials"] == "true"
    assert "X-Request-ID" in cors["access-control-expose-headers"]
    assert reply.header("vary") == "Origin"


def test_errors_for_listed_origin_are_readable_by_the_browser(
    listed: GatewayUnderTest,
) -> None:
    """A 401 to a listed origin still carries the CORS headers, so the page can read it."""
    reply = listed.post(SHOWS, auth=None, headers={"Origin": APP})
    assert reply.status == 401
    assert _cors_headers(reply)["access-control-allow-origin"] == APP


def test_request_from_other_origin_gets_no_cors_headers(listed: GatewayUnderTest) -> None:
    """A call from an unlisted origin is served but gets no Access-Control headers."""
    reply = listed.post(SHOWS, headers={"Origin": OTHER})
    assert reply.status == 200
    assert _cors_headers(reply) == {}
    assert reply.header("vary") == "Origin"


def test_options_without_preflight_headers_still_needs_a_token(
    listed: GatewayUnderTest,
) -> None:
    """An OPTIONS lacking Access-Control-Request-Method is no preflight: 401 without token."""
    reply = listed.request("OPTIONS", SHOWS, auth=None, headers={"Origin": APP})
    assert reply.status == 401
    assert reply.json()["code"] == 16


def test_wildcard_allows_any_origin_without_credentials(
    wildcard: GatewayUnderTest,
) -> None:
    """With *, any origin gets Access-Control-Allow-Origin: * and never credentials."""
    preflight = wildcard.request("OPTIONS", SHOWS, auth=None, headers=_preflight(OTHER))
    assert preflight.status == 204
    assert _cors_headers(preflight)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in _cors_headers(preflight)
    reply = wildcard.post(SHOWS, headers={"Origin": OTHER})
    assert reply.status == 200
    cors = _cors_headers(reply)
    assert cors["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors


def test_listed_origin_beside_wildcard_keeps_credentials() -> None:
    """With * and a named origin, the named one is echoed with credentials, others get *."""
    gateway = _gateway(**{"cors-origins": f"*,{APP}"})
    named = gateway.post(SHOWS, headers={"Origin": APP})
    other = gateway.post(SHOWS, headers={"Origin": OTHER})
    assert _cors_headers(named)["access-control-allow-origin"] == APP
    assert _cors_headers(named)["access-control-allow-credentials"] == "true"
    assert _cors_headers(other)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in _cors_headers(other)


def test_cors_headers_setting_is_what_preflight_allows() -> None:
    """CORS_HEADERS replaces the default list of allowed request headers."""
    gateway = _gateway(**{"cors-origins": APP, "cors-headers": "Authorization, X-Mine"})
    reply = gateway.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
    assert reply.status == 204
    assert _cors_headers(reply)["access-control-allow-headers"] == "Authorization, X-Mine"


def test_no_cors_at_all_when_unset() -> None:
    """Without CORS_ORIGINS there are no CORS headers and a preflight is a plain 401."""
    gateway = _gateway()
    preflight = gateway.request("OPTIONS", SHOWS, auth=None, headers=_preflight(APP))
    assert preflight.status == 401
    assert preflight.json()["code"] == 16
    assert _cors_headers(preflight) == {}
    reply = gateway.post(SHOWS, headers={"Origin": APP})
    assert reply.status == 200
    assert _cors_headers(reply) == {}
    assert reply.header("vary") is None
    assert gateway.upstream.last.path == SHOWS
