"""
L{opencue_gw.shared.split}: without Redis, C{--workers N} gives each worker an even
share of every rate limit, so that N workers together still admit the configured limit.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from opencue_gw.auth.bearer import Identity
from opencue_gw.http.ratelimit import TokenBuckets
from opencue_gw.shared.split import per_worker_limits, per_worker_rate_for


def test_even_shares() -> None:
    """Rate and burst are divided by the number of workers; one worker keeps them."""
    assert per_worker_limits(20.0, 40.0, 4) == (5.0, 10.0)
    assert per_worker_limits(20.0, 40.0, 1) == (20.0, 40.0)
    assert per_worker_limits(0.0, 10.0, 2) == (0.0, 5.0)


def test_burst_share_is_at_least_one() -> None:
    """A bucket must admit something: a share below one request is one."""
    assert per_worker_limits(3.0, 2.0, 4) == (0.75, 1.0)


def test_total_across_workers_holds() -> None:
    """
    Four workers' buckets for one caller, each taken at will for 10 s on a clock:
    together they admit the configured burst plus rate x time, not four times it.
    """
    rate, burst, workers = 10.0, 20.0, 4
    clock = Clock()
    share = per_worker_limits(rate, burst, workers)
    buckets = [TokenBuckets(clock, *share) for _ in range(workers)]
    admitted = 0
    for _ in range(1000):
        for worker in buckets:
            admitted += worker.take("sub:x", *share).allowed
        clock.advance(0.01)
    # Within 5%: refilling in 10 ms steps loses a little to floating-point rounding.
    assert abs(admitted - (burst + rate * 10.0)) <= 0.05 * (burst + rate * 10.0)


def test_role_overrides_split_too() -> None:
    """A policy's per-role limits are split the same way; no override stays none."""

    def rate_for(identity: Identity) -> tuple[float, float] | None:
        return (100.0, 50.0) if identity.role == "admin" else None

    split = per_worker_rate_for(rate_for, 2)
    assert split is not None
    assert split(Identity(sub="a", role="admin")) == (50.0, 25.0)
    assert split(Identity(sub="b", role="viewer")) is None
    assert per_worker_rate_for(None, 2) is None
    assert per_worker_rate_for(rate_for, 1) is rate_for
