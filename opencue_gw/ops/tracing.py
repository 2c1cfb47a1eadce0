# -*- test-case-name: tests.test_tracing,tests.integration.test_tracing_wire -*-
"""
W3C trace context for every request, and OpenTelemetry spans when an exporter is set.

Two levels, chosen at start-up from the OpenTelemetry standard variables:

 - B{Propagation} (always): the client's C{traceparent} and C{tracestate} headers, or a
   new trace when there are none or they are malformed, become the request's
   L{TraceContext}; every Cuebot call made for the request carries it as gRPC metadata,
   with a span id of the gateway's own as the parent, and the access event carries the
   trace id. This costs a header lookup, a precompiled regex and, for a new trace, a
   C{random.getrandbits}: no OpenTelemetry module is imported and no span object made.
 - B{Export} (with C{OTEL_EXPORTER_OTLP_ENDPOINT}, C{OTEL_EXPORTER_OTLP_TRACES_ENDPOINT}
   or C{OTEL_TRACES_EXPORTER} set): spans are made with the OpenTelemetry SDK and sent
   by a C{BatchSpanProcessor}: the HTTP request (server), authentication, each Cuebot call
   (client; its span id is the parent Cuebot sees) and JSON encoding that waits for the
   codec pool. The SDK is an optional extra (C{opencue-gateway[tracing]}) and is only
   imported here, in the functions that run when export is on.

The hooks the request path calls (L{Tracing.start}, L{Tracing.finish}, L{traced},
L{traced_cuebot_call}, L{traced_encoding}) return at once when the request has no span.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from opencue_gw.errors import Code, error_for
from opencue_gw.logs import GATEWAY_OBSERVER

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from opencue_gw.http.context import RequestContext
    from opencue_gw.upstream.rpcs import Rpc

__all__ = [
    "TRACE_KEYS",
    "TraceContext",
    "Tracing",
    "TracingService",
    "parse_traceparent",
    "traced",
    "traced_cuebot_call",
    "traced_encoding",
    "tracing_from_environ",
]

_T = TypeVar("_T")

# version-traceid-parentid-flags (W3C Trace Context, section 3.2); a later version may
# add fields after a dash, which this gateway (speaking version 00) ignores.
_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
)
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_KNOWN_FLAGS = 0x03
_SAMPLED = 0x01
# A new trace id and span id drawn at once; a bit set in each keeps both valid (not zero).
_NOT_ZERO = (1 << 64) | 1
# One tracestate list-member (section 3.3.1): a key (simple or multi-tenant) and a value.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
# The spec asks to pass on at least 512 characters and at most 32 members.
_TRACESTATE_MAX_CHARS = 512
_TRACESTATE_MAX_MEMBERS = 32
# The gRPC metadata keys the trace context travels in. A client may also send them as
# Grpc-Metadata-Traceparent (grpc-gateway's way of passing metadata on): they are then
# the request's trace context, used when the standard header is absent.
TRACE_KEYS = frozenset({"traceparent", "tracestate"})
# Probes and scrapes arrive every few seconds and say nothing about a user's request.
UNTRACED_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
SERVICE_NAME = "opencue-gateway"
# What an operator may set OTEL_TRACES_EXPORTER to.
_EXPORTERS = ("otlp", "console", "none")


def parse_traceparent(header: bytes | None) -> tuple[str, str, int] | None:
    """
    The trace id, the parent span id and the flags of a C{traceparent} header, or
    C{None} when it is absent or invalid (then the gateway starts a new trace). Of the
    flags, those W3C defines are kept: sampled (1) and, from level 2, random (2).
    """
    if not header:
        return None
    match = _TRACEPARENT.fullmatch(header.strip(b" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if parent_id == _ZERO_SPAN:
        return None
    return trace_id.decode("ascii"), parent_id.decode("ascii"), int(flags, 16) & _KNOWN_FLAGS


def parse_tracestate(values: Sequence[bytes] | None) -> str | None:
    """
    The client's C{tracestate} headers as one value to pass on, or C{None} when there
    is none or it is not valid (too long, too many members, a malformed member).
    """
    if not values:
        return None
    try:
        text = ",".join(v.decode("ascii") for v in values)
    except UnicodeDecodeError:
        return None
    if len(text) > _TRACESTATE_MAX_CHARS:
        return None
    members = [m.strip(" \t") for m in text.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > _TRACESTATE_MAX_MEMBERS:
        return None
    if not all(_TRACESTATE_MEMBER.fullmatch(m) for m in members):
        return None
    return ",".join(members)


def _new_span_id() -> str:
    # getrandbits, not os.urandom: no system call per request; ids need not be secret.
    return f"{random.getrandbits(64) or 1:016x}"


class TraceContext:
    """
    One request's place in a trace: what Cuebot is told, and the request's span if any.

    C{traceparent} names the gateway's own span as the parent; C{span}, C{tracer} and
    C{parent} are C{None} unless spans are exported.
    """

    __slots__ = ("metadata", "parent", "span", "state", "trace_id", "traceparent", "tracer")

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        flags: int,
        state: str | None,
        span: Span | None = None,
        tracer: Tracer | None = None,
        parent: Context | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.traceparent = f"00-{trace_id}-{span_id}-{flags:02x}"
        self.state = state
        self.metadata: tuple[tuple[str, str], ...] = (
            (("traceparent", self.traceparent),)
            if state is None
            else (("traceparent", self.traceparent), ("tracestate", state))
        )
        self.span = span
        self.tracer = tracer
        self.parent = parent


class Tracing:
    """
    Starts and finishes each request's trace context; makes spans while C{tracer} is set.

    C{tracer} is set by L{TracingService} while the gateway runs with an exporter, and
    left C{None} otherwise: propagation only.
    """

    def __init__(
        self, tracer: Tracer | None = None, *, untraced: frozenset[bytes] = UNTRACED_PATHS
    ) -> None:
        self.tracer = tracer
        self._untraced = untraced

    def start(self, request: IRequest, request_id: str) -> TraceContext:
        """The request's trace context, from its headers or new; its span, if exporting."""
        headers = request.requestHeaders
        parent = parse_traceparent(request.getHeader(b"traceparent"))
        state_key = b"tracestate"
        if parent is None and headers.hasHeader(b"grpc-metadata-traceparent"):
            parent = parse_traceparent(request.getHeader(b"grpc-metadata-traceparent"))
            state_key = b"grpc-metadata-tracestate"
        state = None
        if parent is not None and headers.hasHeader(state_key):
            state = parse_tracestate(headers.getRawHeaders(state_key))
        tracer = self.tracer
        if tracer is None or request.path in self._untraced:
            if parent is None:
                # A new trace is marked sampled: the gateway does not record it, and leaves
                # the decision to Cuebot's own (parent-based) sampler as if it had started it.
                ids = f"{random.getrandbits(192) | _NOT_ZERO:048x}"
                return TraceContext(ids[:32], ids[32:], _SAMPLED, None)
            return TraceContext(parent[0], _new_span_id(), parent[2], state)
        return _server_span(tracer, request, request_id, parent, state)

    def finish(self, request: IRequest, ctx: RequestContext, disconnected: bool) -> None:
        """End the request's span (if any) with its route and status."""
        trace = ctx.trace
        if trace is None or trace.span is None:
            return
        _end_server_span(trace.span, request, ctx, 499 if disconnected else request.code)  # type: ignore[attr-defined]


def _server_span(
    tracer: Tracer,
    request: IRequest,
    request_id: str,
    parent: tuple[str, str, int] | None,
    state: str | None,
) -> TraceContext:
    from opentelemetry.context import Context
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    if parent is None:
        # An empty context, not the current one: a new trace whatever else runs here.
        context = Context()
    else:
        remote = SpanContext(
            trace_id=int(parent[0], 16),
            span_id=int(parent[1], 16),
            is_remote=True,
            trace_flags=TraceFlags(parent[2]),
            trace_state=TraceState.from_header([state]) if state else None,
        )
        context = set_span_in_context(NonRecordingSpan(remote))
    method = request.method.decode("latin-1")
    span = tracer.start_span(
        method,
        context=context,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.path": request.path.decode("latin-1", "replace"),
            "url.scheme": "https" if request.isSecure() else "http",
            "opencue_gw.request_id": request_id,
        },
    )
    own = span.get_span_context()
    return TraceContext(
        f"{own.trace_id:032x}",
        f"{own.span_id:016x}",
        own.trace_flags,
        state,
        span,
        tracer,
        set_span_in_context(span),
    )


def _end_server_span(span: Span, request: IRequest, ctx: RequestContext, status: int) -> None:
    from opentelemetry.trace import Status, StatusCode

    method = request.method.decode("latin-1")
    rpc = ctx.rpc
    if rpc is not None and request.path.endswith(b"/" + rpc.encode("utf-8")):
        # An RPC route: its path is the route (a facility prefix aside).
        span.update_name(f"{method} /{rpc}")
        span.set_attribute("http.route", "/" + rpc)
    if rpc is not None:
        span.set_attribute("opencue_gw.rpc", rpc)
    if ctx.grpc_code is not None:
        span.set_attribute("opencue_gw.grpc_code", ctx.grpc_code)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        # Server spans are errors for 5xx only; a 4xx is the client's (semantic conventions).
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _child(trace: TraceContext, name: str, kind: Any = None, **attributes: Any) -> Span:
    from opentelemetry.trace import SpanKind

    assert trace.tracer is not None
    return trace.tracer.start_span(
        name,
        context=trace.parent,
        kind=SpanKind.INTERNAL if kind is None else kind,
        attributes=attributes,
    )


def _end_child(result: _T, span: Span) -> _T:
    """End C{span}; a failure makes it an error named by its gRPC code."""
    from opentelemetry.trace import Status, StatusCode

    if isinstance(result, Failure):
        error = error_for(result)
        name = error.code_name if error is not None else type(result.value).__name__
        span.set_attribute("error.type", name)
        span.set_status(Status(StatusCode.ERROR, name))
    span.end()
    return result


def _trace_of(ctx: RequestContext | None) -> TraceContext | None:
    trace = ctx.trace if ctx is not None else None
    return trace if trace is not None and trace.tracer is not None else None


def traced(
    ctx: RequestContext | None, name: str, call: Callable[..., Deferred[_T]], *args: Any
) -> Deferred[_T]:
    """C{call(*args)}, inside a span named C{name} when the request has one."""
    trace = _trace_of(ctx)
    if trace is None:
        return call(*args)
    span = _child(trace, name)
    try:
        d = call(*args)
    except BaseException:
        _end_child(Failure(), span)
        raise
    return d.addBoth(_end_child, span)


def traced_cuebot_call(
    ctx: RequestContext | None,
    rpc: Rpc,
    call: Callable[..., Deferred[_T]],
    message: Message,
    timeout: float | None,
    metadata: list[tuple[str, str | bytes]],
) -> Deferred[_T]:
    """
    C{call} (the upstream's) for C{rpc}, inside a client span when the request has one.

    That span is then the parent Cuebot sees: the C{traceparent} in C{metadata} (the
    request's own, put there by the API) is replaced with the span's.
    """
    trace = _trace_of(ctx)
    if trace is None:
        return call(rpc, message, timeout=timeout, metadata=metadata)
    from opentelemetry.trace import SpanKind, Status, StatusCode

    span = _child(
        trace,
        rpc.path[1:],
        SpanKind.CLIENT,
        **{"rpc.system": "grpc", "rpc.service": rpc.service, "rpc.method": rpc.method},
    )
    own = span.get_span_context()
    parent = f"00-{own.trace_id:032x}-{own.span_id:016x}-{own.trace_flags:02x}"
    metadata = [(k, v) for k, v in metadata if k != "traceparent"]
    metadata.append(("traceparent", parent))

    def ended(result: Any) -> Any:
        code = _grpc_code(result)
        span.set_attribute("rpc.grpc.status_code", int(code))
        if code is not Code.OK:
            span.set_attribute("error.type", code.name)
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        return result

    try:
        d = call(rpc, message, timeout=timeout, metadata=metadata)
    except BaseException:
        ended(Failure())
        raise
    return d.addBoth(ended)


def _grpc_code(result: Any) -> Code:
    """The gRPC code a Cuebot call ended with: OK, Cuebot's or the gateway's, or UNKNOWN."""
    if not isinstance(result, Failure):
        return Code.OK
    error = error_for(result)
    if error is None or error.code not in Code._value2member_map_:
        return Code.UNKNOWN
    return Code(error.code)


def traced_encoding(ctx: RequestContext | None, encoding: Deferred[bytes]) -> Deferred[bytes]:
    """
    A span around JSON encoding that did not finish at once: a large answer encoded on
    the codec pool, or one waiting for another request's encoding of a shared answer.
    Answers encoded inline take microseconds, less than making a span would; they get none.
    """
    trace = _trace_of(ctx)
    if trace is None or encoding.called:
        return encoding
    span = _child(trace, "encode JSON")

    def ended(result: Any) -> Any:
        if isinstance(result, bytes):
            span.set_attribute("opencue_gw.json_bytes", len(result))
        return _end_child(result, span)

    return encoding.addBoth(ended)


class TracingService(Service):
    """
    The OpenTelemetry tracer provider's life: made at start (after twistd forks, so the
    batch processor's thread is the running process's), flushed and shut down at stop.

    Shutting down exports what is left, which may wait on the collector, so it runs on
    the reactor's thread pool: the gateway's stop waits for it without blocking.
    """

    log = Logger(namespace="opencue_gw.ops.tracing", observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        tracing: Tracing,
        exporters: Callable[[], list[SpanExporter]],
        reactor: Any,
        *,
        describe: str = "",
    ) -> None:
        self.tracing = tracing
        self._exporters = exporters
        self._reactor = reactor
        self._describe = describe
        self._provider: Any = None

    def startService(self) -> None:
        """Make the provider and hand its tracer to L{Tracing}."""
        super().startService()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=_resource())
        for exporter in self._exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
        self._provider = provider
        self.tracing.tracer = provider.get_tracer("opencue_gw")
        self.log.info("Exporting traces: {exporters}", exporters=self._describe)

    def stopService(self) -> Deferred[None] | None:
        """Stop making spans; export the ones still queued, then shut the provider down."""
        super().stopService()
        self.tracing.tracer = None
        provider, self._provider = self._provider, None
        if provider is None:
            return None
        d: Deferred[None] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), provider.shutdown
        )
        return d


def _resource() -> Any:
    """C{OTEL_SERVICE_NAME} and C{OTEL_RESOURCE_ATTRIBUTES}, named opencue-gateway unless set."""
    from opentelemetry.sdk.resources import SERVICE_NAME as KEY
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()
    if str(resource.attributes.get(KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({KEY: SERVICE_NAME}))
    return resource


def tracing_from_environ(
    environ: Mapping[str, str], reactor: Any
) -> tuple[Tracing, TracingService | None]:
    """
    The gateway's tracing, from the OpenTelemetry standard variables: propagation only
    unless an exporter is asked for and can be made; then also the service that runs it.

    A request for export that cannot be honoured (the SDK is not installed, an exporter
    or protocol this gateway does not ship) is said in one line at start-up, and the
    gateway runs on with propagation only.
    """
    log = TracingService.log
    tracing = Tracing()
    names = [
        n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()
    ]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or "none" in names:
        return tracing, None
    if not names and not endpoint:
        return tracing, None
    names = names or ["otlp"]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        log.warn(
            "Tracing: OTEL_TRACES_EXPORTER={value} is not supported (otlp, console or none);"
            " traces are propagated to Cuebot but not exported",
            value=environ.get("OTEL_TRACES_EXPORTER"),
        )
        return tracing, None
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        factories = [_exporter_factory(name, protocol) for name in names]
    except _Unavailable as reason:
        log.warn(
            "Tracing: {reason}; traces are propagated to Cuebot but not exported",
            reason=str(reason),
        )
        return tracing, None
    where = _without_secrets(endpoint) if endpoint else "the default endpoint"
    describe = ", ".join(f"otlp {protocol} to {where}" if n == "otlp" else n for n in names)
    service = TracingService(
        tracing, lambda: [make() for make in factories], reactor, describe=describe
    )
    return tracing, service


def _without_secrets(url: str) -> str:
    """An endpoint as it may be logged: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.scheme else "(set)"


class _Unavailable(Exception):
    """An exporter the environment asks for cannot be made here."""


def _exporter_factory(name: str, protocol: str) -> Callable[[], SpanExporter]:
    """The constructor of one exporter; its package is imported now, to fail at start-up."""
    try:
        import opentelemetry.sdk.trace.export as export
    except ImportError:
        raise _Unavailable(
            "an OpenTelemetry exporter is configured but the OpenTelemetry SDK is not"
            " installed (pip install 'opencue-gateway[tracing]')"
        ) from None
    if name == "console":
        return export.ConsoleSpanExporter
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise _Unavailable(
                "OTLP export needs opentelemetry-exporter-otlp-proto-http"
                " (pip install 'opencue-gateway[tracing]')"
            ) from None
        return OTLPSpanExporter
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise _Unavailable(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc, which the"
                " gateway does not install; use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
            ) from None
        return GrpcExporter  # type: ignore[no-any-return]
    raise _Unavailable(f"OTLP protocol {protocol!r} is not supported (http/protobuf or grpc)")
