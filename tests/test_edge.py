# -*- test-case-name: tests.test_edge -*-
"""
What every request goes through before its RPC: the bearer guard (401 answers), the
request id, the access log, and the drain gate used at shutdown. Synchronous, through
the real resource tree in front of a fake upstream, on a fake clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from opencue_gw.auth.policy import parse_policy
from opencue_gw.errors import GatewayError
from opencue_gw.testing import (
    EPOCH,
    TEST_SECRET,
    FakeUpstream,
    GatewayUnderTest,
    mint_test_token,
)
from opencue_gw.upstream.rpcs import load_rpcs

SECRET = TEST_SECRET
token = mint_test_token

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


def _access(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The access events: one per request, with its method, path, status and duration."""
    keys = ("method", "path", "status", "duration", "request_id")
    return [e for e in events if all(k in e for k in keys)]


@pytest.fixture
def gw() -> GatewayUnderTest:
    """The gateway in front of a fake upstream that answers every call at once."""
    return GatewayUnderTest(FakeUpstream(answer_all=True))


REFUSED = [
    (None, "Authorization header required"),
    ("Bearer", "malformed"),
    ("Basic dXNlcjpwYXNz", "malformed"),
    ("Bearer not-a-jwt", "malformed"),
    ("Bearer " + _alg_none(), "unexpected signing method: none"),
    ("Bearer " + token(secret=b"some-other-secret-of-sufficient-length!!"), "signature"),
    ("Bearer " + token(ttl=-5), "expired"),
    ("Bearer " + jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), "exp"),
]


@pytest.mark.parametrize(("authorization", "says"), REFUSED)
def test_refused_tokens_are_401_json_and_never_reach_cuebot(
    authorization: str | None, says: str, gw: GatewayUnderTest
) -> None:
    """Each failure is 401 code 16, says what was wrong, challenges, and sends no RPC."""
    reply = gw.post(PATH, auth=authorization)
    assert reply.status == 401
    payload = reply.json()
    assert payload["code"] == 16 and payload["details"] == []
    assert says in payload["message"]
    # RFC 6750 §3.1: the error attribute only when a token was presented.
    challenge = "Bearer" if authorization is None else 'Bearer error="invalid_token"'
    assert reply.header("www-authenticate") == challenge
    assert reply.header("content-type") == "application/json"
    assert gw.upstream.calls == []


@pytest.mark.parametrize("path", [PATH, "/no/such/path", "/"])
@pytest.mark.parametrize("method", ["POST", "GET", "OPTIONS"])
def test_nothing_is_reachable_without_a_token(path: str, method: str, gw: GatewayUnderTest) -> None:
    """Unknown paths and other methods are 401 too: routes are not revealed to strangers."""
    reply = gw.request(method, path, auth=None)
    assert reply.status == 401


@pytest.mark.parametrize(
    "authorization",
    [
        lambda: "Bearer " + token(),
        lambda: "bearer " + token(),
        lambda: token(),  # the Go gateway accepted a bare token
        lambda: "Bearer " + jwt.encode({"sub": "x", "exp": EPOCH + 60}, SECRET, algorithm="HS512"),
    ],
)
def test_accepted_forms(authorization: Any, gw: GatewayUnderTest) -> None:
    """Bearer in any case, a bare JWT, and HS512 are all let in."""
    reply = gw.post(PATH, auth=authorization())
    assert reply.status == 200


def test_token_never_logged_nor_echoed(events: list[dict[str, Any]], gw: GatewayUnderTest) -> None:
    """Neither a good nor a bad token appears in any log event or response body."""
    good = token(sub="alice")
    bad = token(secret=b"wrong-secret-wrong-secret-wrong-secret!!")
    replies = [
        gw.post(PATH, auth=f"Bearer {good}"),
        gw.post(PATH, auth=f"Bearer {bad}"),
        gw.post("/nope", auth=f"Bearer {good}"),
    ]
    for secret_text in (good, bad, SECRET.decode()):
        signature = secret_text.rsplit(".", 1)[-1]
        for reply in replies:
            assert signature.encode() not in reply.body
        for event in events:
            text = formatEvent(event) + repr(event)
            assert signature not in text


def test_one_access_event_per_request_with_caller(
    events: list[dict[str, Any]], gw: GatewayUnderTest
) -> None:
    """The access event names method, path, status, duration, the caller and the request id."""
    reply = gw.post(
        PATH, auth=f"Bearer {token(sub='alice', role='viewer')}", headers={"X-Request-ID": "r-1"}
    )
    assert reply.status == 200
    access = _access(events)
    assert len(access) == 1
    event = access[0]
    assert event["method"] == "POST" and event["path"] == PATH and event["status"] == 200
    assert event["sub"] == "alice" and event["role"] == "viewer"
    assert event["request_id"] == "r-1"
    assert event["rpc"] == "show.ShowInterface/GetShows" and event["grpc_code"] == "OK"
    assert event["duration"] >= 0 and event["bytes"] > 0
    assert event["log_level"] == LogLevel.info


def test_upstream_error_code_is_logged(events: list[dict[str, Any]]) -> None:
    """A failed upstream call's access event carries the gRPC code."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/show.ShowInterface/FindShow", {"name": "gone"})
    gw.upstream.last.fail(5, "Incorrect result size: expected 1, actual 0")
    pending.answer()
    access = _access(events)
    assert access[-1]["status"] == 404 and access[-1]["grpc_code"] == "NOT_FOUND"


@pytest.mark.parametrize("offered", ["bad id with spaces", "x" * 200, ""])
def test_unusable_request_ids_are_replaced(offered: str, gw: GatewayUnderTest) -> None:
    """A missing, long or odd X-Request-ID is replaced by a generated one."""
    reply = gw.post(PATH, headers={"X-Request-ID": offered})
    rid = reply.header("x-request-id")
    assert rid and rid != offered and len(rid) == 32


def test_draining_gateway_refuses_new_requests(gw: GatewayUnderTest) -> None:
    """While draining for shutdown a new request is 503 code 14 and never reaches Cuebot."""
    gw.in_flight.drain(5.0, gw.clock)
    reply = gw.post(PATH)
    assert reply.status == 503
    assert reply.json()["code"] == 14
    assert gw.upstream.calls == []


def test_unexpected_failure_is_500_json_logged_once(
    events: list[dict[str, Any]], gw: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug below the routes is a 500 JSON body without traceback, logged as one failure."""
    from test_coalesce import patch_encode

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    patch_encode(monkeypatch, broken)
    reply = gw.post(PATH)
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


def test_rate_limited_answer_is_logged_with_its_caller(events: list[dict[str, Any]]) -> None:
    """A 429 is logged with the caller's sub: identity is recorded as soon as it is known."""
    gw = GatewayUnderTest(
        FakeUpstream(answer_all=True), options={"rate-limit-rps": "1", "rate-limit-burst": "1"}
    )
    alice = f"Bearer {gw.token(sub='alice', role='viewer')}"
    assert gw.post(PATH, auth=alice).status == 200
    assert gw.post(PATH, auth=alice).status == 429
    refused = _access(events)[-1]
    assert refused["status"] == 429
    assert (refused["sub"], refused["role"]) == ("alice", "viewer")


def test_policy_refusal_is_logged_with_its_caller(events: list[dict[str, Any]]) -> None:
    """A 403 from the policy is logged with the caller's sub and role."""
    methods = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
    policy = parse_policy(b'[roles.viewer]\nallow = ["*.Get*"]\n', methods, source="t.toml")
    gw = GatewayUnderTest(FakeUpstream(answer_all=True), policy=policy)
    viewer = f"Bearer {gw.token(sub='vera', role='viewer')}"
    reply = gw.post("/job.JobInterface/Kill", {"job": {"id": "j"}}, auth=viewer)
    assert reply.status == 403
    refused = _access(events)[-1]
    assert refused["status"] == 403
    assert (refused["sub"], refused["role"]) == ("vera", "viewer")
    assert gw.upstream.calls == []


def test_a_long_path_is_cut_in_the_access_line(
    gw: GatewayUnderTest, events: list[dict[str, Any]]
) -> None:
    """A 10 KB path is logged as its first 512 characters and a mark, not in full."""
    reply = gw.post("/" + "x" * 10_000)
    assert reply.status == 404
    (line,) = _access(events)
    assert line["path"] == "/" + "x" * 511 + "..."
