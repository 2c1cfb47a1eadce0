# -*- test-case-name: tests.test_coalesce -*-
"""
Sharing read calls: identical reads in flight share one Cuebot call, and an optional
short cache lets many pollers share one answer.

CueWeb polls C{GetJobs {ids:[id]}} for every monitored job, in every open tab, every
five seconds; without sharing, Cuebot answers the same question many times a second.
Only reads (Get*, Find*, Is*) are shared, keyed by the method, the request's canonical
bytes and the caller-supplied metadata; mutations always go through on their own.
Authorization has already been decided before a call reaches this layer, so callers
that share a call were all allowed to make it.

The shared answer carries a memo of its JSON, so a hundred waiters cost one encoding,
not a hundred, small or large.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from opencue_gw.errors import Code, GatewayError
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.upstream.cuebot import wire_size
from opencue_gw.upstream.rpcs import Rpc, read_key

__all__ = ["CoalescingUpstream", "SharedReply"]

# Answers above this size are shared while in flight but not kept in the cache.
_MAX_CACHED_BYTES = 64 * 1024 * 1024
_MAX_CACHED_ENTRIES = 4096
# The cache as a whole never holds more than this much protobuf; with the JSON each
# entry may also keep, memory is a small multiple of it.
_MAX_CACHE_BYTES = 64 * 1024 * 1024


class SharedReply:
    """
    An upstream answer several requests may use. Its C{shared_json} slot is where the
    HTTP side keeps the answer's JSON (or the encoding under way), so it is encoded
    once, however many requests wait for it.
    """

    __slots__ = ("headers", "message", "shared_json", "stale_age", "wire_size")

    def __init__(
        self,
        message: Message,
        headers: Sequence[tuple[str, str | bytes]],
        wire_size: int = -1,
        stale_age: float | None = None,
    ) -> None:
        self.message = message
        self.headers = headers
        self.wire_size = wire_size
        self.stale_age = stale_age
        self.shared_json: Any = None


class _InFlight:
    """One upstream call and the requests waiting on it."""

    __slots__ = ("call", "waiters")

    def __init__(self, call: Deferred[Any]) -> None:
        self.call = call
        self.waiters: list[Deferred[SharedReply]] = []


class CoalescingUpstream:
    """
    Wraps the Cuebot client: reads are shared, everything else passes straight through.

    C{cache_seconds} of 0 disables the cache; sharing of calls in flight is always on.
    """

    def __init__(
        self,
        upstream: Any,
        clock: IReactorTime,
        *,
        cache_seconds: float = 0.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._upstream = upstream
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._metrics = metrics
        self._in_flight: dict[tuple[Any, ...], _InFlight] = {}
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, SharedReply, int]] = OrderedDict()
        self._cache_bytes = 0

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Answer a read from the cache or a call in flight if possible; else call."""
        if not rpc.is_read:
            return self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        key = read_key(rpc, request, metadata)
        cached = self._cached(key)
        if cached is not None:
            if self._metrics is not None:
                self._metrics.cached_reads.inc()
            d: Deferred[SharedReply] = Deferred()
            d.callback(cached)
            return d
        entry = self._in_flight.get(key)
        if entry is not None:
            if self._metrics is not None:
                self._metrics.coalesced_reads.inc()
            return self._wait(entry, timeout)
        call = self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        entry = _InFlight(call)
        self._in_flight[key] = entry
        # The waiter exists before the call can settle, even if it settles at once. The
        # call carries this caller's own deadline, so its waiter needs no timer.
        waiter = self._wait(entry, None)
        call.addBoth(self._settled, key, entry)
        return waiter

    def _wait(self, entry: _InFlight, timeout: float | None) -> Deferred[SharedReply]:
        def cancel(waiter: Deferred[SharedReply]) -> None:
            # One waiter leaving must not cancel the others' call; the last one does.
            if waiter in entry.waiters:
                entry.waiters.remove(waiter)
            if not entry.waiters and not entry.call.called:
                entry.call.cancel()

        waiter: Deferred[SharedReply] = Deferred(cancel)
        entry.waiters.append(waiter)
        if timeout is not None:
            # A caller that joins may have a shorter deadline than the call it joined.
            timer = self._clock.callLater(timeout, self._expire, entry, waiter)
            waiter.addBoth(_stop_timer, timer)
        return waiter

    def _expire(self, entry: _InFlight, waiter: Deferred[SharedReply]) -> None:
        if waiter in entry.waiters and not waiter.called:
            entry.waiters.remove(waiter)
            waiter.errback(GatewayError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            if not entry.waiters and not entry.call.called:
                entry.call.cancel()

    def _settled(self, result: Any, key: tuple[Any, ...], entry: _InFlight) -> None:
        if self._in_flight.get(key) is entry:
            del self._in_flight[key]
        waiters, entry.waiters = entry.waiters, []
        if isinstance(result, Failure):
            if not result.check(CancelledError):
                for waiter in waiters:
                    waiter.errback(result)
            return None
        stale_age = getattr(result, "stale_age", None)
        shared = SharedReply(result.message, tuple(result.headers), wire_size(result), stale_age)
        if self._cache_seconds > 0 and stale_age is None:
            size = shared.wire_size
            if size <= _MAX_CACHED_BYTES:
                self._remember(key, shared, size)
        for waiter in waiters:
            waiter.callback(shared)
        return None

    def _cached(self, key: tuple[Any, ...]) -> SharedReply | None:
        found = self._cache.get(key)
        if found is None:
            return None
        expires, shared, size = found
        if expires <= self._clock.seconds():
            del self._cache[key]
            self._cache_bytes -= size
            return None
        return shared

    def _remember(self, key: tuple[Any, ...], shared: SharedReply, size: int) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= old[2]
        self._cache[key] = (self._clock.seconds() + self._cache_seconds, shared, size)
        self._cache_bytes += size
        while len(self._cache) > _MAX_CACHED_ENTRIES or self._cache_bytes > _MAX_CACHE_BYTES:
            _, (_, _, dropped) = self._cache.popitem(last=False)
            self._cache_bytes -= dropped


def _stop_timer(result: Any, timer: IDelayedCall) -> Any:
    if timer.active():
        timer.cancel()
    return result
