# -*- test-case-name: tests.test_edge -*-
"""
The outermost resource: what every request gets before authentication.

It gives the request an id, counts it in flight (so shutdown can wait for it), refuses
new work while the gateway drains, catches anything that escapes the layers below, and
writes one access event when the response is done. It wraps a resource rather than
subclassing C{Site}, so tests through StubTreq exercise it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request

from opencue_gw.context import IRequestContext, RequestContext
from opencue_gw.cors import CorsPolicy
from opencue_gw.errors import GatewayError
from opencue_gw.leaf import LeafResource
from opencue_gw.logs import GATEWAY_OBSERVER, enabled
from opencue_gw.metrics import GatewayMetrics
from opencue_gw.respond import finish_error
from opencue_gw.waiting import UntilNone

__all__ = ["Edge", "InFlight"]

# Accept a caller's id only if it is short and harmless to echo and log.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class InFlight:
    """
    Counts requests being served and lets shutdown wait for them.

    While draining, the edge refuses new requests, so the count can only fall.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = UntilNone()

    def enter(self) -> None:
        """A request started."""
        self.count += 1

    def leave(self) -> None:
        """A request finished (or its client went away)."""
        self.count -= 1
        if self.count == 0:
            self._idle.none_left()

    def drain(self, grace: float, clock: IReactorTime) -> Deferred[bool]:
        """
        Stop admitting requests and wait for the ones in flight.

        Fires C{True} once none are left, or C{False} when C{grace} seconds pass first
        (the stragglers are then cut off by the reactor's shutdown).
        """
        self.draining = True
        if self.count == 0:
            return succeed(True)
        return self._idle.wait(grace, clock).addCallback(self._report)

    def _report(self, drained: bool) -> bool:
        if not drained:
            self.log.warn(
                "Grace period over with {count} requests still in flight", count=self.count
            )
        return drained


class Edge(LeafResource):
    """
    Request id, in-flight accounting, drain gate and access log around C{wrapped}.

    C{public} maps exact paths (C{b"/healthz"}) or first-segment prefixes ending in a
    slash (C{b"/docs/"}) to resources that need no token; everything else goes to the
    guarded C{wrapped} resource.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        wrapped: IResource,
        clock: IReactorTime,
        in_flight: InFlight,
        public: Mapping[bytes, IResource] | None = None,
        *,
        metrics: GatewayMetrics | None = None,
        cors: CorsPolicy | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        self._wrapped = wrapped
        self._clock = clock
        self._in_flight = in_flight
        self._public = dict(public or {})
        # Public: the request factory answers an oversized body before the request
        # reaches the edge, and needs the same CORS policy and counters.
        self.metrics = metrics
        self.cors = cors
        self._max_in_flight = max_in_flight

    def render(self, request: Request) -> Any:  # type: ignore[override]
        """Admit, label and account for the request, then hand it inwards."""
        ctx = RequestContext(request_id=_request_id(request), started=self._clock.seconds())
        request.setComponent(IRequestContext, ctx)  # type: ignore[attr-defined]
        request.setHeader(b"x-request-id", ctx.request_id.encode("ascii"))
        if self.cors is not None:
            self.cors.decorate(request)
        inner = self._inner_for(request)
        # Shedding looks at the load before this request joins it.
        overloaded = (
            self._max_in_flight is not None
            and inner is self._wrapped
            and self._in_flight.count >= self._max_in_flight
        )
        self._in_flight.enter()
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        request.notifyFinish().addBoth(self._finished, request, ctx)
        if self._in_flight.draining:
            request.setHeader(b"connection", b"close")
            channel = getattr(request, "channel", None)
            if channel is not None:
                # Twisted decides persistence from the request; close after this answer.
                channel.persistent = False
            finish_error(request, GatewayError(14, "the gateway is shutting down"))
            return NOT_DONE_YET
        if self.cors is not None and self.cors.is_preflight(request):
            self.cors.answer_preflight(request)
            return NOT_DONE_YET
        if overloaded:
            if self.metrics is not None:
                self.metrics.shed.inc()
            finish_error(
                request,
                GatewayError(
                    14,
                    "the gateway is overloaded; retry shortly",
                    headers={"Retry-After": "1"},
                ),
            )
            return NOT_DONE_YET
        try:
            return inner.render(request)
        except Exception:
            self.log.failure(
                "Unexpected failure rendering {path}",
                path=request.path,
                request_id=ctx.request_id,
            )
            finish_error(request, GatewayError(13, "internal gateway error"))
            return NOT_DONE_YET

    def _inner_for(self, request: Request) -> IResource:
        """
        The resource that answers: a public one (health, API description) when the
        path is one of theirs, otherwise the guarded API.
        """
        if self._public:
            public = self._public.get(request.path)
            if public is None and request.path.count(b"/") > 1:
                public = self._public.get(request.path[: request.path.index(b"/", 1) + 1])
            if public is not None:
                return public
        return self._wrapped

    def _finished(self, result: Failure | None, request: Request, ctx: RequestContext) -> None:
        self._in_flight.leave()
        identity = ctx.identity
        status = request.code if result is None else 499
        duration = self._clock.seconds() - ctx.started
        if self.metrics is not None:
            self.metrics.in_flight.dec()
            self.metrics.observe(ctx, status, duration)
        if not enabled(LogLevel.info):
            return
        self.log.info(
            "{method} {path} {status} {bytes}B {duration:.4f}s",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1", "replace"),
            status=status,
            bytes=getattr(request, "sentLength", 0),
            duration=duration,
            request_id=ctx.request_id,
            sub=identity.sub if identity else None,
            role=identity.role if identity else None,
            rpc=ctx.rpc,
            grpc_code=ctx.grpc_code,
            client=getattr(request.getClientAddress(), "host", None),
            disconnected=result is not None,
        )


def _request_id(request: IRequest) -> str:
    offered = request.getHeader(b"x-request-id")
    if offered:
        text = offered.decode("latin-1")
        if _REQUEST_ID.match(text):
            return text
    return os.urandom(16).hex()
