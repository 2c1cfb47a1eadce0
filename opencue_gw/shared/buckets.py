# -*- test-case-name: tests.integration.test_redis_buckets -*-
"""
Rate limits shared by every gateway process and instance: one token bucket per caller,
kept in Redis and spent atomically by a Lua script.

The script refills and spends in one step on Redis's own clock (C{TIME}), so instances
with skewed clocks agree, and two instances taking the last token at once cannot both
get it. The answer is the same L{Decision} as the local buckets give, so callers see the
same C{X-RateLimit-*} headers whichever state answered. When Redis is unavailable or
slow, the local L{TokenBuckets} answers at once (each instance then limits on its own,
each of its C{--workers} with an even share).
"""

from __future__ import annotations

import math
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from opencue_gw.auth.bearer import Identity
from opencue_gw.http.ratelimit import Decision, TokenBuckets
from opencue_gw.shared.split import per_worker_limits
from opencue_gw.shared.store import (
    Script,
    SharedStateMetrics,
    SharedStore,
    SharedStoreUnavailable,
)

__all__ = ["TAKE_SCRIPT", "SharedTokenBuckets", "decision_for"]

# KEYS[1]: the caller's bucket. ARGV: rate (tokens/s), burst. Returns {allowed, tokens}.
# The bucket lives until it would be full again (then it is the same as no bucket).
TAKE_SCRIPT = Script(
    """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local kept = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(kept[1])
local at = tonumber(kept[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local text = string.format('%.6f', tokens)
redis.call('HSET', KEYS[1], 'tokens', text, 'at', string.format('%.6f', now))
local life = 60000
if rate > 0 then
  life = math.ceil((burst - tokens) / rate * 1000) + 1000
end
redis.call('PEXPIRE', KEYS[1], life)
return {allowed, text}
"""
)


def decision_for(allowed: bool, tokens: float, rate: float, burst: float) -> Decision:
    """
    The headers' numbers for a bucket left with C{tokens}: the same arithmetic as
    L{TokenBuckets.take}, so shared and local answers look alike.
    """
    return Decision(
        allowed=allowed,
        limit=int(burst),
        remaining=int(tokens),
        reset=math.ceil((burst - tokens) / rate) if rate > 0 else 0,
        retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
    )


class SharedTokenBuckets:
    """
    L{TokenBuckets}' contract (C{limits_for}, C{take}) with the buckets in Redis;
    C{take} answers with a Deferred, fired within the store's timeout.

    C{local} decides the limits (defaults and role overrides, the whole limits) and
    answers whenever Redis cannot, with this process's share of them among C{workers}.
    """

    def __init__(
        self,
        store: SharedStore,
        local: TokenBuckets,
        *,
        workers: int = 1,
        prefix: bytes = b"ocgw:rl:",
        metrics: SharedStateMetrics | None = None,
    ) -> None:
        self._store = store
        self._local = local
        self._workers = workers
        self._prefix = prefix
        self._metrics = metrics if metrics is not None else store.metrics

    @property
    def rate(self) -> float:
        """The default rate (tokens per second)."""
        return self._local.rate

    @property
    def burst(self) -> float:
        """The default burst."""
        return self._local.burst

    def limits_for(self, identity: Identity | None) -> tuple[float, float]:
        """The caller's (rate, burst), as the local buckets decide."""
        return self._local.limits_for(identity)

    def take(self, key: str, rate: float, burst: float) -> Deferred[Decision]:
        """Spend one token from C{key}'s shared bucket, or the local one without Redis."""
        if not self._store.up:
            return succeed(self._local_take(key, rate, burst))
        d = self._store.run(
            TAKE_SCRIPT, [self._prefix + key.encode("utf-8")], [repr(rate), repr(burst)]
        )
        d.addCallbacks(
            _decided, self._fallback, callbackArgs=(rate, burst), errbackArgs=(key, rate, burst)
        )
        return d

    def _fallback(self, failure: Failure, key: str, rate: float, burst: float) -> Decision:
        # Unavailable, slow, or an error from the script: never fail the request over
        # shared state.
        if not failure.check(SharedStoreUnavailable):
            self._store.log.failure("Shared rate limit failed; using local state", failure)
        return self._local_take(key, rate, burst)

    def _local_take(self, key: str, rate: float, burst: float) -> Decision:
        if self._metrics is not None:
            self._metrics.fallbacks.labels("rate_limit").inc()
        return self._local.take(key, *per_worker_limits(rate, burst, self._workers))


def _decided(answer: Any, rate: float, burst: float) -> Decision:
    allowed, tokens = answer
    return decision_for(bool(int(allowed)), float(tokens), rate, burst)
