# -*- test-case-name: tests.test_redis_split -*-
"""
Rate limits under C{--workers N} without Redis: each worker keeps its own buckets, so
each gets an even share of every limit and the total across the workers still holds.

A share of the burst is never below one request (a bucket must admit something), so a
burst smaller than the number of workers admits up to N requests at once in total.
"""

from __future__ import annotations

from collections.abc import Callable

from opencue_gw.auth.bearer import Identity

__all__ = ["per_worker_limits", "per_worker_rate_for"]

RateFor = Callable[[Identity], "tuple[float, float] | None"]


def per_worker_limits(rate: float, burst: float, workers: int) -> tuple[float, float]:
    """One worker's share of C{rate} requests/s and C{burst} among C{workers}."""
    if workers <= 1:
        return rate, burst
    return rate / workers, max(burst / workers, 1.0)


def per_worker_rate_for(rate_for: RateFor | None, workers: int) -> RateFor | None:
    """A policy's per-role limits, each split the same way."""
    if rate_for is None or workers <= 1:
        return rate_for

    def share(identity: Identity) -> tuple[float, float] | None:
        limits = rate_for(identity)
        if limits is None:
            return None
        return per_worker_limits(limits[0], limits[1], workers)

    return share
