# -*- test-case-name: tests.test_events -*-
"""
One poll, many watchers: the hub that owns the scopes, the history and the subscribers.

A subscriber names what it wants (an L{EventFilter}); the hub starts a L{Scope} for each
poll that needs and no one else started, and stops it when its last subscriber leaves.
Each poll's answer is diffed against the previous one once; the resulting events get
ids, go into a bounded history (for C{Last-Event-ID}) and are handed to every
subscriber of the scope whose filter matches. A subscriber that joins a scope already
polled gets its current state first, as C{snapshot} events.

Sinks (an SSE stream, a job wait) decide how to write; the hub never buffers for them.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from opencue_gw.errors import GatewayError
from opencue_gw.events.diff import Snapshot, diff
from opencue_gw.events.metrics import EventMetrics
from opencue_gw.events.model import Event, EventFilter, Item, ScopeKey
from opencue_gw.events.scopes import Scope, Upstream, fetcher_for
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["EventHub", "EventSettings", "Sink", "Subscription"]

# Stopped scopes whose last snapshot is kept, so a reconnecting client misses nothing.
_RETAINED_SCOPES = 256


@dataclass(frozen=True)
class EventSettings:
    """The event stream's settings (see the report for their option names)."""

    interval: float = 2.0
    heartbeat: float = 15.0
    history: int = 5000
    max_subscribers: int = 2000
    max_per_caller: int = 20
    max_buffer_bytes: int = 1024 * 1024
    poll_timeout: float = 10.0
    max_frame_pages: int = 5
    max_wait: float = 3600.0


class Sink(Protocol):
    """Where one subscriber's events go."""

    def deliver(self, events: Sequence[Event], wire: bytes) -> None:
        """Events for this subscriber (in order), and their SSE form in one piece."""

    def failed(self, key: ScopeKey, error: GatewayError) -> None:
        """A poll of one of its scopes failed (told once per distinct error)."""

    def ping(self) -> None:
        """Heartbeat time."""

    def close(self, name: str, payload: Mapping[str, Any]) -> None:
        """The hub ends the subscription (C{shutdown}); the sink says so and finishes."""


_Batches = dict[EventFilter, tuple[list[Event], bytes]]


def _deliver(sub: Subscription, events: Sequence[Event], batches: _Batches) -> None:
    """Hand C{sub} the C{events} its filter matches, built once per distinct filter."""
    batch = batches.get(sub.filter)
    if batch is None:
        matched = [e for e in events if sub.filter.matches(e.item)]
        batch = batches[sub.filter] = (matched, b"".join(e.wire() for e in matched))
    if batch[0] and sub.active:
        sub.sink.deliver(batch[0], batch[1])


class Subscription:
    """One subscriber as the hub knows it."""

    def __init__(self, sink: Sink, event_filter: EventFilter, caller: str) -> None:
        self.sink = sink
        self.filter = event_filter
        self.caller = caller
        self.scopes = event_filter.scopes()
        self.primed: set[ScopeKey] = set()
        self.active = True


class EventHub:
    """The scopes, the history and the subscribers of one gateway process."""

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        upstream: Upstream,
        rpcs: Mapping[str, Rpc],
        clock: IReactorTime,
        *,
        settings: EventSettings | None = None,
        metrics: EventMetrics | None = None,
    ) -> None:
        self.settings = settings if settings is not None else EventSettings()
        self.metrics = metrics if metrics is not None else EventMetrics()
        self.metrics.count(lambda: len(self._subscribers), lambda: len(self._scopes))
        self._upstream = upstream
        self._rpcs = rpcs
        self.clock = clock
        self._scopes: dict[ScopeKey, Scope] = {}
        self._retained: OrderedDict[ScopeKey, Snapshot] = OrderedDict()
        self._history: deque[Event] = deque(maxlen=self.settings.history)
        # Ids continue across restarts' clocks: a client's id from an earlier process is
        # below this one's first, so it is never mistaken for a recent one.
        self.last_id = int(clock.seconds() * 1000)
        self._subscribers: set[Subscription] = set()
        self._per_caller: Counter[str] = Counter()
        self._heartbeat: IDelayedCall | None = None
        # Each scope's snapshot events, built once for every subscriber joining it.
        self._snapshots: dict[ScopeKey, tuple[int, Snapshot, list[Event], _Batches]] = {}
        self.closed = False

    # --- subscribers ---

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    @property
    def subscriptions(self) -> list[Subscription]:
        """The subscribers attached now."""
        return list(self._subscribers)

    @property
    def scope_keys(self) -> list[ScopeKey]:
        """The scopes being polled."""
        return list(self._scopes)

    def subscribe(
        self,
        sink: Sink,
        event_filter: EventFilter,
        caller: str,
        last_event_id: int | None = None,
    ) -> Subscription:
        """
        Attach C{sink} (after L{admit}'s checks): it receives the history after
        C{last_event_id} if the history still has all of it, else each scope's current
        state once polled, then the changes.
        """
        self.admit(caller)
        sub = Subscription(sink, event_filter, caller)
        self._subscribers.add(sub)
        self._per_caller[caller] += 1
        resuming = last_event_id is not None and self._covers(last_event_id)
        if resuming:
            missed = [e for e in self._history if e.id > last_event_id]  # type: ignore[operator]
            _deliver(sub, missed, {})
        for key in sub.scopes:
            scope = self._scopes.get(key)
            created = scope is None
            if scope is None:
                scope = self._create(key)
            scope.subscribers.add(sub)
            if resuming and scope.snapshot is not None:
                sub.primed.add(key)
            elif scope.fresh:
                self._send_snapshot(scope, sub)
            if scope.error is not None and sub.active:
                sink.failed(key, scope.error)
            if created:
                # Its first poll may answer at once (a cached read): subscribers first.
                scope.start()
        if self._heartbeat is None and sub.active:
            self._heartbeat = self.clock.callLater(self.settings.heartbeat, self._beat)
        return sub

    def admit(self, caller: str) -> None:
        """
        Raise L{GatewayError} if C{caller} may not subscribe now: 503 while shutting
        down or at the total limit, 429 at the caller's own limit.
        """
        settings = self.settings
        if self.closed:
            raise GatewayError.unavailable("the gateway is shutting down")
        if len(self._subscribers) >= settings.max_subscribers:
            self.metrics.refused.labels("total").inc()
            raise GatewayError.unavailable(
                f"the gateway serves its maximum of {settings.max_subscribers} event "
                "subscribers; retry later",
                retry_after=int(max(1, settings.interval * 5)),
            )
        if self._per_caller[caller] >= settings.max_per_caller:
            self.metrics.refused.labels("caller").inc()
            raise GatewayError.rate_limited(
                f"at most {settings.max_per_caller} event subscribers per caller",
                {"Retry-After": str(int(max(1, settings.interval * 5)))},
            )

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach C{sub}; a scope left without subscribers stops polling. Idempotent."""
        if not sub.active:
            return
        sub.active = False
        self._subscribers.discard(sub)
        self._per_caller[sub.caller] -= 1
        if self._per_caller[sub.caller] <= 0:
            del self._per_caller[sub.caller]
        for key in sub.scopes:
            scope = self._scopes.get(key)
            if scope is None:
                continue
            scope.subscribers.discard(sub)
            if not scope.subscribers:
                del self._scopes[key]
                self._snapshots.pop(key, None)
                last = scope.stop()
                if last is not None:
                    self._retained[key] = last
                    self._retained.move_to_end(key)
                    while len(self._retained) > _RETAINED_SCOPES:
                        self._retained.popitem(last=False)
        if not self._subscribers and self._heartbeat is not None:
            if self._heartbeat.active():
                self._heartbeat.cancel()
            self._heartbeat = None

    def close(self, message: str = "the gateway is shutting down") -> None:
        """End every subscription with a C{shutdown} event and stop every poll."""
        self.closed = True
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
            sub.sink.close("shutdown", {"message": message})

    # --- polls ---

    def _covers(self, last_event_id: int) -> bool:
        """Whether every event after C{last_event_id} is still in the history."""
        if last_event_id == self.last_id:
            return True
        if last_event_id > self.last_id or not self._history:
            return False
        return self._history[0].id <= last_event_id + 1

    def _create(self, key: ScopeKey) -> Scope:
        fetch = fetcher_for(
            key,
            self._upstream,
            self._rpcs,
            timeout=self.settings.poll_timeout,
            max_frame_pages=self.settings.max_frame_pages,
        )
        scope = Scope(key, fetch, self.clock, self.settings.interval, self._polled, self._failed)
        self._scopes[key] = scope
        scope.snapshot = self._retained.pop(key, None)
        return scope

    def _polled(self, scope: Scope, new: Snapshot, departed: dict[str, Item | None]) -> None:
        started = time.perf_counter()  # a measurement of CPU time, not a schedule
        self._fan_out(scope, new, departed)
        self.metrics.fanout.observe(time.perf_counter() - started)

    def _fan_out(self, scope: Scope, new: Snapshot, departed: dict[str, Item | None]) -> None:
        self.metrics.polls.labels(scope.key[0]).inc()
        old = scope.snapshot
        events = diff(old, new, departed) if old is not None else []
        scope.snapshot = new
        scope.fresh = True
        for event in events:
            self.last_id += 1
            event.id = self.last_id
            self._history.append(event)
            self.metrics.events.labels(event.type).inc()
        # Subscribers with the same filter (the usual case: a show's watchers) share one
        # piece of bytes, built once; each gets a single write.
        batches: _Batches = {}
        for sub in list(scope.subscribers):
            if not sub.active:
                continue
            if scope.key not in sub.primed:
                self._send_snapshot(scope, sub)
            elif events:
                _deliver(sub, events, batches)

    def _failed(self, scope: Scope, error: GatewayError) -> None:
        self.metrics.polls.labels(scope.key[0]).inc()
        self.metrics.poll_errors.labels(error.code_name).inc()
        before = scope.error
        scope.error = error
        if before is not None and (before.code, before.message) == (error.code, error.message):
            return
        self.log.warn(
            "Event poll of {scope} failed: {error}", scope=":".join(scope.key), error=str(error)
        )
        for sub in list(scope.subscribers):
            if sub.active:
                sub.sink.failed(scope.key, error)

    def _send_snapshot(self, scope: Scope, sub: Subscription) -> None:
        sub.primed.add(scope.key)
        snapshot = scope.snapshot or {}
        cached = self._snapshots.get(scope.key)
        if cached is None or cached[0] != self.last_id or cached[1] is not snapshot:
            events = [Event(item, ("snapshot",), self.last_id) for item in snapshot.values()]
            cached = (self.last_id, snapshot, events, {})
            self._snapshots[scope.key] = cached
        _deliver(sub, cached[2], cached[3])

    def _beat(self) -> None:
        self._heartbeat = None
        for sub in list(self._subscribers):
            if sub.active:
                sub.sink.ping()
        if self._subscribers:
            self._heartbeat = self.clock.callLater(self.settings.heartbeat, self._beat)
