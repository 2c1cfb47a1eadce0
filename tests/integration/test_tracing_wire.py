# -*- test-case-name: tests.test_tracing_wire -*-
"""
Trace context across real wires: into a real gRPC server's metadata, and, from a
twistd-run gateway, out to an OTLP/HTTP collector stand-in on loopback.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_process import Gateway
from treq.testing import StubTreq
from twisted.internet import reactor

from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.ops.tracing import Tracing
from opencue_gw.tap import build_root_resource

from gwtest import SECRET, GatewayHarness, token
from upstreams import ScriptedCuebot

PATH = "/show.ShowInterface/GetShows"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
VALID = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def _seen_traceparent(scripted: ScriptedCuebot) -> tuple[str, str]:
    """The trace id and parent span id of the last GetShows the server received."""
    # Not the readiness probe's calls, which belong to no request.
    [*_, seen] = [s for s in scripted.seen if s.method == PATH]
    match = VALID.fullmatch(seen.metadata["traceparent"])
    assert match is not None, seen.metadata
    return match.group(1), match.group(2)


@pytest_twisted.ensureDeferred
async def test_traceparent_reaches_cuebot_over_grpc(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """The client's trace id arrives in gRPC metadata with the gateway's span as parent."""
    reply = await scripted_gateway.post(
        PATH, headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}
    )
    assert reply.status == 200
    trace_id, parent = _seen_traceparent(scripted)
    assert trace_id == CLIENT_TRACE and parent != CLIENT_SPAN
    assert scripted.seen[-1].method == PATH
    assert scripted.seen[-1].metadata["tracestate"] == "congo=t61rcWkgMzE"
    reply = await scripted_gateway.post(PATH, headers={"traceparent": "00-bad"})
    assert reply.status == 200
    assert _seen_traceparent(scripted)[0] != CLIENT_TRACE


@pytest_twisted.ensureDeferred
async def test_exported_client_span_is_the_parent_cuebot_sees(scripted: ScriptedCuebot) -> None:
    """With spans exported, the span id in Cuebot's metadata is the Cuebot call's span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    harness = GatewayHarness(scripted.address)
    try:
        harness.resource = build_root_resource(
            harness.config,
            reactor,
            harness.upstream,
            harness.in_flight,
            None,
            metrics=GatewayMetrics(),
            probe=harness.probe,
            tracing=Tracing(provider.get_tracer("test")),
        )
        harness.stub = StubTreq(harness.resource)
        reply = await harness.post(PATH, headers={"traceparent": TRACEPARENT})
        assert reply.status == 200
    finally:
        harness.close()
    [client] = [s for s in exporter.get_finished_spans() if s.name == PATH[1:]]
    assert client.context is not None
    assert _seen_traceparent(scripted) == (CLIENT_TRACE, f"{client.context.span_id:016x}")


class Collector:
    """An OTLP/HTTP trace receiver on loopback: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            received.extend((resource.resource, s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector stand-in for one test."""
    receiver = Collector()
    yield receiver
    receiver.close()


def test_daemon_exports_spans_and_flushes_them_at_stop(
    scripted: ScriptedCuebot, collector: Collector, tmp_path: Path
) -> None:
    """
    twistd with OTEL_EXPORTER_OTLP_ENDPOINT: after SIGTERM the collector holds the
    request's spans (the batch was flushed at stop), in the client's trace, and the span
    id Cuebot was told of is the exported Cuebot call's.
    """
    gateway = Gateway(
        ["--cuebot", scripted.address],
        {
            "JWT_SECRET": SECRET.decode(),
            "LOG_LEVEL": "info",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_SERVICE_NAME": "gw-under-test",
            # Longer than the test: only the flush at stop can have sent the spans.
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        },
        tmp_path,
    )
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{gateway.port}{PATH}",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {token()}", "traceparent": TRACEPARENT},
        )
        with urllib.request.urlopen(request, timeout=15) as answer:
            assert answer.status == 200
        assert collector.spans == []
    finally:
        status = gateway.stop()
    assert status == 0
    deadline = time.monotonic() + 5
    while len(collector.spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    spans = {span.name: (resource, span) for resource, span in collector.spans}
    assert set(spans) == {"POST " + PATH, "authenticate", PATH[1:]}
    resource, server = spans["POST " + PATH]
    names = {a.key: a.value.string_value for a in resource.attributes}
    assert names["service.name"] == "gw-under-test"
    assert all(s.trace_id.hex() == CLIENT_TRACE for _, s in collector.spans)
    assert server.parent_span_id.hex() == CLIENT_SPAN
    client = spans[PATH[1:]][1]
    assert client.parent_span_id == server.span_id
    assert _seen_traceparent(scripted) == (CLIENT_TRACE, client.span_id.hex())
    log = gateway.log.read_text()
    assert f"POST {PATH} 200" in log and f"trace={CLIENT_TRACE}" in log
    assert f"Exporting traces: otlp http/protobuf to {collector.url}" in log
    assert "Traceback" not in log
