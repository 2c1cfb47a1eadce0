# -*- test-case-name: tests.test_fuzz -*-
"""
Property tests: whatever body, path or method a client sends, the gateway answers with
grpc-gateway's error shape and never with a 500 or a traceback.

Hypothesis drives the real resource tree through StubTreq in front of the scripted
Cuebot; examples are derandomized so CI sees the same cases every run.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import pytest_twisted
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

from opencue_gw.http.wire import body_limited_request
from opencue_gw.tap import GatewaySite
from opencue_gw.upstream.rpcs import load_rpcs

from gwtest import GatewayHarness, Reply, token
from upstreams import ScriptedCuebot

RPC_PATHS = [
    "/job.JobInterface/GetFrames",
    "/job.JobInterface/GetJobs",
    "/show.ShowInterface/FindShow",
    "/job.LayerInterface/CreateDependencyOnJob",
]
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUS_KEYS = {"code", "message", "details"}


@pytest.fixture(scope="module")
def harness() -> Iterator[GatewayHarness]:
    """One gateway tree in front of one scripted Cuebot for the whole module."""
    server = ScriptedCuebot()
    gateway = GatewayHarness(server.address)
    yield gateway
    gateway.close()
    server.stop()


def _send(
    harness: GatewayHarness,
    method: str,
    path: str,
    body: bytes | None,
    auth: bool = True,
) -> Reply:
    """From a worker thread: one request through the tree on the reactor thread."""
    reply: Reply = blockingCallFromThread(
        reactor,
        lambda: ensureDeferred(
            harness.request(method, path, body, auth="default" if auth else None)
        ),
    )
    return reply


def _check(reply: Reply, method: str) -> None:
    """The invariants every answer keeps."""
    assert reply.status != 500, reply.body
    # The gateway never redirects (a redirect would also need a Location).
    assert not 300 <= reply.status < 400, reply.body
    assert reply.status < 600
    assert b"Traceback" not in reply.body
    assert _came_through_edge(reply)
    if 200 <= reply.status < 300 or method == "HEAD":
        return
    assert reply.header("content-type") == "application/json", reply.body
    payload = json.loads(reply.body)
    assert set(payload) == STATUS_KEYS, payload
    assert isinstance(payload["code"], int) and isinstance(payload["message"], str)
    assert payload["details"] == []


def _came_through_edge(reply: Reply) -> bool:
    """Each answer carries a request id, so it came through the edge."""
    return bool(reply.header("x-request-id"))


# --- strategies ---

_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
)
JSON_VALUES = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _scalar_for(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Plausible and implausible values for one non-message field."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        typed: st.SearchStrategy[Any] = st.sampled_from(names) | st.integers(-5, 2**33)
    elif field.type == FieldDescriptor.TYPE_BOOL:
        typed = st.booleans() | st.sampled_from(["true", "1", "yes"])
    elif field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        typed = st.floats() | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0x10"])
    elif field.type == FieldDescriptor.TYPE_STRING:
        typed = st.text(max_size=40)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        typed = st.text(alphabet="ABCDabcd0123+/=-_", max_size=16)
    else:
        typed = st.integers(-(2**65), 2**65) | st.integers(-(2**65), 2**65).map(str)
    return typed | JSON_VALUES


@cache
def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the message's real field names (JSON and proto spellings), random types."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            value: st.SearchStrategy[Any] = (
                st.dictionaries(st.text(max_size=8), _scalar_for(sub.fields_by_name["value"]))
                | JSON_VALUES
            )
        elif sub is not None:
            nested = _message(sub, depth + 1) if depth < 3 else st.just({})
            value = nested | JSON_VALUES
        else:
            value = _scalar_for(field)
        if field.is_repeated:
            value = st.lists(value, max_size=3) | value
        optional[field.json_name] = value
        if field.name != field.json_name:
            optional[field.name] = value
    extra = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=2)
    return st.builds(
        lambda known, unknown: {**unknown, **known},
        st.fixed_dictionaries({}, optional=optional),
        extra,
    )


def _message_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    rpcs = load_rpcs()
    return st.sampled_from(RPC_PATHS).flatmap(
        lambda path: st.tuples(
            st.just(path),
            _message(rpcs[path].request_class.DESCRIPTOR).map(
                lambda body: json.dumps(body).encode()
            ),
        )
    )


# --- bodies ---


@FUZZ
@given(path=st.sampled_from(RPC_PATHS), body=st.binary(max_size=300))
def _random_bytes_as_body(harness: GatewayHarness, path: str, body: bytes) -> None:
    """Arbitrary bytes as a request body are a JSON error or a success, never a 500."""
    _check(_send(harness, "POST", path, body), "POST")


@FUZZ
@given(path=st.sampled_from(RPC_PATHS), value=JSON_VALUES)
def _random_json_values_as_body(harness: GatewayHarness, path: str, value: Any) -> None:
    """Any JSON value (NaN and huge integers included) as a body never causes a 500."""
    _check(_send(harness, "POST", path, json.dumps(value).encode()), "POST")


@settings(FUZZ, max_examples=150)
@given(case=_message_bodies())
def _request_shaped_objects_with_random_types(
    harness: GatewayHarness, case: tuple[str, bytes]
) -> None:
    """Objects using the real field names, nested, with random value types, never cause a 500."""
    path, body = case
    _check(_send(harness, "POST", path, body), "POST")


# --- paths and methods ---

_SEGMENT = (
    st.text(max_size=12)
    | st.sampled_from(
        ["..", ".", "%2e%2e", "%2F", "%00", "%ff%fe", "%", "%zz", "%25", "~", ";x=1", "?a=b", "#f"]
    )
    | st.binary(min_size=1, max_size=6).map(lambda b: "".join(f"%{c:02x}" for c in b))
    | st.text(alphabet="abcXYZ.", min_size=300, max_size=2000)
    | st.sampled_from(
        ["show.ShowInterface", "GetShows", "job.JobInterface", "docs", "healthz", "metrics"]
    )
)
METHODS = st.sampled_from(
    ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT"]
) | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10)


def _quote_unsafe(text: str) -> str:
    """Percent-encode what cannot appear raw in a URL (the wire form of that text)."""
    return "".join(
        c
        if (c.isascii() and c.isprintable() and c not in ' "<>\\^`{|}')
        else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in text
    )


@settings(FUZZ, max_examples=200)
@given(
    method=METHODS,
    segments=st.lists(_SEGMENT, min_size=0, max_size=5),
    trailing=st.booleans(),
    auth=st.booleans(),
)
def _random_paths_and_methods(
    harness: GatewayHarness, method: str, segments: list[str], trailing: bool, auth: bool
) -> None:
    """Odd paths (dot segments, bad escapes, long or non-UTF-8 segments) under any method."""
    path = "/" + "/".join(_quote_unsafe(s) for s in segments) + ("/" if trailing else "")
    body = None if method in ("GET", "HEAD") else b"{}"
    _check(_send(harness, method, path, body, auth=auth), method)


# Hypothesis runs in a worker thread (the test itself runs on the reactor, which must keep
# turning to serve the requests); each example blocks on the reactor thread.


@pytest_twisted.ensureDeferred
async def test_random_bytes_as_body(harness: GatewayHarness) -> None:
    """Arbitrary bytes as a request body are a JSON error or a success, never a 500."""
    await deferToThread(_random_bytes_as_body, harness)


@pytest_twisted.ensureDeferred
async def test_random_json_values_as_body(harness: GatewayHarness) -> None:
    """Any JSON value (NaN and huge integers included) as a body never causes a 500."""
    await deferToThread(_random_json_values_as_body, harness)


@pytest_twisted.ensureDeferred
async def test_request_shaped_objects_with_random_types(harness: GatewayHarness) -> None:
    """Objects using the real field names, nested, with random value types, never cause a 500."""
    await deferToThread(_request_shaped_objects_with_random_types, harness)


@pytest_twisted.ensureDeferred
async def test_random_paths_and_methods(harness: GatewayHarness) -> None:
    """Odd paths (dot segments, bad escapes, long or non-UTF-8 segments) under any method."""
    await deferToThread(_random_paths_and_methods, harness)


# --- raw request lines over a real socket ---

RAW_TARGETS = [
    b"/\xff\xfe",
    b"/show.ShowInterface/GetShows\xc3\x28",
    b"/show.ShowInterface/GetShows/../GetShows",
    b"/show.ShowInterface/%2e%2e/GetShows",
    b"/healthz\x80",
    b"/%",
    b"/" + b"a" * 8000,
    b"//show.ShowInterface//GetShows",
    b"/show.ShowInterface/GetShows?\xff=\xfe",
    b"*",
    b"http://other.example/show.ShowInterface/GetShows",
]


def _dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


@pytest_twisted.ensureDeferred
async def test_raw_request_targets_on_the_wire(harness: GatewayHarness) -> None:
    """Raw non-UTF-8 and odd request targets: Twisted's 400 or the gateway's JSON, never 500."""
    site = GatewaySite(harness.resource, timeout=5)
    site.requestFactory = body_limited_request(4096)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")

    def talk(target: bytes, method: bytes, host: bytes = b"gw") -> bytes:
        raw = (
            method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n"
            b"Authorization: Bearer " + token().encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
        )
        data = b""
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as conn:
            conn.sendall(raw)
            while chunk := conn.recv(65536):
                data += chunk
        return data

    try:
        for target, host in [
            *((t, b"gw") for t in RAW_TARGETS),
            (b"/show.ShowInterface/GetShows", b"\xff\xfe"),
        ]:
            for method in (b"POST", b"GET", b"OPTIONS"):
                answer = await deferToThread(talk, target, method, host)
                head, _, body = answer.partition(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                assert status != 500 and b"Traceback" not in answer, (target, method, answer)
                assert not 300 <= status < 400, (target, method, answer)
                if b"transfer-encoding: chunked" in head.lower():
                    body = _dechunk(body)
                if status >= 300 and body:
                    payload = json.loads(body)
                    assert set(payload) == STATUS_KEYS, (target, method, answer)
    finally:
        await port.stopListening()
