# -*- test-case-name: tests.test_edge -*-
"""
One access event and one metrics observation per answered request.

The guard calls L{AccessLog.finished} when a request's response is done (or its client
went away); answers given before a request reaches the guard (a request head or body
over the limits) call L{AccessLog.refused}. Both write the same event, so an operator
reads one line per request whoever answered it: who called (C{sub}, C{role}), the
request and trace ids, the RPC, the HTTP status and the gRPC code; and, as a field of
the event (in the JSON log lines), the facility the request went to.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.web.iweb import IRequest

from opencue_gw.http.context import RequestContext
from opencue_gw.logs import GATEWAY_OBSERVER, enabled
from opencue_gw.ops.metrics import GatewayMetrics

__all__ = ["ACCESS_FORMAT", "AccessLog"]

ACCESS_FORMAT = (
    "{method} {path} {status} {bytes}B {duration:.4f}s sub={sub} role={role} id={request_id}"
    " trace={trace_id}"
)
# The longest path an access line shows (a longer one is cut, marked with "...").
LOGGED_PATH_CHARS = 512
# A client that went away before its answer was written.
CLIENT_CLOSED = 499


class AccessLog:
    """Writes the access event and records the request in the metrics."""

    log = Logger(namespace="opencue_gw.http.access", observer=GATEWAY_OBSERVER)

    def __init__(self, clock: IReactorTime, metrics: GatewayMetrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics

    def finished(self, request: IRequest, ctx: RequestContext, *, disconnected: bool) -> None:
        """A request the guard admitted is done; C{disconnected}: its client left first."""
        status = CLIENT_CLOSED if disconnected else request.code  # type: ignore[attr-defined]
        duration = self._clock.seconds() - ctx.started
        if self._metrics is not None:
            self._metrics.observe(ctx, status, duration)
        if not enabled(LogLevel.info):
            return
        identity = ctx.identity
        self.log.info(
            ACCESS_FORMAT,
            method=request.method.decode("latin-1"),
            path=_shown_path(request.path),
            status=status,
            bytes=getattr(request, "sentLength", 0),
            duration=duration,
            request_id=ctx.request_id,
            trace_id=ctx.trace.trace_id if ctx.trace is not None else None,
            sub=identity.sub if identity else None,
            role=identity.role if identity else None,
            rpc=ctx.rpc,
            grpc_code=ctx.grpc_code,
            stale=ctx.stale or None,
            facility=ctx.facility or None,
            client=getattr(request.getClientAddress(), "host", None),
            disconnected=disconnected,
        )

    def refused(
        self,
        *,
        method: bytes,
        path: bytes,
        status: int,
        sent: int,
        duration: float,
        request_id: str,
        grpc_code: str,
        client: str | None,
    ) -> None:
        """An answer written before the request reached the guard (head or body limits)."""
        if self._metrics is not None:
            self._metrics.refused_unrouted(status)
        if not enabled(LogLevel.info):
            return
        self.log.info(
            ACCESS_FORMAT,
            method=method.decode("latin-1"),
            path=_shown_path(path.split(b"?", 1)[0]),
            status=status,
            bytes=sent,
            duration=duration,
            request_id=request_id,
            trace_id=None,
            sub=None,
            role=None,
            rpc=None,
            grpc_code=grpc_code,
            client=client,
            disconnected=False,
        )


def _shown_path(path: bytes) -> str:
    """
    The path as logged: cut at L{LOGGED_PATH_CHARS}, so a 16 KiB request line (answered
    414) or a long path cannot make every log line as long as the request.
    """
    if len(path) > LOGGED_PATH_CHARS:
        return path[:LOGGED_PATH_CHARS].decode("latin-1", "replace") + "..."
    return path.decode("latin-1", "replace")
