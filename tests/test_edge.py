# -*- test-case-name: tests.test_edge -*-
"""
What every request goes through before its RPC: the bearer guard (401 answers), the
request id, the access log, and the drain gate used at shutdown.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import pytest_twisted
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from opencue_gw.errors import GatewayError

from gwtest import SECRET, GatewayHarness, token
from upstreams import ScriptedCuebot

PATH = "/show.ShowInterface/GetShows"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'x', 'exp': 4102444800})}."


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted while the test runs."""
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


REFUSED = [
    (None, "Authorization header required"),
    ("Bearer", "malformed"),
    ("Basic dXNlcjpwYXNz", "malformed"),
    ("Bearer not-a-jwt", "malformed"),
    ("Bearer " + _alg_none(), "unexpected signing method: none"),
    ("Bearer " + token(secret=b"some-other-secret-of-sufficient-length!!"), "signature"),
    ("Bearer " + token(ttl=-5), "expired"),
    ("Bearer " + jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), "exp"),
    ("Bearer " + "a" * 9000, "too large"),
]


@pytest.mark.parametrize(("authorization", "says"), REFUSED)
@pytest_twisted.ensureDeferred
async def test_refused_tokens_are_401_json_and_never_reach_cuebot(
    authorization: str | None,
    says: str,
    scripted: ScriptedCuebot,
    scripted_gateway: GatewayHarness,
) -> None:
    """Each failure is 401 code 16, says what was wrong, challenges, and sends no RPC."""
    reply = await scripted_gateway.post(PATH, auth=authorization)
    assert reply.status == 401
    payload = reply.json()
    assert payload["code"] == 16 and payload["details"] == []
    assert says in payload["message"]
    assert reply.header("www-authenticate") == 'Bearer error="invalid_token"'
    assert reply.header("content-type") == "application/json"
    assert scripted.seen == []


@pytest.mark.parametrize("path", [PATH, "/no/such/path", "/"])
@pytest.mark.parametrize("method", ["POST", "GET", "OPTIONS"])
@pytest_twisted.ensureDeferred
async def test_nothing_is_reachable_without_a_token(
    path: str, method: str, scripted_gateway: GatewayHarness
) -> None:
    """Unknown paths and other methods are 401 too: routes are not revealed to strangers."""
    reply = await scripted_gateway.request(method, path, auth=None)
    assert reply.status == 401


@pytest.mark.parametrize(
    "authorization",
    [
        lambda: "Bearer " + token(),
        lambda: "bearer " + token(),
        lambda: token(),  # the Go gateway accepted a bare token
        lambda: (
            "Bearer " + jwt.encode({"sub": "x", "exp": time.time() + 60}, SECRET, algorithm="HS512")
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_accepted_forms(authorization: Any, scripted_gateway: GatewayHarness) -> None:
    """Bearer in any case, a bare JWT, and HS512 are all let in."""
    reply = await scripted_gateway.post(PATH, auth=authorization())
    assert reply.status == 200


@pytest_twisted.ensureDeferred
async def test_token_never_logged_nor_echoed(
    events: list[dict[str, Any]], scripted_gateway: GatewayHarness
) -> None:
    """Neither a good nor a bad token appears in any log event or response body."""
    good = token(sub="alice")
    bad = token(secret=b"wrong-secret-wrong-secret-wrong-secret!!")
    replies = [
        await scripted_gateway.post(PATH, auth=f"Bearer {good}"),
        await scripted_gateway.post(PATH, auth=f"Bearer {bad}"),
        await scripted_gateway.post("/nope", auth=f"Bearer {good}"),
    ]
    for secret_text in (good, bad, SECRET.decode()):
        signature = secret_text.rsplit(".", 1)[-1]
        for reply in replies:
            assert signature.encode() not in reply.body
        for event in events:
            text = formatEvent(event) + repr(event)
            assert signature not in text


@pytest_twisted.ensureDeferred
async def test_one_access_event_per_request_with_caller(
    events: list[dict[str, Any]], scripted_gateway: GatewayHarness
) -> None:
    """The access event names method, path, status, duration, the caller and the request id."""
    reply = await scripted_gateway.post(
        PATH, auth=f"Bearer {token(sub='alice', role='viewer')}", headers={"X-Request-ID": "r-1"}
    )
    assert reply.status == 200
    access = [e for e in events if e.get("log_namespace") == "opencue_gw.edge.Edge"]
    assert len(access) == 1
    event = access[0]
    assert event["method"] == "POST" and event["path"] == PATH and event["status"] == 200
    assert event["sub"] == "alice" and event["role"] == "viewer"
    assert event["request_id"] == "r-1"
    assert event["rpc"] == "show.ShowInterface/GetShows" and event["grpc_code"] == "OK"
    assert event["duration"] >= 0 and event["bytes"] > 0
    assert event["log_level"] == LogLevel.info


@pytest_twisted.ensureDeferred
async def test_upstream_error_code_is_logged(
    events: list[dict[str, Any]], scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A failed upstream call's access event carries the gRPC code."""
    import grpc

    from upstreams import Script

    scripted.scripts["/show.ShowInterface/FindShow"] = Script(
        code=grpc.StatusCode.NOT_FOUND, details="Incorrect result size: expected 1, actual 0"
    )
    await scripted_gateway.post("/show.ShowInterface/FindShow", {"name": "gone"})
    access = [e for e in events if e.get("log_namespace") == "opencue_gw.edge.Edge"]
    assert access[-1]["status"] == 404 and access[-1]["grpc_code"] == "NOT_FOUND"


@pytest.mark.parametrize("offered", ["bad id with spaces", "x" * 200, ""])
@pytest_twisted.ensureDeferred
async def test_unusable_request_ids_are_replaced(
    offered: str, scripted_gateway: GatewayHarness
) -> None:
    """A missing, long or odd X-Request-ID is replaced by a generated one."""
    reply = await scripted_gateway.post(PATH, headers={"X-Request-ID": offered})
    rid = reply.header("x-request-id")
    assert rid and rid != offered and len(rid) == 32


@pytest_twisted.ensureDeferred
async def test_draining_gateway_refuses_new_requests(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """While draining for shutdown a new request is 503 code 14 and never reaches Cuebot."""
    from twisted.internet import reactor

    scripted_gateway.in_flight.drain(5.0, reactor)
    reply = await scripted_gateway.post(PATH)
    assert reply.status == 503
    assert reply.json()["code"] == 14
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_unexpected_failure_is_500_json_logged_once(
    events: list[dict[str, Any]], scripted: ScriptedCuebot
) -> None:
    """A bug below the routes is a 500 JSON body without traceback, logged as one failure."""
    from opencue_gw import api

    harness = GatewayHarness(scripted.address)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    original = api.encode
    api.encode = broken  # type: ignore[assignment]
    try:
        reply = await harness.post(PATH)
    finally:
        api.encode = original  # type: ignore[assignment]
        harness.close()
    assert reply.status == 500
    assert reply.json() == {"code": 13, "message": "internal gateway error", "details": []}
    assert b"Traceback" not in reply.body
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    failures[0]["log_failure"].trap(RuntimeError)
    assert failures[0]["request_id"] == reply.header("x-request-id")


def test_gateway_error_str_names_code() -> None:
    """GatewayError's text starts with the symbolic code, for logs."""
    assert str(GatewayError(5, "gone")) == "NOT_FOUND: gone"
