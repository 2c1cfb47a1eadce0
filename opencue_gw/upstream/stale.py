# -*- test-case-name: tests.test_stale -*-
"""
C{--stale-if-error}: answer a read with its last good answer while Cuebot is away.

RFC 5861's stale-if-error for the gateway. A Cuebot restart takes seconds; without this,
every poll in that window fails and OpenCue's web client drops the rows of its job table
at the first failed refresh, never to show them again. With it, a read that fails with
UNAVAILABLE or DEADLINE_EXCEEDED is answered with the last good answer to the same read,
if that answer is younger than the configured age, marked with its age so the API can
say it is stale (C{Warning: 110}, C{Age}).

Only reads are remembered and answered this way; a mutation's failure always reaches
the client, as does the failure of a read never answered before. The memory kept is
bounded by a byte budget over the answers' wire sizes, least recently used out first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.protobuf.message import Message
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.upstream.cuebot import wire_size
from opencue_gw.upstream.rpcs import Rpc, read_key

__all__ = ["STALE_CODES", "MemoryStaleStore", "StaleIfError", "StaleReply", "StaleStore"]

# UNAVAILABLE and DEADLINE_EXCEEDED: Cuebot is away or too slow, not "the answer is no".
STALE_CODES = frozenset({14, 4})
# Metadata the gateway adds per request; it does not make two reads different.


class StaleReply:
    """
    An earlier answer given again: the attributes of an upstream reply (message,
    headers, wire_size) plus C{stale_age}, the seconds since Cuebot gave it.
    """

    __slots__ = ("headers", "message", "stale_age", "wire_size")

    def __init__(
        self,
        message: Message,
        headers: Sequence[tuple[str, str | bytes]],
        wire_size: int,
        stale_age: float,
    ) -> None:
        self.message = message
        self.headers = headers
        self.wire_size = wire_size
        self.stale_age = stale_age


class _Kept:
    """A good answer as remembered: no encoded JSON, only what Cuebot sent."""

    __slots__ = ("at", "headers", "message", "wire_size")

    def __init__(
        self, message: Message, headers: Sequence[tuple[str, str | bytes]], size: int, at: float
    ) -> None:
        self.message = message
        self.headers = headers
        self.wire_size = size
        self.at = at


class StaleStore(Protocol):
    """
    Where the last good answers are kept: in this process (L{MemoryStaleStore}), or
    shared by every instance (L{opencue_gw.shared.stale.SharedStaleStore}).
    """

    def keep(self, key: tuple[Any, ...], rpc: Rpc, reply: Any, at: float) -> None:
        """Remember C{reply} (message, headers, wire size), answered at C{at}."""

    def find(self, key: tuple[Any, ...], rpc: Rpc) -> Deferred[tuple[Any, float] | None]:
        """The last good answer to C{key} and when it was given, if kept."""
        ...

    def forget(self, key: tuple[Any, ...]) -> None:
        """Drop C{key}'s answer (too old to give)."""


class MemoryStaleStore:
    """The answers in this process, within a byte budget, least recently used out first."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._kept: OrderedDict[tuple[Any, ...], _Kept] = OrderedDict()
        self.kept_bytes = 0

    def keep(self, key: tuple[Any, ...], rpc: Rpc, reply: Any, at: float) -> None:
        """Remember C{reply}, unless it alone is over the budget."""
        size = wire_size(reply)
        self.forget(key)
        if size <= self._max_bytes:
            self._kept[key] = _Kept(reply.message, tuple(reply.headers), size, at)
            self.kept_bytes += size
            while self.kept_bytes > self._max_bytes:
                _, dropped = self._kept.popitem(last=False)
                self.kept_bytes -= dropped.wire_size

    def find(self, key: tuple[Any, ...], rpc: Rpc) -> Deferred[tuple[Any, float] | None]:
        """The kept answer (now the most recently used), at once."""
        kept = self._kept.get(key)
        if kept is None:
            return succeed(None)
        self._kept.move_to_end(key)
        return succeed((kept, kept.at))

    def forget(self, key: tuple[Any, ...]) -> None:
        """Drop C{key}'s answer."""
        old = self._kept.pop(key, None)
        if old is not None:
            self.kept_bytes -= old.wire_size


class StaleIfError:
    """
    Wraps an upstream (same C{call} as the Cuebot client): remembers the last good
    answer of every read, and gives it back, marked stale, when the same read fails
    because Cuebot is unavailable, within C{max_age} seconds of when it was answered.

    C{on_stale(rpc, age)} is called once per stale answer (for a metrics counter).
    C{store} keeps the answers (by default in this process, within C{max_bytes}).
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        upstream: Any,
        clock: IReactorTime,
        *,
        max_age: float,
        max_bytes: int = 64 * 1024 * 1024,
        on_stale: Callable[[Rpc, float], None] | None = None,
        store: StaleStore | None = None,
    ) -> None:
        self._upstream = upstream
        self._clock = clock
        self._max_age = max_age
        self._on_stale = on_stale
        self.store: StaleStore = store if store is not None else MemoryStaleStore(max_bytes)

    @property
    def kept_bytes(self) -> int:
        """The bytes this process keeps (the memory store's; 0 for another store)."""
        return int(getattr(self.store, "kept_bytes", 0))

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Call upstream; a read's good answer is remembered, its failure maybe covered."""
        d = self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        if not rpc.is_read:
            return d
        key = read_key(rpc, request, metadata)
        d.addCallbacks(self._remember, self._cover, callbackArgs=(key, rpc), errbackArgs=(key, rpc))
        return d

    def _remember(self, reply: Any, key: tuple[Any, ...], rpc: Rpc) -> Any:
        if getattr(reply, "stale_age", None) is None:
            self.store.keep(key, rpc, reply, self._clock.seconds())
        return reply

    def _cover(self, failure: Failure, key: tuple[Any, ...], rpc: Rpc) -> Any:
        error = failure.value
        if not isinstance(error, GatewayError) or error.code not in STALE_CODES:
            return failure
        # The memory store answers at once; a shared one within its bounded wait.
        return self.store.find(key, rpc).addCallback(self._found, failure, key, rpc)

    def _found(
        self, found: tuple[Any, float] | None, failure: Failure, key: tuple[Any, ...], rpc: Rpc
    ) -> Any:
        if found is None:
            return failure
        kept, at = found
        age = self._clock.seconds() - at
        if age > self._max_age:
            self.store.forget(key)
            return failure
        error = failure.value
        self.log.info(
            "Answered {rpc} with the answer of {age:.1f}s ago: Cuebot failed with {code}",
            rpc=rpc.path,
            age=age,
            code=error.code,
            stale=True,
        )
        if self._on_stale is not None:
            self._on_stale(rpc, age)
        return StaleReply(kept.message, kept.headers, wire_size(kept), age)
