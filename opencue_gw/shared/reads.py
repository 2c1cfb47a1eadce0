# -*- test-case-name: tests.integration.test_redis_reads -*-
"""
Reads shared across gateway instances through Redis: the read cache
(C{--read-cache-ms}) kept in Redis, and single flight (identical reads in flight on
different instances make one Cuebot call).

A read first looks in the shared cache; on a miss it tries to become the one caller of
its read (an atomic C{SET NX PX} on a lock key, in the same script). The holder calls
Cuebot, answers its own client at once, then publishes the answer (and caches it) and
releases the lock. An instance that finds the lock taken polls for the published answer
for at most half of its request's deadline, so that it still has time to call Cuebot
itself when the holder does not publish (it died, or Cuebot is slow); a holder that
gives up releases the lock and its waiters call at once.

Reads are keyed like L{opencue_gw.upstream.rpcs.read_key} (method, canonical request bytes,
caller-supplied metadata), so callers that share an answer were all allowed to make the
call (authorization is decided before this layer). An answer is stored as its protobuf
bytes and the response headers; Cuebot's errors are published to waiters too (never
cached), so waiters get the answer Cuebot would have given them.

Whenever Redis is unavailable or slow, a read goes to the C{fallback} upstream (the
local sharing and cache) instead: never a failed or delayed request over shared state.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import Sequence
from hashlib import sha256
from typing import Any

from google.protobuf.message import DecodeError, Message
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from opencue_gw.errors import GatewayError
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.store import (
    Script,
    SharedStateMetrics,
    SharedStore,
    SharedStoreUnavailable,
)
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, read_key

__all__ = [
    "SharedReads",
    "decode_answer",
    "digest_of",
    "encode_answer",
    "encode_error",
    "shared_read_key",
]

# KEYS: cache, lock. ARGV: flight id, lock ms, "1" to look in the cache.
# {"hit", answer} | {"wait", holder's flight id} | {"fetch", our flight id}
_CLAIM = Script(
    """
if ARGV[3] == '1' then
  local hit = redis.call('GET', KEYS[1])
  if hit then return {'hit', hit} end
end
local holder = redis.call('GET', KEYS[2])
if holder then return {'wait', holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'fetch', ARGV[1]}
"""
)
# KEYS: result, lock, cache. ARGV: flight id, answer, result ms, cache ms (0: not cached).
_FINISH = Script(
    """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[4])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
)
# KEYS: lock. ARGV: flight id. Release only a lock that is still ours.
_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
# KEYS: result, lock. ARGV: holder's flight id.
# {1, answer} | {0} still fetching | {2} the holder gave up without an answer
_POLL = Script(
    """
local answer = redis.call('GET', KEYS[1])
if answer then return {1, answer} end
if redis.call('GET', KEYS[2]) == ARGV[1] then return {0} end
return {2}
"""
)

_MAGIC = b"OGW1"
# A published answer only has to outlive the polls of the waiters that wait for it.
_RESULT_MS = 2000
# The lock of a call without a deadline; otherwise the call's own deadline.
_DEFAULT_LOCK_SECONDS = 30.0
_FIRST_POLL = 0.002
_MAX_POLL = 0.025


def shared_read_key(rpc: Rpc, request: Message, metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """A read's key in Redis: a digest of L{read_key}, as hex."""
    return digest_of(read_key(rpc, request, metadata))


def digest_of(key: tuple[Any, ...]) -> str:
    """The SHA-256 of a L{read_key} tuple, as hex: short, and the same in every instance."""
    path, body, extra = key
    digest = sha256()
    digest.update(path.encode("utf-8") + b"\0")
    digest.update(body + b"\0")
    digest.update(
        json.dumps([[k, *_text_or_b64(v)] for k, v in extra], separators=(",", ":")).encode()
    )
    return digest.hexdigest()


def encode_answer(reply: Any) -> bytes:
    """An upstream answer as stored: a small JSON head (the headers), then the protobuf."""
    head = {"h": [[k, *_text_or_b64(v)] for k, v in reply.headers]}
    return _framed(head, reply.message.SerializeToString())


def encode_error(error: GatewayError) -> bytes:
    """Cuebot's error to a read, as published to the instances waiting for it."""
    return _framed({"e": [error.code, error.message]}, b"")


def decode_answer(data: bytes, rpc: Rpc) -> UpstreamReply | GatewayError | None:
    """What L{encode_answer} or L{encode_error} stored, or None if unreadable."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        return None
    (size,) = struct.unpack_from(">I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    try:
        head = json.loads(data[start : start + size])
        if "e" in head:
            code, message = head["e"]
            return GatewayError(int(code), str(message), upstream=True)
        payload = data[start + size :]
        message_ = rpc.response_class.FromString(payload)
        headers = tuple(
            (name, base64.b64decode(value) if kind == "b" else value)
            for name, kind, value in head["h"]
        )
    except (ValueError, KeyError, TypeError, DecodeError):
        return None
    return UpstreamReply(message_, headers, len(payload))


def _framed(head: dict[str, Any], payload: bytes) -> bytes:
    encoded = json.dumps(head, separators=(",", ":")).encode("utf-8")
    return _MAGIC + struct.pack(">I", len(encoded)) + encoded + payload


def _text_or_b64(value: str | bytes) -> tuple[str, str]:
    if isinstance(value, bytes):
        return "b", base64.b64encode(value).decode("ascii")
    return "s", value


class SharedReads:
    """
    Wraps an upstream (the same C{call} as the Cuebot client and
    L{opencue_gw.upstream.coalesce.CoalescingUpstream}): reads are cached and single-flighted
    across instances in Redis; mutations pass straight through.

    C{cache_seconds} of 0 disables the shared cache (single flight stays on).
    C{fallback} answers reads while Redis is unavailable (by default C{upstream}).
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        upstream: Any,
        store: SharedStore,
        clock: IReactorTime,
        *,
        cache_seconds: float = 0.0,
        fallback: Any = None,
        prefix: str = "ocgw:",
        max_wait: float = 5.0,
        metrics: SharedStateMetrics | None = None,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._clock = clock
        self._cache_ms = int(cache_seconds * 1000)
        self._fallback = fallback if fallback is not None else upstream
        self._prefix = prefix
        self._max_wait = max_wait
        self._metrics = metrics if metrics is not None else store.metrics

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """A read through the shared cache and single flight; anything else as it is."""
        if not rpc.is_read:
            return self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        if not self._store.up:
            return self._local(rpc, request, timeout, metadata)
        return ensureDeferred(self._read(rpc, request, timeout, metadata))

    def _local(
        self,
        rpc: Rpc,
        request: Message,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> Deferred[Any]:
        if self._metrics is not None:
            self._metrics.fallbacks.labels("read").inc()
        return self._fallback.call(rpc, request, timeout=timeout, metadata=metadata)  # type: ignore[no-any-return]

    async def _read(
        self,
        rpc: Rpc,
        request: Message,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> Any:
        started = self._clock.seconds()
        digest = shared_read_key(rpc, request, metadata)
        # One hash tag: the keys of a read live in one slot of a Redis Cluster.
        cache_key = f"{self._prefix}c:{{{digest}}}".encode()
        lock_key = f"{self._prefix}l:{{{digest}}}".encode()
        flight = uuid.uuid4().hex
        lock_seconds = timeout if timeout is not None else _DEFAULT_LOCK_SECONDS
        try:
            kind, value = await self._store.run(
                _CLAIM,
                [cache_key, lock_key],
                [flight, int(lock_seconds * 1000) + 100, "1" if self._cache_ms > 0 else "0"],
            )
        except SharedStoreUnavailable:
            return await self._local(rpc, request, timeout, metadata)
        if kind == b"hit":
            found = decode_answer(value, rpc)
            if isinstance(found, UpstreamReply):
                if self._metrics is not None:
                    self._metrics.shared_cache_hits.inc()
                return found
            return await self._fetch(rpc, request, timeout, metadata, flight, digest, lock_key)
        if kind == b"fetch":
            return await self._fetch(rpc, request, timeout, metadata, flight, digest, lock_key)
        holder = value.decode("ascii")
        waited = await self._wait(rpc, digest, lock_key, holder, timeout, started)
        if waited is not None:
            if self._metrics is not None:
                self._metrics.shared_flight_joins.inc()
            if isinstance(waited, GatewayError):
                raise waited
            return waited
        left = None if timeout is None else max(0.0, timeout - (self._clock.seconds() - started))
        return await self._upstream.call(rpc, request, timeout=left, metadata=metadata)

    async def _fetch(
        self,
        rpc: Rpc,
        request: Message,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]],
        flight: str,
        digest: str,
        lock_key: bytes,
    ) -> Any:
        """Call Cuebot as the holder of the read's lock, then publish what it said."""
        try:
            reply = await self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        except GatewayError as error:
            if error.upstream:
                self._publish(digest, lock_key, flight, encode_error(error), cache=False)
            else:
                self._release(lock_key, flight)
            raise
        except BaseException:
            # Cancelled (the client left) or a fault: let the waiters call for themselves.
            self._release(lock_key, flight)
            raise
        stale = getattr(reply, "stale_age", None) is not None
        self._publish(digest, lock_key, flight, encode_answer(reply), cache=not stale)
        return reply

    async def _wait(
        self,
        rpc: Rpc,
        digest: str,
        lock_key: bytes,
        holder: str,
        timeout: float | None,
        started: float,
    ) -> UpstreamReply | GatewayError | None:
        """The holder's published answer, or None when it is not there in time."""
        budget = self._max_wait if timeout is None else min(self._max_wait, timeout / 2)
        until = started + budget
        result_key = f"{self._prefix}r:{{{digest}}}:{holder}".encode()
        delay = _FIRST_POLL
        while True:
            try:
                answer = await self._store.run(_POLL, [result_key, lock_key], [holder])
            except SharedStoreUnavailable:
                return None
            state = int(answer[0])
            if state == 1:
                return decode_answer(answer[1], rpc)
            if state == 2:
                return None
            remaining = until - self._clock.seconds()
            if remaining <= 0:
                if self._metrics is not None:
                    self._metrics.shared_flight_timeouts.inc()
                return None
            await deferLater(self._clock, min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL)

    def _publish(
        self, digest: str, lock_key: bytes, flight: str, data: bytes, *, cache: bool
    ) -> None:
        # After the holder's own client has its answer: nobody waits for this.
        result_key = f"{self._prefix}r:{{{digest}}}:{flight}".encode()
        cache_key = f"{self._prefix}c:{{{digest}}}".encode()
        d = self._store.run(
            _FINISH,
            [result_key, lock_key, cache_key],
            [flight, data, _RESULT_MS, self._cache_ms if cache else 0],
        )
        d.addErrback(self._not_shared)

    def _release(self, lock_key: bytes, flight: str) -> None:
        self._store.run(_RELEASE, [lock_key], [flight]).addErrback(self._not_shared)

    def _not_shared(self, failure: Any) -> None:
        if failure.check(SharedStoreUnavailable, CancelledError):
            return
        self.log.failure("Could not share a read's answer in Redis", failure)
