# -*- test-case-name: tests.integration.test_redis_stale -*-
"""
C{--stale-if-error} answers shared by every instance: the last good answer to each read
kept in Redis, so an instance can cover a failed read with an answer another instance
got (after a rolling restart, or when the load balancer moved a poller).

The answers live in Redis for C{max_age} (PX), so Redis forgets them when they could no
longer be given; an answer larger than C{max_bytes} is not shared. Every answer is kept
in this process's own store too (the C{local} store), which answers whenever Redis is
unavailable or slow, or does not have the read.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.reads import decode_answer, digest_of, encode_answer
from opencue_gw.shared.store import SharedStateMetrics, SharedStore, SharedStoreUnavailable
from opencue_gw.upstream.cuebot import wire_size
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["SharedStaleStore"]

_AT = struct.Struct(">d")


class SharedStaleStore:
    """
    The stale-answer store of L{opencue_gw.upstream.stale.StaleIfError} (C{keep}, C{find},
    C{forget}) in Redis, over C{local} (the in-process store).
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        store: SharedStore,
        local: Any,
        *,
        max_age: float,
        max_bytes: int = 64 * 1024 * 1024,
        prefix: str = "ocgw:",
        metrics: SharedStateMetrics | None = None,
    ) -> None:
        self._store = store
        self._local = local
        self._max_age_ms = max(1, int(max_age * 1000))
        self._max_bytes = max_bytes
        self._prefix = prefix
        self._metrics = metrics if metrics is not None else store.metrics

    def _key(self, key: tuple[Any, ...]) -> bytes:
        return f"{self._prefix}s:{{{digest_of(key)}}}".encode()

    def keep(self, key: tuple[Any, ...], rpc: Rpc, reply: Any, at: float) -> None:
        """Keep C{reply} here, and in Redis for every instance (nobody waits for that)."""
        self._local.keep(key, rpc, reply, at)
        if not self._store.up or wire_size(reply) > self._max_bytes:
            return
        data = _AT.pack(at) + encode_answer(reply)
        d = self._store.command("SET", self._key(key), data, "PX", self._max_age_ms)
        d.addErrback(self._not_shared)

    def find(self, key: tuple[Any, ...], rpc: Rpc) -> Deferred[tuple[Any, float] | None]:
        """The answer in Redis, else (or without Redis) the one kept here."""
        if not self._store.up:
            return self._locally(key, rpc)
        d = self._store.command("GET", self._key(key))

        def found(data: bytes | None) -> Any:
            if data is not None and len(data) > _AT.size:
                (at,) = _AT.unpack_from(data)
                reply = decode_answer(data[_AT.size :], rpc)
                if reply is not None and not isinstance(reply, Exception):
                    return (reply, at)
            return self._local.find(key, rpc)

        def unavailable(failure: Failure) -> Any:
            failure.trap(SharedStoreUnavailable)
            return self._locally(key, rpc)

        d.addCallbacks(found, unavailable)
        return d

    def forget(self, key: tuple[Any, ...]) -> None:
        """Drop the answer kept here; Redis drops its own copy when its PX ends."""
        self._local.forget(key)

    def _locally(self, key: tuple[Any, ...], rpc: Rpc) -> Deferred[tuple[Any, float] | None]:
        if self._metrics is not None:
            self._metrics.fallbacks.labels("stale").inc()
        d: Deferred[tuple[Any, float] | None] = self._local.find(key, rpc)
        return d

    def _not_shared(self, failure: Failure) -> None:
        if not failure.check(SharedStoreUnavailable):
            self.log.failure("Could not keep a stale answer in Redis", failure)
