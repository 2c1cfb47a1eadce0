# -*- test-case-name: tests.test_health -*-
"""
Prometheus metrics for the gateway, on a registry of its own.

Everything about one request is recorded once, when its response is finished (the
edge calls L{GatewayMetrics.observe}), from the request context the layers filled in.
Labels are bounded: the RPC label is a route from the descriptor table or empty, never
a raw client-supplied path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from opencue_gw.context import RequestContext

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

# Latency buckets from sub-millisecond (cached reads) to the default 30 s deadline.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
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
        self.rate_limited = Counter(
            "opencue_gateway_rate_limited_requests",
            "Requests refused with 429 by the rate limiter.",
            registry=self.registry,
        )

    def observe(self, ctx: RequestContext, status: int, duration: float) -> None:
        """Record one finished request."""
        rpc = ctx.rpc or ""
        self.requests.labels(rpc, str(status)).inc()
        self.latency.labels(rpc).observe(duration)
        if ctx.upstream_error is not None:
            self.upstream_errors.labels(ctx.upstream_error).inc()
        if ctx.auth_failure is not None:
            self.auth_failures.labels(ctx.auth_failure).inc()

    def refused_unrouted(self, status: int) -> None:
        """
        Count an answer given before any route was chosen (the raw 413). No route label:
        the path is the client's, and labels must stay bounded.
        """
        self.requests.labels("", str(status)).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
