# -*- test-case-name: tests.test_health -*-
"""
Liveness, readiness and metrics endpoints, answered without a token.

Liveness says the process answers HTTP. Readiness says Cuebot answered a cheap call
(C{cue.CueInterface/GetSystemStats}, pycue's own connection test) recently, so a load
balancer stops sending traffic to a gateway whose Cuebot is gone, and says so while the
gateway drains for shutdown. The probe runs on a timer; a failing or raising probe is
recorded and the loop carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from opencue_gw.edge import InFlight
from opencue_gw.errors import GatewayError
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from opencue_gw.respond import error_bytes, set_json_headers
from opencue_gw.rpcs import Rpc

__all__ = ["LivenessResource", "MetricsResource", "ReadinessProbe", "ReadinessResource"]

PROBE_PATH = "/cue.CueInterface/GetSystemStats"


class ReadinessProbe:
    """
    Remembers when Cuebot last answered, and why it did not.

    C{interval} is how often it asks; Cuebot counts as reachable for C{stale_after}
    seconds after its last answer, so one slow probe does not flap readiness.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        upstream: Any,
        rpc: Rpc,
        clock: IReactorTime,
        *,
        interval: float = 5.0,
        stale_after: float = 15.0,
        timeout: float = 3.0,
    ) -> None:
        self._upstream = upstream
        self._rpc = rpc
        self._clock = clock
        self.interval = interval
        self.stale_after = stale_after
        self._timeout = timeout
        self.last_ok: float | None = None
        self.last_error: str = "Cuebot has not been asked yet"
        self._pending: Deferred[Any] | None = None

    def service(self) -> TimerService:
        """A service that probes every C{interval} seconds while it runs."""
        timer = TimerService(self.interval, self.probe)
        timer.clock = self._clock
        return timer

    def probe(self) -> Deferred[None] | None:
        """Ask Cuebot once; never raises, never overlaps a probe still running."""
        if self._pending is not None:
            return None
        try:
            d = self._upstream.call(
                self._rpc, self._rpc.request_class(), timeout=self._timeout, metadata=()
            )
        except Exception as error:
            self._failed(Failure(error))
            return None
        self._pending = d
        d.addCallbacks(self._answered, self._failed)
        d.addBoth(self._done)
        return d

    def _answered(self, reply: object) -> None:
        if self.last_ok is None or self.last_error:
            self.log.info("Cuebot is reachable")
        self.last_ok = self._clock.seconds()
        self.last_error = ""

    def _failed(self, failure: Failure) -> None:
        error = failure.value
        detail = str(error) if isinstance(error, GatewayError) else repr(error)
        # The public answer names the gRPC code only; addresses and exception text stay
        # in the log.
        reason = (
            f"Cuebot did not answer ({error.code_name})"
            if isinstance(error, GatewayError)
            else "Cuebot probe failed"
        )
        if reason != self.last_error:
            self.log.warn("Cuebot readiness probe failed: {detail}", detail=detail)
        self.last_error = reason

    def _done(self, result: object) -> None:
        self._pending = None

    def ready(self) -> tuple[bool, str]:
        """Whether Cuebot answered recently, and if not, why not."""
        if self.last_ok is None:
            return False, self.last_error
        age = self._clock.seconds() - self.last_ok
        if age > self.stale_after:
            reason = self.last_error or "no answer"
            return False, f"Cuebot last answered {age:.0f}s ago ({reason})"
        return True, f"Cuebot answered {age:.1f}s ago"


class _JSONResource(Resource):
    """A GET/HEAD resource answering JSON; any other method is a JSON 405, not a 500."""

    isLeaf = True
    render_GET: Callable[[IRequest], bytes]

    def render_HEAD(self, request: IRequest) -> bytes:
        """Probes sometimes use HEAD; answer like GET without the body."""
        self.render_GET(request)
        return b""

    def render(self, request: IRequest) -> bytes:
        """GET and HEAD as the subclass answers them; everything else 405."""
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)  # type: ignore[no-any-return]
        return error_bytes(
            request,
            GatewayError(12, "Method Not Allowed", http_status=405, headers={"Allow": "GET, HEAD"}),
        )


class LivenessResource(_JSONResource):
    """C{/healthz}: the process is up and its reactor answers."""

    def render_GET(self, request: IRequest) -> bytes:
        """Always 200 while the process serves HTTP at all."""
        set_json_headers(request, 200)
        return b'{"status":"ok"}'


class ReadinessResource(_JSONResource):
    """C{/readyz}: Cuebot answered recently and the gateway is not draining."""

    def __init__(self, probe: ReadinessProbe, in_flight: InFlight) -> None:
        super().__init__()
        self._probe = probe
        self._in_flight = in_flight

    def render_GET(self, request: IRequest) -> bytes:
        """200 with what was checked, or 503 with the reason."""
        if self._in_flight.draining:
            ready, reason = False, "the gateway is shutting down"
        else:
            ready, reason = self._probe.ready()
        if not ready:
            retry = {"Retry-After": str(int(self._probe.interval))}
            return error_bytes(request, GatewayError(14, reason, headers=retry))
        set_json_headers(request, 200)
        return json.dumps({"status": "ready", "cuebot": reason}, separators=(",", ":")).encode()


class MetricsResource(_JSONResource):
    """C{/metrics}: the Prometheus text exposition."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: IRequest) -> bytes:
        """The current values of every gateway metric."""
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self._metrics.exposition()


def public_health(
    probe: ReadinessProbe, in_flight: InFlight, metrics: GatewayMetrics, metrics_public: bool
) -> dict[bytes, IResource]:
    """The health paths for the edge's table of paths that need no token."""
    paths: dict[bytes, IResource] = {
        b"/healthz": LivenessResource(),
        b"/readyz": ReadinessResource(probe, in_flight),
    }
    if metrics_public:
        paths[b"/metrics"] = MetricsResource(metrics)
    return paths
