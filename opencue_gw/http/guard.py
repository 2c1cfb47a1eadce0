# -*- test-case-name: tests.test_edge,tests.test_auth -*-
"""
The guard: the one resource between the site and the router.

Every request passes through L{GatewayGuard.render} once, in this order:

 1. it gets its context (request id, trace context, start time) and its CORS headers, and its access
    event is promised for when it finishes;
 2. a draining gateway refuses it, a CORS preflight is answered;
 3. the router finds the route; a public one (health, metrics, the API description)
    answers at once;
 4. beyond C{max_in_flight} requests, it is shed with 503;
 5. the bearer token is checked through the C{twisted.cred} portal (the verifier
    remembers tokens it verified), and the caller's identity is recorded on the
    context at once, so every later refusal is logged with its caller;
 6. the caller's rate limit is applied;
 7. the route answers.

Policy is decided where the RPC is known, in L{opencue_gw.api.GatewayAPI.call}: a
resource route may call more than one RPC. Failures are answered through the one
error table in L{opencue_gw.errors}.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from opencue_gw.auth.bearer import (
    BearerCredentialFactory,
    Identity,
    IIdentity,
    split_authorization,
)
from opencue_gw.errors import Code, GatewayError, error_for
from opencue_gw.http.access import AccessLog
from opencue_gw.http.context import (
    RequestContext,
    attach_context,
    context_of,
    request_id_for,
)
from opencue_gw.http.cors import CorsPolicy
from opencue_gw.http.ratelimit import RateLimit
from opencue_gw.http.router import Route, Router
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.ops.tracing import Tracing, traced

__all__ = ["GatewayGuard"]


@implementer(IResource)
class GatewayGuard:
    """
    Admits, authenticates and throttles every request, then hands it to C{router}.

    A leaf resource: the router matches the full path itself.
    """

    isLeaf = True
    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        portal: Portal,
        router: Router,
        clock: IReactorTime,
        in_flight: InFlight,
        access: AccessLog,
        *,
        rate_limit: RateLimit | None = None,
        metrics: GatewayMetrics | None = None,
        cors: CorsPolicy | None = None,
        max_in_flight: int | None = None,
        credentials: BearerCredentialFactory | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._portal = portal
        self._router = router
        self._clock = clock
        self._in_flight = in_flight
        self._access = access
        self._rate_limit = rate_limit
        # Public: the site's answers given before a request reaches the guard (a body
        # or head over the limit) use the same CORS policy and counters.
        self.metrics = metrics
        self.cors = cors
        self._max_in_flight = max_in_flight
        self._credentials = credentials or BearerCredentialFactory()
        self._tracing = tracing if tracing is not None else Tracing()

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        """Never asked, since this is a leaf; L{IResource} requires it."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Every route belongs to the router."""
        raise ValueError("the guard takes no children; add routes to the router")

    def render(self, request: Request) -> Any:
        """Steps 1-7 of the module docstring; answers every failure as JSON."""
        ctx = RequestContext(
            request_id=request_id_for(request.getHeader(b"x-request-id")),
            started=self._clock.seconds(),
        )
        ctx.trace = self._tracing.start(request, ctx.request_id)
        attach_context(request, ctx)
        request.setHeader(b"x-request-id", ctx.request_id.encode("ascii"))
        if self.cors is not None:
            self.cors.decorate(request)
        # The site's request class entered it when its head was complete; a request
        # built another way (StubTreq in tests) is entered here. While draining, only
        # requests that had already started are served.
        admitted = self._in_flight.enter(request)
        request.notifyFinish().addBoth(self._finished, request, ctx)
        try:
            return self._admit(request, ctx, admitted)
        except Exception:
            self._answer_failure(Failure(), request)
            return NOT_DONE_YET

    def _admit(self, request: Request, ctx: RequestContext, admitted: bool) -> Any:
        if not admitted:
            request.setHeader(b"connection", b"close")
            channel = getattr(request, "channel", None)
            if channel is not None:
                # Twisted decides persistence from the request; close after this answer.
                channel.persistent = False
            raise GatewayError.unavailable("the gateway is shutting down")
        if self.cors is not None and self.cors.is_preflight(request):
            self.cors.answer_preflight(request)
            return NOT_DONE_YET
        route = self._router.resolve(request, ctx)
        if route.public:
            return route.serve(request)
        if self._max_in_flight is not None and self._in_flight.count > self._max_in_flight:
            if self.metrics is not None:
                self.metrics.shed.inc()
            raise GatewayError.unavailable(
                "the gateway is overloaded; retry shortly", retry_after=1
            )
        header = request.getHeader(b"authorization")
        if not header:
            ctx.auth_failure = "missing"
            raise GatewayError.unauthenticated(
                "Authorization header required", token_presented=False
            )
        credentials = self._credentials.decode(split_authorization(header), request)
        d: Deferred[Any] = traced(
            ctx, "authenticate", self._portal.login, credentials, None, IIdentity
        )
        d.addCallback(self._logged_in, request, ctx, route)
        d.addErrback(self._answer_failure, request)
        return NOT_DONE_YET

    def _logged_in(
        self, login: tuple[type, Identity, Any], request: Request, ctx: RequestContext, route: Route
    ) -> Deferred[None] | None:
        _, identity, _ = login
        ctx.identity = identity
        if self._rate_limit is not None:
            decided = self._rate_limit.check(identity, request)
            if decided is not None:
                # Shared buckets answer later; the login chain's errback still answers a 429.
                return decided.addCallback(lambda _: self._serve(request, route))
        self._serve(request, route)
        return None

    def _serve(self, request: Request, route: Route) -> None:
        body = route.serve(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _answer_failure(self, failure: Failure, request: IRequest) -> None:
        error = error_for(failure)
        if error is not None and error.code == Code.UNAUTHENTICATED:
            self._refused(request, failure)
        self._router.fail(failure, request)

    def _refused(self, request: IRequest, failure: Failure) -> None:
        ctx = context_of(request)
        reason = getattr(failure.value, "reason", None) or (ctx.auth_failure if ctx else None)
        if ctx is not None:
            ctx.auth_failure = reason or "unauthorized"
        self.log.info(
            "Refused {method} {path}: {reason}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1", "replace"),
            reason=reason,
            client=getattr(request.getClientAddress(), "host", None),
            request_id=ctx.request_id if ctx else None,
        )

    def _finished(self, result: Failure | None, request: Request, ctx: RequestContext) -> None:
        self._in_flight.leave(request)
        self._access.finished(request, ctx, disconnected=result is not None)
        self._tracing.finish(request, ctx, result is not None)
