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

With C{shared} (L{opencue_gw.shared.events.SharedEvents}, from C{--redis}) one instance
polls each scope: every watcher's scope keeps attempting the scope's lease in Redis on
its own timer, three times an interval with a time to live of two thirds of one
(L{opencue_gw.events.scopes.Lease}), apart from the polls: a slow poll does not lose the
lease, and when its holder dies another instance takes it, and polls, within one
interval (one that stops gives it up, and is replaced within a third). At each poll
tick the scope asks what the last attempt said, without a call to Redis: the holder
polls and publishes its events (the publish script checks the lease again), and every
instance, the holder included, fans out the batches it hears on the scope's channel.
So each watching instance makes three lease calls per scope and interval, and the
holder one publish more when something changed. An instance that does not hold the
lease polls once, when the scope starts there, for the snapshot its new subscribers
need, and keeps that snapshot current from the batches (so that, if it takes the lease
over, its first diff, made at once, loses no change). While Redis is away, or this
instance is not listening on the channel, it polls for itself as without Redis.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.events.diff import Snapshot, diff
from opencue_gw.events.metrics import EventMetrics
from opencue_gw.events.model import Event, EventFilter, Item, ScopeKey
from opencue_gw.events.scopes import Lease, Scope, Upstream, fetcher_for
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.store import SharedStoreUnavailable
from opencue_gw.upstream.rpcs import Rpc

if TYPE_CHECKING:
    from opencue_gw.shared.events import SharedEvents

__all__ = ["EventHub", "EventSettings", "Sink", "Subscription"]

# Stopped scopes whose last snapshot is kept, so a reconnecting client misses nothing.
_RETAINED_SCOPES = 256
# Batches a follower keeps while its snapshot poll has not answered yet.
_MAX_WAITING = 64


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
        shared: SharedEvents | None = None,
    ) -> None:
        self.settings = settings if settings is not None else EventSettings()
        self.shared = shared
        self._releasing: list[Deferred[None]] = []
        self._errors_told: set[ScopeKey] = set()
        if shared is not None:
            shared.handler = self._heard
            shared.error_handler = self._heard_error
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
                if self.shared is not None:
                    self.shared.unwatch(key)
                if scope.lease is not None:
                    self._releasing = [d for d in self._releasing if not d.called]
                    self._releasing.append(scope.lease.release())
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

    def close(self, message: str = "the gateway is shutting down") -> Deferred[None]:
        """
        End every subscription with a C{shutdown} event and stop every poll. Fires once
        the leases this instance held are given up (within Redis's bounded wait), so
        that another instance takes its scopes over at its next attempt (a third of an
        interval).
        """
        self.closed = True
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
            sub.sink.close("shutdown", {"message": message})
        if self.shared is None:
            return succeed(None)
        releasing, self._releasing = self._releasing, []
        self.shared.stop()
        done = DeferredList(releasing, consumeErrors=True)
        return done.addCallback(lambda _: None)

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
        gate = lease = None
        if self.shared is not None:
            gate = self._gate
            lease = Lease(
                key, self.shared, self.clock, self.settings.interval, lambda: self.last_id
            )
        scope = Scope(
            key, fetch, self.clock, self.settings.interval, self._polled, self._failed, gate, lease
        )
        self._scopes[key] = scope
        if self.shared is not None:
            self.shared.watch(key)
        scope.snapshot = self._retained.pop(key, None)
        return scope

    def _polled(self, scope: Scope, new: Snapshot, departed: dict[str, Item | None]) -> None:
        started = time.perf_counter()  # a measurement of CPU time, not a schedule
        self._fan_out(scope, new, departed)
        self.metrics.fanout.observe(time.perf_counter() - started)

    def _fan_out(self, scope: Scope, new: Snapshot, departed: dict[str, Item | None]) -> None:
        self.metrics.polls.labels(scope.key[0]).inc()
        old = scope.snapshot
        waiting, scope.waiting = scope.waiting, []
        if scope.role == "follower":
            # The snapshot poll of an instance that does not hold the lease: no events
            # (the holder publishes them); every subscriber starts from this state.
            for events, gone in waiting:
                new = _applied(new, events, gone)
            scope.snapshot = new
            scope.fresh = True
            for sub in scope.subscribers:
                sub.primed.discard(scope.key)
            self._dispatch(scope, [])
            return
        events = diff(old, new, departed) if old is not None else []
        scope.snapshot = new
        scope.fresh = True
        for event in events:
            self.metrics.events.labels(event.type).inc()
        if scope.role == "leader" and self.shared is not None and scope.key in self._errors_told:
            self._errors_told.discard(scope.key)
            self.shared.publish_error(scope.key, None)
        if scope.role == "leader" and events and self.shared is not None:
            gone = [item_id for item_id in old or {} if item_id not in new]
            self._publish(scope, events, gone)
            # Subscribers without a snapshot yet get it now; the events come back on the
            # scope's channel, in the order and with the ids every instance sees.
            self._dispatch(scope, [])
            return
        self._number(events)
        self._dispatch(scope, events)

    def _number(self, events: Sequence[Event]) -> None:
        for event in events:
            self.last_id += 1
            event.id = self.last_id
            self._history.append(event)

    def _dispatch(self, scope: Scope, events: Sequence[Event]) -> None:
        # Subscribers with the same filter (the usual case: a show's watchers) share one
        # piece of bytes, built once; each gets a single write.
        batches: _Batches = {}
        for sub in list(scope.subscribers):
            if not sub.active:
                continue
            if scope.key not in sub.primed:
                if scope.fresh:
                    self._send_snapshot(scope, sub)
            elif events:
                _deliver(sub, events, batches)

    # --- sharing through Redis

    def _gate(self, scope: Scope) -> Deferred[bool]:
        """
        Whether this instance polls C{scope} this interval, and in which role: from
        what the lease's last attempt said (the scope's first poll waits for one).
        """
        lease = scope.lease
        assert lease is not None
        return lease.decided().addCallback(lambda _: self._role(scope, lease))

    def _role(self, scope: Scope, lease: Lease) -> bool:
        shared = self.shared
        assert shared is not None
        if not shared.store.up or not lease.available:
            scope.role = "local"
            return True
        if lease.held:
            scope.role = "leader"
            return True
        if shared.listening(scope.key):
            scope.role = "follower"
            return not scope.fresh
        scope.role = "local"
        return True

    def _publish(self, scope: Scope, events: list[Event], gone: list[str]) -> None:
        shared = self.shared
        assert shared is not None and scope.lease is not None
        ttl = scope.lease.ttl
        key = scope.key
        listening = shared.listening(key)
        d = shared.publish(key, events, gone, self.last_id, ttl)

        def published(first: int | None) -> None:
            if first is None:
                # The lease went to another instance meanwhile: it reports these changes
                # from its own snapshot, which had every batch this one published.
                scope.role = "follower"
                return
            if not listening:
                self._heard(key, shared.owner, events, gone, first)

        def unavailable(failure: Failure) -> None:
            if failure.check(SharedStoreUnavailable) is None:
                self.log.failure("Publishing events failed", failure)
            # Not shared: this instance's subscribers still get them.
            current = self._scopes.get(key)
            if current is not None:
                self._number(events)
                self._dispatch(current, events)

        d.addCallbacks(published, unavailable)

    def _heard(
        self,
        key: ScopeKey,
        owner: str,
        events: list[Event],
        gone: list[str],
        first: int | None = None,
    ) -> None:
        """A batch published on C{key}'s channel (by any instance, this one included)."""
        scope = self._scopes.get(key)
        if scope is None:
            return
        if first is not None:
            for index, event in enumerate(events):
                event.id = first + index
        if events and events[0].id <= self.last_id:
            # This instance numbered events itself past the shared counter (while Redis
            # was away): number these after them, so its clients' ids still increase.
            self._number(events)
        else:
            for event in events:
                self._history.append(event)
            if events:
                self.last_id = events[-1].id
        own = self.shared is not None and owner == self.shared.owner
        if not own:
            # The holder's snapshot moved on: this one follows, for new subscribers and
            # for the diff this instance makes if it takes the lease over.
            if not scope.fresh:
                scope.waiting.append((events, gone))
                # Bounded: a follower whose snapshot poll keeps failing keeps the latest.
                del scope.waiting[:-_MAX_WAITING]
            if scope.snapshot is not None:
                scope.snapshot = _applied(scope.snapshot, events, gone)
        self._dispatch(scope, events)

    def _failed(self, scope: Scope, error: GatewayError) -> None:
        self.metrics.polls.labels(scope.key[0]).inc()
        self.metrics.poll_errors.labels(error.code_name).inc()
        if not self._tell_error(scope, error):
            return
        self.log.warn(
            "Event poll of {scope} failed: {error}", scope=":".join(scope.key), error=str(error)
        )
        if scope.role == "leader" and self.shared is not None:
            # The other instances' subscribers hear of it too, and when it is over.
            self.shared.publish_error(scope.key, error)
            self._errors_told.add(scope.key)

    def _tell_error(self, scope: Scope, error: GatewayError) -> bool:
        """Tell C{scope}'s subscribers of C{error} unless it is the one they know."""
        before = scope.error
        scope.error = error
        if before is not None and (before.code, before.message) == (error.code, error.message):
            return False
        for sub in list(scope.subscribers):
            if sub.active:
                sub.sink.failed(scope.key, error)
        return True

    def _heard_error(self, key: ScopeKey, owner: str, error: GatewayError | None) -> None:
        """The lease holder's poll of C{key} failed (or, with None, works again)."""
        scope = self._scopes.get(key)
        if scope is None or (self.shared is not None and owner == self.shared.owner):
            return
        if error is None:
            scope.error = None
        else:
            self._tell_error(scope, error)

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


def _applied(snapshot: Snapshot, events: Sequence[Event], gone: Sequence[str]) -> Snapshot:
    """C{snapshot} after a published batch: changed items replaced, gone ones removed."""
    new = dict(snapshot)
    for event in events:
        new[event.item.id] = event.item
    for item_id in gone:
        new.pop(item_id, None)
    return new
