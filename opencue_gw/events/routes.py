# -*- test-case-name: tests.test_events -*-
"""
C{GET /api/v1/events} (Server-Sent Events), C{GET /api/v1/jobs/{id}/wait} and
C{GET /api/v1/whoami}, behind the token like every C{/api/v1} route.

A stream carries only what its caller may read: the policy is asked, for the caller,
about the read RPCs the polls use (L{POLL_RPCS}); a type asked for by name and refused
is a 403, a type merely defaulted is left out. A stream is not a request in flight for
the gateway's load shedding or drain: it leaves the in-flight set once its head is
written, and ends with a C{shutdown} event when the gateway stops (L{EventsService}),
or with C{expired} when the token that opened it expires.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.web.iweb import IRequest

from opencue_gw.auth.bearer import Identity
from opencue_gw.auth.policy import Policy
from opencue_gw.errors import Code, GatewayError
from opencue_gw.events.hub import EventHub, Subscription
from opencue_gw.events.model import EventFilter
from opencue_gw.events.scopes import POLL_RPCS
from opencue_gw.events.sinks import EventStream, JobWait
from opencue_gw.http.answers import json_answer
from opencue_gw.http.context import context_of
from opencue_gw.http.router import Router
from opencue_gw.ops.inflight import InFlight
from opencue_gw.settings import parse_duration

__all__ = ["ACTIONS", "EventRoutes", "EventsService", "install_event_routes"]

# What the live page offers, and the RPC each button calls.
ACTIONS = {
    "pause": "/job.JobInterface/Pause",
    "resume": "/job.JobInterface/Resume",
    "kill": "/job.JobInterface/Kill",
    "retry": "/job.JobInterface/RetryFrames",
    "retryFrame": "/job.FrameInterface/Retry",
}


def _query(request: IRequest) -> dict[str, list[str]]:
    try:
        return {
            name.decode("utf-8"): [value.decode("utf-8") for value in values]
            for name, values in (request.args or {}).items()
        }
    except UnicodeDecodeError:
        raise GatewayError.invalid_argument("query parameters must be UTF-8") from None


def _identity(request: IRequest) -> Identity | None:
    ctx = context_of(request)
    return ctx.identity if ctx is not None else None


def _caller(identity: Identity | None) -> str:
    return identity.sub or "" if identity is not None else ""


class EventRoutes:
    """The three routes, over one L{EventHub}."""

    def __init__(
        self,
        hub: EventHub,
        *,
        policy: Policy | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.hub = hub
        self._policy = policy
        self._in_flight = in_flight

    def install(self, router: Router) -> None:
        """Add the routes, behind the token."""
        router.add("/api/v1/events", self.events, methods=["GET"], endpoint="events")
        router.add("/api/v1/jobs/<id>/wait", self.wait, methods=["GET"], endpoint="job wait")
        router.add("/api/v1/whoami", self.whoami, methods=["GET"], endpoint="whoami")

    def may(self, identity: Identity | None, path: str) -> bool:
        """Whether the policy lets C{identity} call the RPC at C{path}."""
        if self._policy is None:
            return True
        service, _, method = path.lstrip("/").partition("/")
        return self._policy.decide(identity, service, method).allowed

    def permitted(self, identity: Identity | None, asked: EventFilter) -> EventFilter:
        """C{asked} without the types the caller may not read; 403 if that matters."""
        denied = {
            kind
            for kind in asked.types
            if not all(self.may(identity, path) for path in POLL_RPCS[kind])
        }
        if not denied:
            return asked
        if asked.explicit_types or denied == asked.types:
            names = ", ".join(sorted(denied))
            raise GatewayError.permission_denied(
                f"permission denied: the caller's role may not read {names} events"
            )
        return asked.without(denied)

    def events(self, request: IRequest) -> Deferred[None] | bytes:
        """The event stream (for HEAD, only its head: a stream without a body never ends)."""
        identity = _identity(request)
        wanted = self.permitted(identity, EventFilter.parse(_query(request)))
        caller = _caller(identity)
        if request.method == b"HEAD":
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
            return b""
        self.hub.admit(caller)
        last_event_id = _last_event_id(request)
        holder: list[Subscription] = []
        expiry: list[IDelayedCall] = []

        def ended(slow: bool) -> None:
            if slow:
                self.hub.metrics.dropped.inc()
            if holder:
                self.hub.unsubscribe(holder[0])
            if expiry and expiry[0].active():
                expiry[0].cancel()

        settings = self.hub.settings
        stream = EventStream(
            request,
            max_buffer=settings.max_buffer_bytes,
            retry_ms=int(settings.interval * 1000),
            on_end=ended,
        )
        if self._in_flight is not None:
            self._in_flight.leave(request)
        holder.append(self.hub.subscribe(stream, wanted, caller, last_event_id))
        if stream.ended.called or not holder[0].active:
            self.hub.unsubscribe(holder[0])
            return stream.ended
        expires = identity.claims.get("exp") if identity is not None else None
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            # A stream must not outlive the token that opened it: the client reconnects
            # with a fresh one (and resumes with Last-Event-ID).
            left = max(0.0, float(expires) - self.hub.clock.seconds())
            message = {"message": "the token expired; reconnect with a new one"}
            expiry.append(self.hub.clock.callLater(left, stream.close, "expired", message))
        return stream.ended

    def wait(self, request: IRequest, id: str) -> Deferred[bytes]:
        """Answer when job C{id} has finished; 408 when C{timeout} passes first."""
        params = _query(request)
        for name in params:
            if name not in ("until", "timeout"):
                raise GatewayError.invalid_argument(
                    f"unknown query parameter {name!r} (accepted: timeout, until)"
                )
        until = (params.get("until") or ["finished"])[-1]
        if until != "finished":
            raise GatewayError.invalid_argument(
                f"invalid until value {until!r} (accepted: finished)"
            )
        timeout = _timeout((params.get("timeout") or ["600"])[-1], self.hub.settings.max_wait)
        identity = _identity(request)
        if not self.may(identity, "/job.JobInterface/GetJob"):
            raise GatewayError.permission_denied(
                "permission denied: the caller's role may not call job.JobInterface/GetJob"
            )
        caller = _caller(identity)
        self.hub.admit(caller)
        holder: list[Subscription] = []

        def ended() -> None:
            if holder:
                self.hub.unsubscribe(holder[0])

        waiter = JobWait(id, timeout, self.hub.clock, request, ended)
        wanted = EventFilter(jobs=frozenset({id}), types=frozenset({"job"}))
        holder.append(self.hub.subscribe(waiter, wanted, caller))
        if waiter.answer.called:
            self.hub.unsubscribe(holder[0])
        return waiter.answer

    def whoami(self, request: IRequest) -> bytes:
        """Who the token says the caller is, and which actions the policy allows."""
        identity = _identity(request)
        roles = list(self._policy.roles_of(identity)) if self._policy is not None else []
        body = {
            "sub": identity.sub if identity is not None else None,
            "role": identity.role if identity is not None else None,
            "roles": roles,
            "may": {name: self.may(identity, path) for name, path in ACTIONS.items()},
        }
        return json_answer(request, json.dumps(body, separators=(",", ":")).encode("utf-8"))


def _last_event_id(request: IRequest) -> int | None:
    raw = request.getHeader(b"last-event-id")
    if raw is None:
        return None
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None  # Not one of ours: the client gets a fresh snapshot.


def _timeout(text: str, maximum: float) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise GatewayError.invalid_argument(
            f"invalid timeout {text[:32]!r}: expected seconds or a duration such as 10m"
        ) from None
    if not 0 < seconds <= maximum:
        raise GatewayError(
            Code.INVALID_ARGUMENT, f"timeout must be above 0 and at most {maximum:g}s"
        )
    return seconds


class EventsService(Service):
    """
    Ends every stream with a C{shutdown} event when the gateway stops.

    The gateway stops its listeners and drains requests before it stops other services,
    and a stream never ends by itself; so the streams are ended from the reactor's
    "before shutdown" trigger, at the same time as the listeners stop, and the drain
    does not wait its grace period for them. C{stopService} ends them too (and stops the
    polls), for a tree stopped without the reactor.
    """

    def __init__(self, hub: EventHub, reactor: Any) -> None:
        self.hub = hub
        self._reactor = reactor
        self._trigger: Any = None

    def startService(self) -> None:
        """Watch for the reactor's shutdown."""
        super().startService()
        add = getattr(self._reactor, "addSystemEventTrigger", None)
        if add is not None:
            self._trigger = add("before", "shutdown", self.hub.close)

    def stopService(self) -> Deferred[None]:
        """End the streams and the polls (and give this instance's leases up)."""
        super().stopService()
        trigger, self._trigger = self._trigger, None
        remove = getattr(self._reactor, "removeSystemEventTrigger", None)
        if trigger is not None and remove is not None:
            try:
                remove(trigger)
            except (ValueError, KeyError):
                pass  # Already run: the reactor is shutting down.
        return self.hub.close()


def install_event_routes(
    router: Router,
    hub: EventHub,
    *,
    policy: Policy | None = None,
    in_flight: InFlight | None = None,
) -> EventRoutes:
    """The one entry point: serve the event routes of C{hub} on C{router}."""
    routes = EventRoutes(hub, policy=policy, in_flight=in_flight)
    routes.install(router)
    return routes
