"""The farm's containers, indexes and the one place frame states change.

Every frame transition goes through ``FarmState.set_frame_state`` so that the
per-layer and per-job counters, the dispatch queues and the proto caches can never
drift from the frames themselves.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from opencue_proto import job_pb2

from opencue_sandbox.errors import Missing
from opencue_sandbox.model import (
    DONE_STATES,
    Action,
    Allocation,
    Comment,
    Department,
    Depend,
    Facility,
    Filter,
    Frame,
    Group,
    Host,
    Job,
    Layer,
    Limit,
    Matcher,
    Owner,
    Proc,
    Service,
    ServiceOverride,
    Show,
    Subscription,
    Task,
)


class FarmState:
    """Indexes by id and by name of every entity, the wall time ``now`` the farm has been
    brought up to, and ``work``, the seconds of simulated work done by then."""

    def __init__(self, seed: int, now: float) -> None:
        self.seed = seed
        self.now = now
        self.work = 0.0
        self._ids = random.Random(seed)
        self._seq = itertools.count()
        self.facilities: dict[str, Facility] = {}
        self.allocs: dict[str, Allocation] = {}
        self.default_alloc: Allocation | None = None
        self.shows: dict[str, Show] = {}
        self.groups: dict[str, Group] = {}
        self.jobs: dict[str, Job] = {}
        self.active_jobs: dict[str, Job] = {}
        self.jobs_by_name: dict[str, Job] = {}
        self.layers: dict[str, Layer] = {}
        self.frames: dict[str, Frame] = {}
        self.hosts: dict[str, Host] = {}
        self.hosts_by_name: dict[str, Host] = {}
        self.procs: dict[str, Proc] = {}
        self.owners: dict[str, Owner] = {}
        self.deeds: dict[str, object] = {}
        self.comments: dict[str, Comment] = {}
        self.filters: dict[str, Filter] = {}
        self.matchers: dict[str, Matcher] = {}
        self.actions: dict[str, Action] = {}
        self.limits: dict[str, Limit] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.services: dict[str, Service] = {}
        self.overrides: dict[str, ServiceOverride] = {}
        self.departments: dict[str, Department] = {}
        self.dept_names: list[str] = []
        self.tasks: dict[str, Task] = {}
        self.depends: dict[str, Depend] = {}
        # Render partitions (local bookings); values are servicers.partition.Partition.
        self.partitions: dict[str, Any] = {}
        self.display_overrides: dict[str, dict[int, Any]] = {}
        # Depends waiting on a job, layer or frame (by that entity's id).
        self.depends_on: dict[str, list[Depend]] = {}
        # Depends whose dependent side is a job, layer or frame (by that entity's id).
        self.depends_er: dict[str, list[Depend]] = {}
        self.dispatch_dirty = True
        # Set when the set or order of dispatchable jobs may have changed.
        self.order_dirty = True
        # Waiting frames of dispatchable jobs by (cores, memory, tags) of their layer: lets
        # the dispatcher skip a host at once when no waiting frame could fit it.
        self.waiting_index: dict[tuple[float, int, tuple[str, ...]], int] = {}
        # What the running procs hold, kept by ``charge``: running frames per limit id,
        # procs per host id per limit id, and cores per (show id, allocation id).
        self.limit_frames: dict[str, int] = {}
        self.limit_hosts: dict[str, dict[str, int]] = {}
        self.show_alloc_cores: dict[tuple[str, str], float] = {}
        # Called when a frame becomes SUCCEEDED or EATEN, and when a job finishes.
        self.on_frame_done: Callable[[Frame], None] = lambda frame: None

    # ---- identity -------------------------------------------------------------------
    def new_id(self) -> str:
        """A seeded UUID4 string (what uuid.UUID(int=n, version=4) gives, done faster)."""
        n = self._ids.getrandbits(128)
        n = (n & ~(0xF000 << 64)) | (4 << 76)
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def next_seq(self) -> int:
        return next(self._seq)

    @property
    def now_int(self) -> int:
        return int(self.now)

    # ---- lookups --------------------------------------------------------------------
    @staticmethod
    def _get(index: dict[str, object], key: str, what: str) -> object:
        found = index.get(key)
        if found is None:
            raise Missing(what)
        return found

    def show(self, id_: str) -> Show:
        found = self.shows.get(id_)
        if found is None:
            raise Missing("show")
        return found

    def show_named(self, name: str) -> Show:
        for show in self.shows.values():
            if show.name == name:
                return show
        raise Missing("show")

    def group(self, id_: str) -> Group:
        found = self.groups.get(id_)
        if found is None:
            raise Missing("group")
        return found

    def job(self, id_: str) -> Job:
        found = self.jobs.get(id_)
        if found is None:
            raise Missing("job")
        return found

    def job_named(self, name: str) -> Job:
        found = self.jobs_by_name.get(name)
        if found is None or found.finished:
            raise Missing("job")
        return found

    def layer(self, id_: str) -> Layer:
        found = self.layers.get(id_)
        if found is None:
            raise Missing("layer")
        return found

    def frame(self, id_: str) -> Frame:
        found = self.frames.get(id_)
        if found is None:
            raise Missing("frame")
        return found

    def host(self, id_: str) -> Host:
        found = self.hosts.get(id_)
        if found is None:
            raise Missing("host")
        return found

    def host_ref(self, id_: str, name: str) -> Host:
        """Resolve a Host message the way clients send it: by id, else by name."""
        found = self.hosts.get(id_) if id_ else self.hosts_by_name.get(name)
        if found is None:
            raise Missing("host")
        return found

    def host_named(self, name: str) -> Host:
        found = self.hosts_by_name.get(name)
        if found is None:
            raise Missing("host")
        return found

    def proc(self, id_: str) -> Proc:
        found = self.procs.get(id_)
        if found is None:
            raise Missing("proc")
        return found

    def alloc(self, id_: str) -> Allocation:
        found = self.allocs.get(id_)
        if found is None:
            raise Missing("allocation")
        return found

    def alloc_named(self, name: str) -> Allocation:
        for alloc in self.allocs.values():
            if alloc.name == name:
                return alloc
        raise Missing("allocation")

    def facility_named(self, name: str) -> Facility:
        for fac in self.facilities.values():
            if fac.name == name:
                return fac
        raise Missing("facility")

    def lookup(self, index: dict[str, object], id_: str) -> object:
        found = index.get(id_)
        if found is None:
            raise Missing()
        return found

    # ---- what running procs hold ----------------------------------------------------
    def charge(self, proc: Proc, sign: int) -> None:
        """Count a proc (sign +1, when booked) or stop counting it (-1, when released)
        against its layer's limits and its show's subscription."""
        if sign > 0:
            proc.limits = tuple(proc.frame.layer.limits)
            proc.charged_to = (proc.frame.job.show.id, proc.host.alloc.id)
        for lid in proc.limits:
            self.limit_frames[lid] = self.limit_frames.get(lid, 0) + sign
            hosts = self.limit_hosts.setdefault(lid, {})
            count = hosts.get(proc.host.id, 0) + sign
            if count > 0:
                hosts[proc.host.id] = count
            else:
                hosts.pop(proc.host.id, None)
        key = proc.charged_to
        self.show_alloc_cores[key] = max(
            0.0, self.show_alloc_cores.get(key, 0.0) + sign * proc.cores
        )

    def recount_limits(self) -> None:
        """Count limits afresh after a layer's limits changed: like Cuebot, whose usage is
        a query over running frames, a frame counts for the limits its layer has now."""
        self.limit_frames = {}
        self.limit_hosts = {}
        for proc in self.procs.values():
            proc.limits = tuple(proc.frame.layer.limits)
            for lid in proc.limits:
                self.limit_frames[lid] = self.limit_frames.get(lid, 0) + 1
                hosts = self.limit_hosts.setdefault(lid, {})
                hosts[proc.host.id] = hosts.get(proc.host.id, 0) + 1
        self.dispatch_dirty = True

    def limit_usage(self, lim: Limit) -> tuple[int, int]:
        """(running frames, hosts) holding ``lim``."""
        return self.limit_frames.get(lim.id, 0), len(self.limit_hosts.get(lim.id, ()))

    # ---- frame transitions ----------------------------------------------------------
    def touch_job(self, job: Job) -> None:
        job.cache = None
        job.show.cache = None
        job.group.cache = None

    def touch_frame(self, frame: Frame) -> None:
        frame.updated_time = self.now_int
        frame.cache = None
        frame.layer.cache = None
        self.touch_job(frame.layer.job)

    def set_frame_state(self, frame: Frame, new: int) -> None:
        """Move a frame to ``new`` keeping counters, dispatch queues and caches right."""
        old = frame.state
        layer = frame.layer
        job = layer.job
        if old != new:
            layer.counts[old] -= 1
            layer.counts[new] += 1
            job.counts[old] -= 1
            job.counts[new] += 1
            frame.state = new
            if old == job_pb2.WAITING:
                self._index(layer, -1)
        self.touch_frame(frame)
        if new == job_pb2.WAITING:
            self.queue_frame(frame)
        if new in DONE_STATES and old not in DONE_STATES:
            self.on_frame_done(frame)

    def make_ready(self, frame: Frame) -> None:
        """Put a frame back in line: WAITING, or DEPEND while it has active depends."""
        self.set_frame_state(frame, job_pb2.DEPEND if frame.depend_count > 0 else job_pb2.WAITING)

    @staticmethod
    def _key(layer: Layer) -> tuple[float, int, tuple[str, ...]]:
        return (layer.min_cores, layer.min_memory, tuple(layer.tags))

    def _index(self, layer: Layer, delta: int) -> None:
        job = layer.job
        if job.paused or job.finished:
            return
        key = self._key(layer)
        self.waiting_index[key] = self.waiting_index.get(key, 0) + delta

    def reindex(self) -> None:
        """Rebuild ``waiting_index`` from the layer counters (done before full dispatches)."""
        index: dict[tuple[float, int, tuple[str, ...]], int] = {}
        for job in self.active_jobs.values():
            if job.paused or job.counts[job_pb2.WAITING] == 0:
                continue
            for layer in job.layers:
                waiting = layer.counts[job_pb2.WAITING]
                if waiting:
                    key = self._key(layer)
                    index[key] = index.get(key, 0) + waiting
        self.waiting_index = index

    def could_fit(self, cores: float, memory: int, tags: list[str]) -> bool:
        """Whether some waiting frame might fit this much free room on a host so tagged."""
        for (need_cores, need_memory, need_tags), count in self.waiting_index.items():
            if count <= 0 or need_cores > cores or need_memory > memory:
                continue
            if not need_tags or any(t in tags for t in need_tags):
                return True
        return False

    def queue_frame(self, frame: Frame) -> None:
        self._index(frame.layer, +1)
        heapq.heappush(
            frame.layer.waiting, (frame.dispatch_order, frame.number, self.next_seq(), frame)
        )
        self.dispatch_dirty = True

    def rebuild_queue(self, layer: Layer) -> None:
        layer.waiting = [
            (f.dispatch_order, f.number, self.next_seq(), f)
            for f in layer.frames
            if f.state == job_pb2.WAITING
        ]
        heapq.heapify(layer.waiting)
        self.dispatch_dirty = True

    # ---- registration ---------------------------------------------------------------
    def add_job(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.active_jobs[job.id] = job
        self.jobs_by_name[job.name] = job
        job.show.jobs[job.id] = job
        job.group.jobs[job.id] = job
        job.show.created_job_count += 1
        self.touch_job(job)
        self.dispatch_dirty = True
        self.order_dirty = True

    def add_layer(self, layer: Layer) -> None:
        self.layers[layer.id] = layer
        layer.job.layers.append(layer)

    def add_frame(self, frame: Frame) -> None:
        self.frames[frame.id] = frame
        layer = frame.layer
        layer.frames.append(frame)
        layer.counts[frame.state] += 1
        layer.job.counts[frame.state] += 1
        layer.job.show.created_frame_count += 1
        if frame.state == job_pb2.WAITING:
            self.queue_frame(frame)
