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

The shared answer also carries its JSON once encoded, so a hundred waiters cost one
encoding, not a hundred.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.metrics import GatewayMetrics
from opencue_gw.rpcs import Rpc

__all__ = ["CoalescingUpstream", "SharedReply", "wire_size"]

# Metadata the gateway adds per request; it does not make two reads different.
_PER_REQUEST_KEYS = frozenset({"x-request-id", "x-forwarded-for", "x-forwarded-host"})
# Answers above this size are shared while in flight but not kept in the cache.
_MAX_CACHED_BYTES = 64 * 1024 * 1024
_MAX_CACHED_ENTRIES = 4096
# The cache as a whole never holds more than this much protobuf; with the JSON each
# entry may also keep, memory is a small multiple of it.
_MAX_CACHE_BYTES = 64 * 1024 * 1024


class SharedReply:
    """An upstream answer several requests may use; encodes its JSON at most once."""

    __slots__ = ("_json", "headers", "message", "wire_size")

    def __init__(
        self, message: Message, headers: Sequence[tuple[str, str | bytes]], wire_size: int = -1
    ) -> None:
        self.message = message
        self.headers = headers
        self.wire_size = wire_size
        self._json: bytes | None = None

    def json_or_none(self) -> bytes | None:
        """The encoded body if some waiter already produced it."""
        return self._json

    def remember_json(self, body: bytes) -> None:
        """Keep the encoded body for the other waiters."""
        self._json = body


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
        key = _key(rpc, request, metadata)
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
        # The waiter exists before the call can settle, even if it settles at once.
        waiter = self._wait(entry, timeout)
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
            # A later caller may have a shorter deadline than the call it joined.
            timer = self._clock.callLater(timeout, self._expire, entry, waiter)
            waiter.addBoth(_stop_timer, timer)
        return waiter

    def _expire(self, entry: _InFlight, waiter: Deferred[SharedReply]) -> None:
        if waiter in entry.waiters and not waiter.called:
            entry.waiters.remove(waiter)
            waiter.errback(GatewayError(4, "Deadline Exceeded"))
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
        shared = SharedReply(result.message, tuple(result.headers), wire_size(result))
        if self._cache_seconds > 0:
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


def wire_size(reply: Any) -> int:
    """The answer's protobuf size: as received when the upstream says, else computed."""
    size = getattr(reply, "wire_size", -1)
    return size if size >= 0 else reply.message.ByteSize()


def _stop_timer(result: Any, timer: IDelayedCall) -> Any:
    if timer.active():
        timer.cancel()
    return result


def _key(
    rpc: Rpc, request: Message, metadata: Sequence[tuple[str, str | bytes]]
) -> tuple[Any, ...]:
    extra = tuple(sorted((k, v) for k, v in metadata if k not in _PER_REQUEST_KEYS))
    return (rpc.path, request.SerializeToString(deterministic=True), extra)
