# -*- test-case-name: tests.test_events -*-
"""
The polls: what the gateway asks Cuebot for one scope, and the timer that repeats it.

A scope is asked for on behalf of every subscriber at once, the way the readiness probe
asks: through the upstream client with the gateway's own short deadline and no caller's
metadata. Polls start at a fixed rate, an interval apart from start to start (so a
change waits at most one interval for the poll that sees it, however long a poll takes),
and one poll never overlaps the next: a poll slower than the interval is followed at
once. Everything runs on the injected clock.

With Redis a scope also has a L{Lease}: its own timer, apart from the polls, that takes
or renews the scope's lease a few times an interval, so that a slow poll never loses it
and a dead holder's is taken over within one interval (the numbers are in L{Lease}).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from opencue_proto import host_pb2, job_pb2
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.errors import Code, GatewayError
from opencue_gw.events.diff import (
    Snapshot,
    frame_item,
    host_item,
    job_item,
    layer_item,
    snapshot_of,
)
from opencue_gw.events.model import Event, Item, ScopeKey
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.store import SharedStoreUnavailable
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["POLL_RPCS", "Lease", "Leases", "Poll", "Scope", "Upstream", "fetcher_for"]

# The read RPCs each event type is polled with: the policy is asked about these.
POLL_RPCS: Mapping[str, tuple[str, ...]] = {
    "job": ("/job.JobInterface/GetJobs", "/job.JobInterface/GetJob"),
    "layer": ("/job.JobInterface/GetLayers",),
    "frame": ("/job.JobInterface/GetFrames",),
    "host": ("/host.HostInterface/GetHosts",),
}
# At most this many jobs that left the unfinished list are asked about in one poll.
_MAX_DEPARTED = 50
_FRAME_PAGE = 1000


class Upstream(Protocol):
    """The upstream client's call, as the readiness probe uses it."""

    def call(
        self, rpc: Rpc, request: Any, *, timeout: float | None, metadata: Any = ()
    ) -> Deferred[Any]: ...


Poll = tuple[Snapshot, dict[str, Item | None]]
Fetch = Callable[[Snapshot | None], Coroutine[Any, Any, Poll]]


class _Asker:
    def __init__(self, upstream: Upstream, rpcs: Mapping[str, Rpc], timeout: float) -> None:
        self._upstream = upstream
        self._rpcs = rpcs
        self._timeout = timeout

    async def __call__(self, path: str, request: Any) -> Any:
        reply = await self._upstream.call(
            self._rpcs[path], request, timeout=self._timeout, metadata=()
        )
        return reply.message


def fetcher_for(
    key: ScopeKey,
    upstream: Upstream,
    rpcs: Mapping[str, Rpc],
    *,
    timeout: float,
    max_frame_pages: int,
) -> Fetch:
    """The poll for C{key}: a coroutine function from the previous snapshot to a L{Poll}."""
    ask = _Asker(upstream, rpcs, timeout)
    kind, name = key

    async def jobs(previous: Snapshot | None) -> Poll:
        criteria = job_pb2.JobSearchCriteria(shows=[name] if name else [])
        reply = await ask("/job.JobInterface/GetJobs", job_pb2.JobGetJobsRequest(r=criteria))
        now = snapshot_of(job_item(job) for job in reply.jobs.jobs)
        departed: dict[str, Item | None] = {}
        gone = [job_id for job_id in (previous or {}) if job_id not in now]
        for job_id in gone[:_MAX_DEPARTED]:
            try:
                found = await ask("/job.JobInterface/GetJob", job_pb2.JobGetJobRequest(id=job_id))
            except GatewayError as error:
                if error.code != Code.NOT_FOUND:
                    raise
                departed[job_id] = None
            else:
                departed[job_id] = job_item(found.job)
        return now, departed

    async def job(previous: Snapshot | None) -> Poll:
        found = await ask("/job.JobInterface/GetJob", job_pb2.JobGetJobRequest(id=name))
        return snapshot_of([job_item(found.job)]), {}

    async def detail(previous: Snapshot | None) -> Poll:
        ref = job_pb2.Job(id=name)
        layers = await ask("/job.JobInterface/GetLayers", job_pb2.JobGetLayersRequest(job=ref))
        items = [layer_item(layer, name) for layer in layers.layers.layers]
        for page in range(1, max_frame_pages + 1):
            criteria = job_pb2.FrameSearchCriteria(page=page, limit=_FRAME_PAGE)
            frames = await ask(
                "/job.JobInterface/GetFrames", job_pb2.JobGetFramesRequest(job=ref, req=criteria)
            )
            items.extend(frame_item(frame, name) for frame in frames.frames.frames)
            if len(frames.frames.frames) < _FRAME_PAGE:
                break
        return snapshot_of(items), {}

    async def hosts(previous: Snapshot | None) -> Poll:
        reply = await ask(
            "/host.HostInterface/GetHosts",
            host_pb2.HostGetHostsRequest(r=host_pb2.HostSearchCriteria()),
        )
        return snapshot_of(host_item(host) for host in reply.hosts.hosts), {}

    fetchers: dict[str, Fetch] = {"jobs": jobs, "job": job, "detail": detail, "hosts": hosts}
    return fetchers[kind]


class Leases(Protocol):
    """The Redis side of the leases (L{opencue_gw.shared.events.SharedEvents})."""

    def attempt(self, key: ScopeKey, floor: int, ttl: float) -> Deferred[bool]: ...

    def release(self, key: ScopeKey) -> Deferred[None]: ...


class Lease:
    """
    One scope's lease in Redis as this instance knows it, kept by its own timer.

    While the scope is watched, an attempt (take or renew) runs every third of an
    interval with a time to live of two thirds, whatever the polls are doing: a poll
    slower than an interval does not lose the lease (and a renewal may come a third of
    an interval late), and a holder that dies without a word leaves a lease that
    expires within two thirds of an interval of its death, which a watcher's next
    attempt, at most a third later, takes: one interval in all. That is three small
    scripts per interval for each instance watching the scope. The polls ask L{held}
    (what the last answer said, while its time to live lasts) and make no call to
    Redis for it.

    C{on_taken} runs when an attempt takes the lease that the previous one did not
    hold, so the new holder polls at once instead of at its next tick.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        key: ScopeKey,
        leases: Leases,
        clock: IReactorTime,
        interval: float,
        floor: Callable[[], int],
    ) -> None:
        self.key = key
        self.period = interval / 3
        self.ttl = interval * 2 / 3
        self.on_taken: Callable[[], None] | None = None
        self.available = False
        """Whether the last attempt was answered (C{False}: Redis is away or slow)."""
        self._leases = leases
        self._clock = clock
        self._floor = floor
        self._held: bool | None = False
        self._held_until = 0.0
        self._answered = False
        self._attempting: Deferred[None] | None = None
        self._waiting: list[Deferred[None]] = []
        self._timer = LoopingCall(self._attempt)
        self._timer.clock = clock

    @property
    def held(self) -> bool:
        """Whether this instance holds the lease now, as the last attempt said."""
        return bool(self._held) and self._clock.seconds() < self._held_until

    def start(self) -> None:
        """Attempt now, then every third of an interval until L{stop}."""
        if not self._timer.running:
            self._timer.start(self.period, now=True)

    def stop(self) -> None:
        """Stop attempting; the lease, if held, expires by itself (as when dying)."""
        if self._timer.running:
            self._timer.stop()

    def release(self) -> Deferred[None]:
        """
        Stop attempting and give the lease up, so that another instance takes it at
        its next attempt. Fires when done or given up (never fails).
        """
        self.stop()
        if self._attempting is not None:
            # Its answer may yet be "taken": give it up after that answer.
            pending: Deferred[None] = Deferred()
            self._attempting.addBoth(lambda _: self._leases.release(self.key)).addBoth(
                lambda _: pending.callback(None)
            )
            return pending
        if self._held is False:
            return succeed(None)
        self._held = False
        return self._leases.release(self.key)

    def decided(self) -> Deferred[None]:
        """Fires once an attempt has been answered (or has failed) since the start."""
        if self._answered:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _attempt(self) -> None:
        if self._attempting is not None:
            return  # The previous attempt has not answered yet: no pile-up.
        sent = self._clock.seconds()
        attempt = self._leases.attempt(self.key, self._floor(), self.ttl)
        done = attempt.addCallbacks(self._decided, self._failed, callbackArgs=(sent,))
        done.addErrback(self._broken)
        if not done.called:
            self._attempting = done
            done.addBoth(self._finished)

    def _finished(self, _: None) -> None:
        self._attempting = None

    def _broken(self, failure: Failure) -> None:
        # A bug in what an answer set off (the poll it hurried): logged, the timer goes on.
        self.log.failure("Event lease handling failed", failure)

    def _decided(self, held: bool, sent: float) -> None:
        before = self.held
        self._held = held
        self._held_until = sent + self.ttl if held else 0.0
        self.available = True
        self._tell()
        if held and not before and self._timer.running and self.on_taken is not None:
            self.on_taken()

    def _failed(self, failure: Failure) -> None:
        if failure.check(SharedStoreUnavailable) is None:
            self.log.failure("Event lease attempt failed", failure)
        # Unknown: perhaps taken (released on stop), not to be relied on meanwhile.
        self._held = None
        self._held_until = 0.0
        self.available = False
        self._tell()

    def _tell(self) -> None:
        self._answered = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.callback(None)


class Scope:
    """
    One watched scope: its subscribers, its last snapshot, its poll timer, and with
    Redis its L{Lease} (started and stopped with the polls).

    C{on_poll(scope, new, departed)} and C{on_error(scope, error)} are the hub's; the
    scope only knows when to ask.
    """

    def __init__(
        self,
        key: ScopeKey,
        fetch: Fetch,
        clock: IReactorTime,
        interval: float,
        on_poll: Callable[[Scope, Snapshot, dict[str, Item | None]], None],
        on_error: Callable[[Scope, GatewayError], None],
        gate: Callable[[Scope], Deferred[bool]] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.key = key
        self.subscribers: set[Any] = set()
        self.snapshot: Snapshot | None = None
        self.fresh = False
        """Whether C{snapshot} comes from a poll since this scope (re)started."""
        self.error: GatewayError | None = None
        self._fetch = fetch
        self._clock = clock
        self._interval = interval
        self._on_poll = on_poll
        self._on_error = on_error
        self._gate = gate
        self.lease = lease
        if lease is not None:
            lease.on_taken = self._taken
        self._timer: IDelayedCall | None = None
        self._pending: Deferred[Any] | None = None
        self._again = False
        self._started_at: float | None = None
        self.running = False
        self.role = "local"
        """With Redis: C{leader} (polls and publishes), C{follower} (hears the leader's
        batches; polls once for its snapshot) or C{local} (polls for itself)."""
        self.waiting: list[tuple[list[Event], list[str]]] = []
        """A follower's batches heard before its first snapshot, applied on it."""

    def start(self) -> None:
        """
        Start polling at once. C{snapshot} may already hold what this scope saw when it
        last stopped; the first poll is then diffed against it.
        """
        self.running = True
        self.poll()
        if self.lease is not None:
            # After the first poll's gate, which waits for this first attempt's answer.
            self.lease.start()

    def stop(self) -> Snapshot | None:
        """
        Stop polling (and attempting the lease, without giving it up: see
        L{Lease.release}); answers the last snapshot, for a restart within the history.
        """
        self.running = False
        self._again = False
        if self.lease is not None:
            self.lease.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        return self.snapshot

    def poll(self) -> None:
        """
        Ask Cuebot now (unless a poll is still waiting for its answer). With a gate,
        ask it first whether this instance polls at all this time.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.running or self._pending is not None:
            return
        self._started_at = self._clock.seconds()
        if self._gate is None:
            self._ask()
            return
        gated = self._gate(self)
        self._pending = gated
        gated.addCallback(self._gated, gated).addErrback(lambda _: None)

    def hurry(self) -> None:
        """Poll now, or right after the poll under way answers, not at the next tick."""
        if not self.running:
            return
        if self._pending is not None:
            self._again = True
            return
        self.poll()

    def _taken(self) -> None:
        # This instance just took the lease over: it polls now (within the interval the
        # takeover promises) rather than at the next tick of its timer.
        if self.role != "leader":
            self.hurry()

    def _gated(self, go: bool, d: Deferred[bool]) -> None:
        if self._pending is not d:
            return
        self._pending = None
        if go:
            self._ask()
        else:
            self._schedule()

    def _ask(self) -> None:
        d = Deferred.fromCoroutine(self._fetch(self.snapshot))
        self._pending = d
        d.addCallbacks(self._answered, self._failed, callbackArgs=(d,), errbackArgs=(d,))

    def _answered(self, result: Poll, d: Deferred[Poll]) -> None:
        if self._pending is not d:
            return
        self._pending = None
        new, departed = result
        self.error = None
        self._on_poll(self, new, departed)
        self._schedule()

    def _failed(self, failure: Failure, d: Deferred[Poll]) -> None:
        if self._pending is not d:
            return None
        self._pending = None
        error = failure.value
        if not isinstance(error, GatewayError):
            error = GatewayError(Code.INTERNAL, f"event poll failed: {error!r}")
        self._on_error(self, error)
        self._schedule()
        return None

    def _schedule(self) -> None:
        if self.running:
            if self._again or self._started_at is None:
                delay = 0.0 if self._again else self._interval
            else:
                # An interval from the start of the poll that just ended, not from its end.
                delay = max(0.0, self._started_at + self._interval - self._clock.seconds())
            self._again = False
            self._timer = self._clock.callLater(delay, self.poll)
