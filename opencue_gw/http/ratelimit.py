# -*- test-case-name: tests.test_ratelimit -*-
"""
Per-caller rate limiting: a token bucket for each token subject.

One runaway script must not be able to flood Cuebot on behalf of everyone. Callers are
told where they stand on every answer (C{X-RateLimit-*}), and a refusal is a 429 JSON
body with C{Retry-After}. Callers without a subject share a bucket per client address.
Limits come from C{RATE_LIMIT_RPS}/C{RATE_LIMIT_BURST}, and a policy file may give a
role other numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from opencue_gw.auth.bearer import Identity
from opencue_gw.errors import GatewayError
from opencue_gw.ops.metrics import GatewayMetrics

__all__ = ["Decision", "RateLimit", "TokenBuckets", "caller_key"]

RateFor = Callable[[Identity], "tuple[float, float] | None"]

# Beyond this many callers tracked, buckets that have refilled are forgotten.
_PRUNE_ABOVE = 50_000
# ...and at most this often, so a flood of new callers does not cost a scan per request.
_PRUNE_EVERY = 10.0


@dataclass(frozen=True)
class Decision:
    """The outcome for one request, with what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Seconds until the bucket is full again."""
    retry_after: int
    """Seconds until one request will be allowed (0 when allowed)."""

    def headers(self) -> dict[str, str]:
        """The C{X-RateLimit-*} headers (and C{Retry-After} on a refusal)."""
        answer = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            answer["Retry-After"] = str(self.retry_after)
        return answer


class TokenBuckets:
    """
    Token buckets keyed by caller, refilled lazily from the injected clock.

    C{rate} tokens per second up to C{burst}; each request takes one.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: float,
        rate_for: RateFor | None = None,
    ) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._rate_for = rate_for
        # key -> (tokens, last seen, rate, burst): each bucket remembers its own limits,
        # which a role override may have made different from the defaults.
        self._buckets: dict[str, tuple[float, float, float, float]] = {}
        self._pruned_at = clock.seconds()

    def limits_for(self, identity: Identity | None) -> tuple[float, float]:
        """The caller's (rate, burst): a role override from the policy, or the default."""
        if identity is not None and self._rate_for is not None:
            override = self._rate_for(identity)
            if override is not None:
                return override[0], max(override[1], 1.0)
        return self.rate, self.burst

    def take(self, key: str, rate: float, burst: float) -> Decision:
        """Spend one token from C{key}'s bucket if there is one."""
        now = self._clock.seconds()
        tokens, last, _, _ = self._buckets.get(key, (burst, now, rate, burst))
        tokens = min(burst, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) > _PRUNE_ABOVE and now - self._pruned_at >= _PRUNE_EVERY:
            self._prune(now)
        self._buckets[key] = (tokens, now, rate, burst)
        return Decision(
            allowed=allowed,
            limit=int(burst),
            remaining=int(tokens),
            reset=math.ceil((burst - tokens) / rate) if rate > 0 else 0,
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        )

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forget it.
        self._pruned_at = now
        full = [
            key
            for key, (tokens, last, rate, burst) in self._buckets.items()
            if rate <= 0 or tokens + (now - last) * rate >= burst
        ]
        for key in full:
            del self._buckets[key]


def caller_key(identity: Identity | None, request: IRequest) -> str:
    """A bucket per token subject, else per client address."""
    if identity is not None and identity.sub:
        return "sub:" + identity.sub
    host = getattr(request.getClientAddress(), "host", None)
    return f"addr:{host}"


class RateLimit:
    """
    The guard's throttle: takes a token from the caller's bucket, or refuses with 429.

    Callers are told where they stand on every answer (C{X-RateLimit-*}).
    """

    def __init__(self, buckets: Any, metrics: GatewayMetrics | None = None) -> None:
        # TokenBuckets, or buckets shared in Redis whose take() answers with a Deferred.
        self._buckets = buckets
        self._metrics = metrics

    def check(self, identity: Identity | None, request: IRequest) -> Deferred[None] | None:
        """
        Let the request through (with its headers set) or raise the 429 answer; a
        Deferred that does the same when the buckets answer later (shared in Redis).
        """
        rate, burst = self._buckets.limits_for(identity)
        if rate <= 0:
            return None
        taken = self._buckets.take(caller_key(identity, request), rate, burst)
        if isinstance(taken, Deferred):
            return taken.addCallback(self._decided, request, rate, burst)
        self._decided(taken, request, rate, burst)
        return None

    def _decided(self, decision: Decision, request: IRequest, rate: float, burst: float) -> None:
        if decision.allowed:
            for name, value in decision.headers().items():
                request.setHeader(name.encode("ascii"), value.encode("ascii"))
            return
        if self._metrics is not None:
            self._metrics.rate_limited.inc()
        raise GatewayError.rate_limited(
            f"rate limit exceeded: {rate:g} requests/s, burst {int(burst)}", decision.headers()
        )
