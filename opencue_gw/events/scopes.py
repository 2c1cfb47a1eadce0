# -*- test-case-name: tests.test_events -*-
"""
The polls: what the gateway asks Cuebot for one scope, and the timer that repeats it.

A scope is asked for on behalf of every subscriber at once, the way the readiness probe
asks: through the upstream client with the gateway's own short deadline and no caller's
metadata. One poll never overlaps the next: the following one is scheduled an interval
after the answer, on the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from opencue_proto import host_pb2, job_pb2
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
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
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["POLL_RPCS", "Poll", "Scope", "Upstream", "fetcher_for"]

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


class Scope:
    """
    One watched scope: its subscribers, its last snapshot, and its poll timer.

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
        self._timer: IDelayedCall | None = None
        self._pending: Deferred[Any] | None = None
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

    def stop(self) -> Snapshot | None:
        """Stop polling; answers the last snapshot, for a restart within the history."""
        self.running = False
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
        self._timer = None
        if not self.running or self._pending is not None:
            return
        if self._gate is None:
            self._ask()
            return
        gated = self._gate(self)
        self._pending = gated
        gated.addCallback(self._gated, gated).addErrback(lambda _: None)

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
            self._timer = self._clock.callLater(self._interval, self.poll)
