# -*- test-case-name: tests.test_health -*-
"""
Prometheus metrics for the gateway, on a registry of its own.

Everything about one request is recorded once, when its response is finished (the
access log calls L{GatewayMetrics.observe}), from the request context the layers filled in.
Labels are bounded: the RPC label is a route from the descriptor table or empty, never
a raw client-supplied path; the facility label is a configured facility's name or empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from opencue_gw.http.context import RequestContext

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

# Latency buckets from sub-millisecond (cached reads) to the default 30 s deadline.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._per_route: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "opencue_gateway_requests",
            "HTTP requests answered, by RPC route and HTTP status.",
            ["rpc", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "opencue_gateway_request_duration_seconds",
            "Time from request to finished response, by RPC route.",
            ["rpc"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "opencue_gateway_requests_in_flight",
            "Requests being served right now.",
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "opencue_gateway_upstream_errors",
            "Cuebot calls that ended in a gRPC error, by code.",
            ["code"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "opencue_gateway_auth_failures",
            "Requests refused at authentication, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.coalesced_reads = Counter(
            "opencue_gateway_coalesced_reads",
            "Read calls answered by joining an identical call already in flight.",
            registry=self.registry,
        )
        self.cached_reads = Counter(
            "opencue_gateway_cached_reads",
            "Read calls answered from the short read cache.",
            registry=self.registry,
        )
        self.shed = Counter(
            "opencue_gateway_shed_requests",
            "Requests refused with 503 because too many were in flight.",
            registry=self.registry,
        )
        self.stale_reads = Counter(
            "opencue_gateway_stale_reads",
            "Reads answered with an earlier answer because Cuebot was unavailable or too "
            "slow (stale-if-error).",
            registry=self.registry,
        )
        self.batch_calls = Counter(
            "opencue_gateway_batch_calls",
            "Cuebot calls sent by by-id read batching (each answers one or more requests).",
            ["rpc"],
            registry=self.registry,
        )
        self.batched_reads = Counter(
            "opencue_gateway_batched_reads",
            "By-id reads answered by a Cuebot call shared with other requests.",
            ["rpc"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "opencue_gateway_batch_size",
            "Requests answered by one batched Cuebot call.",
            ["rpc"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "opencue_gateway_rate_limited_requests",
            "Requests refused with 429 by the rate limiter.",
            registry=self.registry,
        )
        self.facility_requests = Counter(
            "opencue_gateway_facility_requests",
            "HTTP requests answered, by facility (empty: none was chosen) and HTTP status.",
            ["facility", "status"],
            registry=self.registry,
        )
        self._facility_children: dict[tuple[str, int], Counter] = {}
        self.replica_up = Gauge(
            "opencue_gateway_cuebot_replica_up",
            "1 while a Cuebot replica answers the readiness probe, else 0.",
            ["facility", "replica"],
            registry=self.registry,
        )

    def count_in_flight(self, count: Callable[[], float]) -> None:
        """Report C{count()} as the in-flight gauge: read when scraped, free per request."""
        self.in_flight.set_function(count)

    def observe(self, ctx: RequestContext, status: int, duration: float) -> None:
        """Record one finished request."""
        rpc = ctx.rpc or ""
        found = self._per_route.get((rpc, status))
        if found is None:
            # prometheus_client's labels() takes a lock and builds a key on every call;
            # the (route, status) pairs are few, so their children are kept.
            found = (self.requests.labels(rpc, str(status)), self.latency.labels(rpc))
            self._per_route[(rpc, status)] = found
        count, latency = found
        count.inc()
        latency.observe(duration)
        if ctx.upstream_error is not None:
            self.upstream_errors.labels(ctx.upstream_error).inc()
        if ctx.auth_failure is not None:
            self.auth_failures.labels(ctx.auth_failure).inc()
        key = (ctx.facility, status)
        child = self._facility_children.get(key)
        if child is None:
            child = self._facility_children[key] = self.facility_requests.labels(
                ctx.facility, str(status)
            )
        child.inc()

    def refused_unrouted(self, status: int) -> None:
        """
        Count an answer given before any route was chosen (the raw 413). No route label:
        the path is the client's, and labels must stay bounded.
        """
        self.requests.labels("", str(status)).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
