# -*- test-case-name: tests.test_tracing -*-
"""
Trace context and spans, through the real resource tree in front of a fake upstream.

Propagation (always on): the client's C{traceparent} reaches Cuebot's metadata with the
same trace id and a parent span id of the gateway's; a missing or malformed one starts a
new trace. Export (with an OpenTelemetry tracer): the spans the SDK receives, their
names, links and attributes, read from its in-memory exporter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opencue_proto import show_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from treq.testing import StubTreq
from twisted.logger import formatEvent, globalLogPublisher

from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.ops.tracing import (
    Tracing,
    TracingService,
    parse_traceparent,
    parse_tracestate,
    tracing_from_environ,
)
from opencue_gw.tap import build_root_resource
from opencue_gw.testing import FakeReactor, FakeUpstream, GatewayUnderTest, InlineThreadPool

PATH = "/show.ShowInterface/GetShows"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
VALID = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def _sent(gw: GatewayUnderTest) -> tuple[str, str, str]:
    """The trace id, parent span id and flags of the traceparent the last Cuebot call carried."""
    value = gw.upstream.last.metadata_dict["traceparent"]
    assert isinstance(value, str)
    match = VALID.fullmatch(value)
    assert match is not None, value
    return match.group(1), match.group(2), value[-2:]


@pytest.fixture
def gw() -> GatewayUnderTest:
    """The gateway (propagation only) in front of an upstream that answers at once."""
    return GatewayUnderTest(FakeUpstream(answer_all=True))


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted while the test runs."""
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


# --- propagation -----------------------------------------------------------------------


def test_client_trace_reaches_cuebot_with_the_gateways_span_as_parent(
    gw: GatewayUnderTest,
) -> None:
    """Same trace id and flags as the client's, a new parent span id, and the tracestate."""
    reply = gw.post(PATH, headers={"traceparent": TRACEPARENT, "tracestate": "vendor=a,other=b"})
    assert reply.status == 200
    trace_id, parent, flags = _sent(gw)
    assert trace_id == CLIENT_TRACE and flags == "01"
    assert parent != CLIENT_SPAN and parent != "0" * 16
    assert gw.upstream.last.metadata_dict["tracestate"] == "vendor=a,other=b"


def test_unsampled_client_trace_stays_unsampled(gw: GatewayUnderTest) -> None:
    """The client's sampling decision is passed on as it was made."""
    gw.post(PATH, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
    assert _sent(gw)[0] == CLIENT_TRACE and _sent(gw)[2] == "00"


def test_without_traceparent_each_request_starts_a_new_trace(gw: GatewayUnderTest) -> None:
    """A valid new traceparent, different for every request, and no tracestate."""
    gw.post(PATH)
    first = _sent(gw)
    gw.post(PATH)
    second = _sent(gw)
    assert first[0] != second[0] and first[1] != second[1]
    assert first[2] == "01"
    assert "tracestate" not in gw.upstream.last.metadata_dict


MALFORMED = [
    "garbage",
    f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01",
    f"00-{'0' * 32}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE}-{'0' * 16}-01",
    f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra",
    f"00-{CLIENT_TRACE[:-1]}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-1",
    f"0-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
    "",
]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_traceparent_starts_a_new_trace(header: str, gw: GatewayUnderTest) -> None:
    """The request is still answered; Cuebot gets a new trace and no tracestate."""
    reply = gw.post(PATH, headers={"traceparent": header, "tracestate": "vendor=a"})
    assert reply.status == 200
    trace_id, _, flags = _sent(gw)
    assert trace_id != CLIENT_TRACE and flags == "01"
    assert "tracestate" not in gw.upstream.last.metadata_dict


def test_a_later_version_is_read_as_version_00(gw: GatewayUnderTest) -> None:
    """A future version's extra fields are ignored; the gateway speaks version 00 on."""
    gw.post(PATH, headers={"traceparent": f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-01-more"})
    assert _sent(gw)[0] == CLIENT_TRACE


def test_invalid_tracestate_is_dropped_and_the_trace_kept(gw: GatewayUnderTest) -> None:
    """A tracestate that is not a valid list is not passed on; the traceparent is."""
    gw.post(PATH, headers={"traceparent": TRACEPARENT, "tracestate": "Not Valid"})
    assert _sent(gw)[0] == CLIENT_TRACE
    assert "tracestate" not in gw.upstream.last.metadata_dict


def test_grpc_metadata_traceparent_is_the_trace_context_and_sent_once(
    gw: GatewayUnderTest,
) -> None:
    """grpc-gateway's way to send it (Grpc-Metadata-Traceparent) works, without a duplicate."""
    reply = gw.post(
        PATH,
        headers={"Grpc-Metadata-Traceparent": TRACEPARENT, "Grpc-Metadata-Tracestate": "v=1"},
    )
    assert reply.status == 200
    assert _sent(gw)[0] == CLIENT_TRACE
    keys = [k for k, _ in gw.upstream.last.metadata]
    assert keys.count("traceparent") == 1 and keys.count("tracestate") == 1
    assert gw.upstream.last.metadata_dict["tracestate"] == "v=1"


def test_every_cuebot_call_of_a_request_carries_its_trace(gw: GatewayUnderTest) -> None:
    """A resource route calling Cuebot twice sends the same trace context both times."""
    show = show_pb2.Show(id="s1", name="pipe")
    gw.upstream.auto["/show.ShowInterface/FindShow"] = lambda _: show_pb2.ShowFindShowResponse(
        show=show
    )
    reply = gw.request("GET", "/api/v1/shows/pipe/groups", headers={"traceparent": TRACEPARENT})
    assert reply.status == 200, reply.body
    sent = {c.metadata_dict["traceparent"] for c in gw.upstream.calls}
    assert len(gw.upstream.calls) >= 2 and len(sent) == 1
    assert str(sent.pop()).split("-")[1] == CLIENT_TRACE


def test_reads_in_different_traces_are_still_shared() -> None:
    """The trace context is per request: it does not make two identical reads different."""
    gw = GatewayUnderTest()
    pending = [
        gw.send("POST", PATH, b"{}", headers={"traceparent": f"00-{n:032x}-{CLIENT_SPAN}-01"})
        for n in (1, 2, 3)
    ]
    assert len(gw.upstream.calls) == 1
    gw.upstream.last.succeed()
    assert [p.answer().status for p in pending] == [200, 200, 200]
    # The call carries the trace of the request that started it.
    assert _sent(gw)[0] == f"{1:032x}"


def test_access_event_carries_the_trace_id(
    events: list[dict[str, Any]], gw: GatewayUnderTest
) -> None:
    """Beside the request id, as a field and in the line, also with export off."""
    gw.post(PATH, headers={"traceparent": TRACEPARENT, "X-Request-ID": "r-7"})
    access = [e for e in events if "request_id" in e and "status" in e]
    assert len(access) == 1
    assert access[0]["trace_id"] == CLIENT_TRACE and access[0]["request_id"] == "r-7"
    assert f"id=r-7 trace={CLIENT_TRACE}" in formatEvent(access[0])


def test_parsers_by_the_letter() -> None:
    """The W3C rules the parsers apply, beyond what the request tests show."""
    assert parse_traceparent(TRACEPARENT.encode()) == (CLIENT_TRACE, CLIENT_SPAN, 1)
    assert parse_traceparent(f" {TRACEPARENT}\t".encode()) == (CLIENT_TRACE, CLIENT_SPAN, 1)
    assert parse_traceparent(None) is None
    # Sampled and random are kept; flags W3C has not defined are not passed on.
    assert parse_traceparent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-ff".encode()) == (
        CLIENT_TRACE,
        CLIENT_SPAN,
        3,
    )
    assert parse_tracestate([b"a=1", b"b=2 , c@t=3"]) == "a=1,b=2,c@t=3"
    assert parse_tracestate([b"a=" + b"x" * 600]) is None
    assert parse_tracestate([b",".join(b"k%d=v" % i for i in range(33))]) is None
    assert parse_tracestate([b"a=1,=2"]) is None
    assert parse_tracestate([b"\xff=1"]) is None
    assert parse_tracestate([b" , "]) is None


# --- export ---------------------------------------------------------------------------


class Exported:
    """A gateway whose spans go to the SDK's in-memory exporter, synchronously."""

    def __init__(self, upstream: FakeUpstream | None = None, hold: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(provider.get_tracer("test"))
        self.gw = GatewayUnderTest(
            upstream or FakeUpstream(answer_all=True), pool=InlineThreadPool(hold=hold)
        )
        gw = self.gw
        # The same tree GatewayUnderTest builds, with this tracing.
        gw.metrics = GatewayMetrics()
        gw.resource = build_root_resource(
            gw.config,
            gw.clock,
            gw.shared,
            gw.in_flight,
            gw.pool,
            metrics=gw.metrics,
            probe=gw.probe,
            tracing=self.tracing,
        )
        gw.stub = StubTreq(gw.resource)

    def spans(self) -> dict[str, ReadableSpan]:
        """The finished spans by name (each name once)."""
        found = self.exporter.get_finished_spans()
        by_name = {s.name: s for s in found}
        assert len(by_name) == len(found), [s.name for s in found]
        return by_name


def test_spans_of_one_request_and_their_links() -> None:
    """Server, authentication and Cuebot spans, in the client's trace, parented as sent."""
    exported = Exported()
    reply = exported.gw.post(PATH, headers={"traceparent": TRACEPARENT, "X-Request-ID": "r-9"})
    assert reply.status == 200
    spans = exported.spans()
    assert set(spans) == {"POST " + PATH, "authenticate", "show.ShowInterface/GetShows"}
    server = spans["POST " + PATH]
    auth = spans["authenticate"]
    cuebot = spans["show.ShowInterface/GetShows"]
    assert server.kind == SpanKind.SERVER and cuebot.kind == SpanKind.CLIENT
    assert auth.kind == SpanKind.INTERNAL
    for span in spans.values():
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == CLIENT_TRACE
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.context is not None and cuebot.context is not None
    assert auth.parent is not None and auth.parent.span_id == server.context.span_id
    assert cuebot.parent is not None and cuebot.parent.span_id == server.context.span_id
    # The parent Cuebot is told of is the client span.
    trace_id, parent, _ = _sent(exported.gw)
    assert trace_id == CLIENT_TRACE and parent == f"{cuebot.context.span_id:016x}"
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": PATH,
        "url.scheme": "http",
        "opencue_gw.request_id": "r-9",
        "http.route": PATH,
        "opencue_gw.rpc": PATH[1:],
        "opencue_gw.grpc_code": "OK",
        "http.response.status_code": 200,
    }
    assert dict(cuebot.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "show.ShowInterface",
        "rpc.method": "GetShows",
        "rpc.grpc.status_code": 0,
    }
    assert server.status.status_code == StatusCode.UNSET
    assert cuebot.status.status_code == StatusCode.UNSET


def test_new_trace_when_the_client_sends_none() -> None:
    """The server span is a root, and its trace is the one Cuebot and the log see."""
    exported = Exported()
    exported.gw.post(PATH)
    server = exported.spans()["POST " + PATH]
    assert server.parent is None and server.context is not None
    assert _sent(exported.gw)[0] == f"{server.context.trace_id:032x}"


def test_cuebot_error_marks_the_client_span() -> None:
    """Cuebot's NOT_FOUND is the client span's error; a 404 is not the server span's."""
    exported = Exported(FakeUpstream())
    pending = exported.gw.send("POST", PATH, b"{}")
    exported.gw.upstream.last.fail(5, "no such show")
    assert pending.answer().status == 404
    spans = exported.spans()
    cuebot = spans["show.ShowInterface/GetShows"]
    assert cuebot.status.status_code == StatusCode.ERROR
    assert (cuebot.attributes or {})["rpc.grpc.status_code"] == 5
    assert (cuebot.attributes or {})["error.type"] == "NOT_FOUND"
    server = spans["POST " + PATH]
    assert server.status.status_code == StatusCode.UNSET
    assert (server.attributes or {})["http.response.status_code"] == 404


def test_cuebot_unavailable_is_a_server_error_too() -> None:
    """A 503 answer makes the server span an error as well."""
    exported = Exported(FakeUpstream())
    pending = exported.gw.send("POST", PATH, b"{}")
    exported.gw.upstream.last.fail(14, "down")
    assert pending.answer().status == 503
    server = exported.spans()["POST " + PATH]
    assert server.status.status_code == StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "503"


def test_refused_token_ends_the_authentication_span_in_error() -> None:
    """A bad token: the authentication span failed, and nothing was sent to Cuebot."""
    exported = Exported()
    reply = exported.gw.post(PATH, auth="Bearer not-a-jwt")
    assert reply.status == 401
    spans = exported.spans()
    # Refused before the RPC was known: the span is named by the method only.
    assert set(spans) == {"POST", "authenticate"}
    assert (spans["POST"].attributes or {})["http.response.status_code"] == 401
    assert spans["authenticate"].status.status_code == StatusCode.ERROR
    assert (spans["authenticate"].attributes or {})["error.type"] == "UNAUTHENTICATED"
    assert exported.gw.upstream.calls == []


def test_encoding_on_the_pool_has_a_span_and_inline_encoding_none() -> None:
    """A large answer encoded on the codec pool is a child span; a small one is not."""
    exported = Exported(FakeUpstream(), hold=True)
    gw = exported.gw
    pending = gw.send("POST", PATH, b"{}")
    shows = show_pb2.ShowGetShowsResponse()
    shows.shows.shows.add(name="big")
    gw.upstream.last.succeed(shows, wire_size=10_000_000)
    assert not pending.answered
    assert gw.pool.run_queued() == 1  # type: ignore[attr-defined]
    reply = pending.answer()
    assert reply.status == 200 and reply.json()["shows"]["shows"][0]["name"] == "big"
    spans = exported.spans()
    encode = spans["encode JSON"]
    server = spans["POST " + PATH]
    assert server.context is not None and encode.parent is not None
    assert encode.parent.span_id == server.context.span_id
    assert (encode.attributes or {})["opencue_gw.json_bytes"] == len(reply.body)

    exported.exporter.clear()
    pending = gw.send("POST", PATH, b"{}")
    gw.upstream.last.succeed(shows)
    assert pending.answer().status == 200
    assert "encode JSON" not in exported.spans()


def test_probes_make_no_spans() -> None:
    """Health checks and scrapes come every few seconds; they are not traced."""
    exported = Exported()
    assert exported.gw.request("GET", "/healthz", auth=None).status == 200
    assert exported.exporter.get_finished_spans() == ()


def test_client_gone_is_status_499_on_the_span() -> None:
    """A client that leaves before its answer ends the server span with 499."""
    exported = Exported(FakeUpstream())
    pending = exported.gw.send("POST", PATH, b"{}")
    pending.disconnect()
    spans = exported.spans()
    assert (spans["POST " + PATH].attributes or {})["http.response.status_code"] == 499
    cuebot = spans["show.ShowInterface/GetShows"]
    assert (cuebot.attributes or {})["rpc.grpc.status_code"] == 1


# --- start-up and shutdown ------------------------------------------------------------


def test_no_variable_means_propagation_only() -> None:
    """Without the OpenTelemetry variables nothing is exported."""
    tracing, service = tracing_from_environ({}, FakeReactor())
    assert tracing.tracer is None and service is None
    for env in (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"},
    ):
        assert tracing_from_environ(env, FakeReactor())[1] is None


def test_endpoint_is_logged_without_credentials(events: list[dict[str, Any]]) -> None:
    """A user and password in the endpoint never reach the log line that names it."""
    _, service = tracing_from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://ops:hunter2@collector.example:4318/x?k=v"},
        FakeReactor(),
    )
    assert service is not None
    service.startService()
    service.stopService()
    said = " ".join(formatEvent(e) for e in events)
    assert "https://collector.example:4318/x" in said
    assert "hunter2" not in said and "ops:" not in said and "k=v" not in said


def test_endpoint_starts_an_exporter_that_is_flushed_at_stop(
    monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    """The service sets the tracer at start; at stop the batch is exported and it is unset."""
    exporter = InMemorySpanExporter()
    import opentelemetry.exporter.otlp.proto.http.trace_exporter as otlp

    monkeypatch.setattr(otlp, "OTLPSpanExporter", lambda: exporter)
    tracing, service = tracing_from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.invalid:4318"}, FakeReactor()
    )
    assert isinstance(service, TracingService) and tracing.tracer is None
    service.startService()
    assert tracing.tracer is not None
    tracing.tracer.start_span("one").end()
    # The batch processor holds it until it is flushed.
    assert exporter.get_finished_spans() == ()
    stopped: list[object] = []
    service.stopService().addBoth(stopped.append)  # type: ignore[union-attr]
    assert stopped == [None] and tracing.tracer is None
    [span] = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "opencue-gateway"
    assert any("http://collector.invalid:4318" in formatEvent(e) for e in events)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin is not supported"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "opentelemetry-exporter-otlp-proto-grpc",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "'http/json' is not supported",
        ),
    ],
)
def test_an_exporter_that_cannot_be_made_is_one_line(
    env: dict[str, str], says: str, events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One warning at start-up, naming what is missing; the gateway runs on, propagating."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    tracing, service = tracing_from_environ(env, FakeReactor())
    assert service is None and tracing.tracer is None
    said = [formatEvent(e) for e in events if "Tracing:" in formatEvent(e)]
    assert len(said) == 1 and says in said[0], said


def test_sdk_missing_is_one_line(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint is set but the optional extra is not installed: say how to install it."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    _, service = tracing_from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, FakeReactor()
    )
    assert service is None
    said = [formatEvent(e) for e in events if "Tracing:" in formatEvent(e)]
    assert len(said) == 1 and "opencue-gateway[tracing]" in said[0]


OFF_PROGRAM = """
import json, sys
from opencue_gw.ops.tracing import tracing_from_environ
from opencue_gw.testing import FakeReactor, FakeUpstream, GatewayUnderTest
import opencue_gw.tap
tracing, service = tracing_from_environ({}, FakeReactor())
gw = GatewayUnderTest(FakeUpstream(answer_all=True))
reply = gw.post("/show.ShowInterface/GetShows", headers={"traceparent": sys.argv[1]})
print(json.dumps({
    "status": reply.status,
    "sent": gw.upstream.last.metadata_dict["traceparent"],
    "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
}))
"""


def test_tracing_off_imports_no_opentelemetry_module() -> None:
    """Propagation works without the SDK ever being imported (a fresh interpreter)."""
    out = subprocess.run(
        [sys.executable, "-c", OFF_PROGRAM, TRACEPARENT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["sent"].split("-")[1] == CLIENT_TRACE
    assert result["otel"] == []
