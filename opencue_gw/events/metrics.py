# -*- test-case-name: tests.test_events -*-
"""
Prometheus metrics of the event stream, on the gateway's registry.

Labels are bounded: the scope kind (four values), the event type (four), the refusal
reason (two) and the gRPC code name.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EventMetrics"]


class EventMetrics:
    """Subscribers, polls, events sent, and subscribers dropped or refused."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.subscribers = Gauge(
            "opencue_gateway_event_subscribers",
            "Event streams and job waits open right now.",
            registry=self.registry,
        )
        self.scopes = Gauge(
            "opencue_gateway_event_scopes",
            "Scopes being polled right now (one poll each per interval).",
            registry=self.registry,
        )
        self.polls = Counter(
            "opencue_gateway_event_polls",
            "Polls of Cuebot for the event stream, by scope kind (jobs, job, detail, hosts).",
            ["scope"],
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "opencue_gateway_event_poll_errors",
            "Event polls that failed, by gRPC code.",
            ["code"],
            registry=self.registry,
        )
        self.events = Counter(
            "opencue_gateway_events",
            "Events produced by the pollers (each once, however many receive it), by type.",
            ["type"],
            registry=self.registry,
        )
        self.fanout = Histogram(
            "opencue_gateway_event_fanout_seconds",
            "Time to hand one poll's events to every subscriber of its scope (the gateway's "
            "share of an event's delay; the kernel's sending comes after).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.dropped = Counter(
            "opencue_gateway_event_dropped_subscribers",
            "Event streams ended because the client read too slowly.",
            registry=self.registry,
        )
        self.refused = Counter(
            "opencue_gateway_event_refused_subscribers",
            "Event subscriptions refused, by limit (caller: 429, total: 503).",
            ["limit"],
            registry=self.registry,
        )

    def count(self, subscribers: Callable[[], float], scopes: Callable[[], float]) -> None:
        """Report the hub's live counts when scraped."""
        self.subscribers.set_function(subscribers)
        self.scopes.set_function(scopes)
