# -*- test-case-name: tests.test_health -*-
"""
Liveness, readiness and metrics endpoints, answered without a token.

Liveness says the process answers HTTP. Readiness says Cuebot answered a cheap call
(C{cue.CueInterface/GetSystemStats}, pycue's own connection test) recently, so a load
balancer stops sending traffic to a gateway whose Cuebot is gone, and says so while the
gateway drains for shutdown. The probe runs on a timer; a failing or raising probe is
recorded and the loop carries on.

With several Cuebot replicas or facilities, each replica has its own probe on a channel
of its own (L{ReplicaReadiness}): the gateway is ready while at least one replica of the
default facility answers, C{/readyz} says how each replica of each facility is, and
C{opencue_gateway_cuebot_replica_up} has one series per replica.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from opencue_gw.errors import GatewayError
from opencue_gw.http.answers import json_answer
from opencue_gw.http.router import Router
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from opencue_gw.upstream.rpcs import Rpc

__all__ = [
    "PROBE_PATH",
    "HealthRoutes",
    "Readiness",
    "ReadinessProbe",
    "ReplicaReadiness",
    "answering",
    "report_replicas",
]

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


class Readiness(Protocol):
    """What C{/readyz} asks: a L{ReadinessProbe}, or L{ReplicaReadiness} over several."""

    interval: float

    def ready(self) -> tuple[bool, str]: ...


Probes = Mapping[str, Sequence[tuple[str, ReadinessProbe]]]
"""Each facility's replicas (as configured, C{HOST:PORT}) and the probe of each."""


class ReplicaReadiness:
    """
    Readiness over every replica of every facility, each with its own L{ReadinessProbe}.

    Ready while at least one replica of facility C{default} answers: calls go to the
    replicas that answer, so one is enough to serve. A replica counts as answering when
    its last probe was answered (not merely one in the last C{stale_after} seconds): the
    details and the gauge show a replica down from its first failed probe, while the
    gateway as a whole stays ready as long as one replica is within the probe's grace.
    """

    def __init__(self, default: str, probes: Probes) -> None:
        self.default = default
        self.probes = probes
        self.interval = min(p.interval for each in probes.values() for _, p in each)

    def ready(self) -> tuple[bool, str]:
        """Whether a replica of the default facility answers, and how many do."""
        probes = self.probes[self.default]
        states = [(replica, answering(probe)) for replica, probe in probes]
        up = sum(1 for _, (ok, _) in states if ok)
        if up:
            return True, (
                f"{up} of {len(states)} Cuebot replicas of facility {self.default!r} answer"
            )
        recent = [probe for _, probe in probes if probe.ready()[0]]
        if recent:
            return True, (
                f"no Cuebot replica of facility {self.default!r} answered its last probe; "
                f"one answered within the last {recent[0].stale_after:g}s"
            )
        reasons = "; ".join(f"{replica}: {why}" for replica, (_, why) in states)
        return False, f"no Cuebot replica of facility {self.default!r} answers ({reasons})"

    def details(self) -> dict[str, Any]:
        """Each facility: whether one of its replicas answers, and how each replica is."""
        found: dict[str, Any] = {}
        for facility, probes in self.probes.items():
            replicas = {}
            for replica, probe in probes:
                ok, why = answering(probe)
                replicas[replica] = {"ready": ok, "cuebot": why}
            found[facility] = {
                "ready": any(r["ready"] for r in replicas.values()),
                "replicas": replicas,
            }
        return found


def answering(probe: ReadinessProbe) -> tuple[bool, str]:
    """Whether the replica answered its last probe (and recently), and what it said."""
    ok, why = probe.ready()
    if ok and probe.last_error:
        return False, probe.last_error
    return ok, why


def report_replicas(metrics: GatewayMetrics, probes: Probes) -> None:
    """Give each replica its C{opencue_gateway_cuebot_replica_up} series, read when scraped."""
    for facility, each in probes.items():
        for replica, probe in each:
            metrics.replica_up.labels(facility, replica).set_function(_up(probe))


def _up(probe: ReadinessProbe) -> Any:
    return lambda: 1.0 if answering(probe)[0] else 0.0


class HealthRoutes:
    """
    C{/healthz}, C{/readyz} and C{/metrics} as routes of the router: the first two are
    always public (load balancers and kubelets carry no token), metrics unless
    C{--metrics-require-token}.
    """

    def __init__(
        self,
        probe: Readiness,
        in_flight: InFlight,
        metrics: GatewayMetrics,
        shared: Any = None,
    ):
        self._probe = probe
        self._in_flight = in_flight
        self._metrics = metrics
        # The Redis of --redis (a SharedStore): its state is reported, never a reason to
        # be unready, since the gateway works on without it.
        self._shared = shared

    def install(self, router: Router, *, metrics_public: bool) -> None:
        """Add the three routes (GET, and HEAD as werkzeug adds it for GET)."""
        router.add("/healthz", self.liveness, methods=["GET"], public=True)
        router.add("/readyz", self.readiness, methods=["GET"], public=True)
        router.add("/metrics", self.exposition, methods=["GET"], public=metrics_public)

    def liveness(self, request: IRequest) -> bytes:
        """Always 200 while the process serves HTTP at all."""
        return json_answer(request, b'{"status":"ok"}')

    def readiness(self, request: IRequest) -> bytes:
        """200 with what was checked, or 503 with the reason (also while draining)."""
        if self._in_flight.draining:
            ready, reason = False, "the gateway is shutting down"
        else:
            ready, reason = self._probe.ready()
        if not ready:
            raise GatewayError.unavailable(reason, retry_after=int(self._probe.interval))
        details: dict[str, Any] = {"status": "ready", "cuebot": reason}
        replicas = getattr(self._probe, "details", None)
        if replicas is not None:
            details["facilities"] = replicas()
        if self._shared is not None:
            details["redis"] = self._shared.status()[1]
        body = json.dumps(details, separators=(",", ":"))
        return json_answer(request, body.encode())

    def exposition(self, request: IRequest) -> bytes:
        """The current values of every gateway metric, in Prometheus's text format."""
        body = self._metrics.exposition()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return body
