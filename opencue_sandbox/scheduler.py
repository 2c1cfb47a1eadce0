"""Discrete-event dispatcher: books waiting frames onto hosts and finishes them.

Two clocks meet here. ``FarmState.now`` is the wall time every timestamp is taken from;
``FarmState.work`` counts seconds of simulated work, and runs ``rate`` times faster than
the wall clock (the sandbox's speed). Events (frame completions, hosts coming back from
a reboot) sit in heaps ordered by the work clock; ``advance_to`` processes them in
order, giving each the wall time at which its work was done, and dispatches there, so
the outcome depends only on the seed and the sequence of mutations, never on how often
a ticker calls it.

Booking keeps Cuebot's dispatcher rules: a frame is booked only while every enforced
limit of its layer is below its maximum, while its show's subscription on the host's
allocation stays within its burst, and while its job, layer and group stay within their
maximum cores.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable

from opencue_proto import host_pb2, job_pb2, limit_pb2

from opencue_sandbox.model import Frame, Host, Job, Layer, Proc, Subscription
from opencue_sandbox.state import FarmState

KB_PER_GB = 1024 * 1024
# Seconds of work a rebooting host stays away before its RQD reports in again.
REBOOT_SECONDS = 300.0
# Slack for float sums of cores.
EPSILON = 1e-6


class Scheduler:
    def __init__(self, state: FarmState, failure_rate: float) -> None:
        self.state = state
        self.failure_rate = failure_rate
        # (work clock reading, sequence, what): frame completions and reboots.
        self.events: list[tuple[float, int, Proc]] = []
        self.reboots: list[tuple[float, int, Host]] = []
        self._cursor = 0
        self._tier_cache: list[list[Job]] | None = None
        self._host_cache: list[Host] | None = None
        # Subscriptions by (show id, allocation id), taken afresh by every dispatch.
        self._subs: dict[tuple[str, str], Subscription] = {}
        self.booked_procs = 0
        self.unbooked_procs = 0

    # ---- time -----------------------------------------------------------------------
    def advance_to(self, when: float, rate: float) -> None:
        """Bring the farm to wall time ``when``, with work progressing ``rate`` times as
        fast as the wall clock meanwhile (never moves backwards)."""
        state = self.state
        t0, w0 = state.now, state.work
        span = when - t0
        if span > 0:
            w_end = w0 + span * rate
            events = self.events
            reboots = self.reboots

            def wall(at_work: float) -> float:
                return t0 + (at_work - w0) / rate if rate > 0 else t0

            while (events and events[0][0] <= w_end) or (reboots and reboots[0][0] <= w_end):
                if (
                    reboots
                    and reboots[0][0] <= w_end
                    and (not events or reboots[0] < events[0][:2])
                ):
                    at, _, host = heapq.heappop(reboots)
                    self._move(wall(at), at)
                    self._boot(host)
                    continue
                at, _, proc = heapq.heappop(events)
                if state.procs.get(proc.id) is not proc:
                    continue  # killed or unbooked before it finished
                self._move(wall(at), at)
                self.complete(proc)
                self.dispatch(None if state.dispatch_dirty else [proc.host])
            self._move(when, w_end)
        if state.dispatch_dirty:
            self.dispatch(None)

    def _move(self, now: float, work: float) -> None:
        state = self.state
        state.now = max(state.now, now)
        state.work = max(state.work, work)

    # ---- hosts -----------------------------------------------------------------------
    def reboot(self, host: Host) -> None:
        """Take a host down for REBOOT_SECONDS; it comes back UP with a new boot time."""
        host.state = host_pb2.REBOOTING
        host.boot_time = self.state.now_int
        host.cache = None
        at = self.state.work + REBOOT_SECONDS
        heapq.heappush(self.reboots, (at, self.state.next_seq(), host))

    def _boot(self, host: Host) -> None:
        if host.state != host_pb2.REBOOTING or host.id not in self.state.hosts:
            return
        host.state = host_pb2.UP
        host.boot_time = self.state.now_int
        host.cache = None
        self.dispatch([host])

    # ---- booking --------------------------------------------------------------------
    def _tiers(self) -> list[list[Job]]:
        """Dispatchable jobs grouped by priority, highest first, submission order inside.

        Cached until a job is added, finished, paused or re-prioritised; jobs with nothing
        waiting stay in the list and are skipped cheaply while booking.
        """
        state = self.state
        if state.order_dirty or self._tier_cache is None:
            jobs = [
                j for j in state.active_jobs.values() if not j.paused and j.show.dispatch_enabled
            ]
            jobs.sort(key=lambda j: (-j.priority, j.seq))
            self._tier_cache = [
                list(g) for _, g in itertools.groupby(jobs, key=lambda j: j.priority)
            ]
            state.order_dirty = False
        return self._tier_cache

    def _hosts(self) -> list[Host]:
        state = self.state
        if self._host_cache is None or len(self._host_cache) != len(state.hosts):
            self._host_cache = sorted(state.hosts.values(), key=lambda h: h.name)
        return self._host_cache

    def dispatch(self, hosts: Iterable[Host] | None) -> None:
        """Fill idle cores on ``hosts`` (all hosts when None) with waiting frames."""
        state = self.state
        if hosts is None:
            state.dispatch_dirty = False
        self._subs = {(s.show.id, s.alloc.id): s for s in state.subscriptions.values()}
        tiers = self._tiers()
        if not tiers:
            return
        if hosts is not None:
            for host in hosts:
                self._fill(host, tiers)
            return
        for host in self._hosts():
            if host.idle_cores >= 1.0 and host.state == host_pb2.UP:
                self._fill(host, tiers)

    def _fill(self, host: Host, tiers: list[list[Job]]) -> None:
        if host.state != host_pb2.UP or host.lock_state != host_pb2.OPEN:
            return
        while host.idle_cores >= 1.0 and host.idle_memory > 0:
            if not self._book_one(host, tiers):
                return

    def _book_one(self, host: Host, tiers: list[list[Job]]) -> bool:
        state = self.state
        if not state.could_fit(host.idle_cores, host.idle_memory, host.tags):
            return False
        for tier in tiers:
            n = len(tier)
            for k in range(n):
                job = tier[(self._cursor + k) % n]
                if job.counts[job_pb2.WAITING] == 0 or job.finished or job.paused:
                    continue
                room = self._room(host, job)
                if room < EPSILON:
                    continue
                for layer in job.layers:
                    if layer.min_cores > room + EPSILON or not self._fits(host, job, layer):
                        continue
                    if layer.limits and not self._limits_allow(host, layer):
                        continue
                    frame = self._pop_waiting(layer)
                    if frame is None:
                        continue
                    self.book(host, frame)
                    self._cursor += 1
                    return True
        return False

    def _room(self, host: Host, job: Job) -> float:
        """Cores ``job`` may still take on ``host`` under its show's subscription to the
        host's allocation (none: no booking there, as in Cuebot) and its group's maximum."""
        state = self.state
        sub = self._subs.get((job.show.id, host.alloc.id))
        if sub is None:
            return 0.0
        room = sub.burst / 100.0 - state.show_alloc_cores.get((job.show.id, host.alloc.id), 0.0)
        group = job.group
        if group.max_cores > 0:
            used = sum(j.reserved_cores for j in group.jobs.values() if not j.finished)
            room = min(room, group.max_cores - used)
        return room

    def _limits_allow(self, host: Host, layer: Layer) -> bool:
        """Cuebot's dispatcher books a frame only while each enforced limit of its layer is
        below its maximum: running frames for a FRAME limit, hosts for a HOST limit."""
        state = self.state
        for lid in layer.limits:
            lim = state.limits.get(lid)
            if lim is None or lim.enforcement != limit_pb2.ENFORCED:
                continue
            if lim.type == limit_pb2.HOST:
                hosts = state.limit_hosts.get(lid, {})
                if host.id not in hosts and len(hosts) >= lim.max_value:
                    return False
            elif state.limit_frames.get(lid, 0) >= lim.max_value:
                return False
        return True

    @staticmethod
    def _fits(host: Host, job: Job, layer: Layer) -> bool:
        if layer.counts[job_pb2.WAITING] == 0:
            return False
        cores = layer.min_cores
        if host.idle_cores < cores or host.idle_memory < layer.min_memory:
            return False
        if host.idle_gpus < layer.min_gpus:
            return False
        if job.max_cores > 0 and job.reserved_cores + cores > job.max_cores + EPSILON:
            return False
        if layer.max_cores > 0 and layer.reserved_cores + cores > layer.max_cores + EPSILON:
            return False
        if layer.tags and not any(t in host.tags for t in layer.tags):
            return False
        return True

    @staticmethod
    def _pop_waiting(layer: Layer) -> Frame | None:
        queue = layer.waiting
        while queue:
            frame = heapq.heappop(queue)[3]
            if frame.state == job_pb2.WAITING and frame.proc is None:
                return frame
        return None

    def book(self, host: Host, frame: Frame) -> Proc:
        state = self.state
        layer = frame.layer
        job = layer.job
        rng = random.Random(f"{state.seed}:{frame.id}:{frame.retry_count}")
        duration = max(5.0, layer.mean_seconds * rng.uniform(0.5, 1.5))
        rate = self.failure_rate if layer.fail_rate is None else layer.fail_rate
        succeeds = rng.random() >= rate
        used = int(layer.min_memory * rng.uniform(0.3, 0.95))
        now = state.now_int
        proc = Proc(
            id=state.new_id(),
            host=host,
            frame=frame,
            cores=layer.min_cores,
            memory=layer.min_memory,
            gpus=layer.min_gpus,
            booked_time=now,
            done_at_work=state.work + duration,
            succeeds=succeeds,
            used_memory=used,
        )
        state.procs[proc.id] = proc
        state.charge(proc, +1)
        host.procs[proc.id] = proc
        host.idle_cores -= proc.cores
        host.idle_memory -= proc.memory
        host.idle_gpus -= proc.gpus
        host.cache = None
        job.reserved_cores += proc.cores
        job.reserved_gpus += proc.gpus
        job.running_procs += 1
        layer.reserved_cores += proc.cores
        layer.reserved_gpus += proc.gpus
        if not layer.start_time:
            layer.start_time = now
        frame.proc = proc
        frame.start_time = now
        frame.stop_time = 0
        frame.exit_status = -1
        frame.reserved_memory = proc.memory
        frame.used_memory = used
        frame.llu_time = now
        frame.last_resource = proc.name
        state.set_frame_state(frame, job_pb2.RUNNING)
        heapq.heappush(self.events, (proc.done_at_work, state.next_seq(), proc))
        self.booked_procs += 1
        return proc

    # ---- finishing ------------------------------------------------------------------
    def _release(self, proc: Proc) -> int:
        """Free a proc's resources; returns the seconds its frame ran."""
        state = self.state
        frame = proc.frame
        host = proc.host
        layer = frame.layer
        job = layer.job
        if state.procs.pop(proc.id, None) is not None:
            state.charge(proc, -1)
        host.procs.pop(proc.id, None)
        host.idle_cores = min(host.cores, host.idle_cores + proc.cores)
        host.idle_memory = min(host.memory, host.idle_memory + proc.memory)
        host.idle_gpus = min(host.gpus, host.idle_gpus + proc.gpus)
        host.cache = None
        job.reserved_cores = max(0.0, job.reserved_cores - proc.cores)
        job.reserved_gpus = max(0.0, job.reserved_gpus - proc.gpus)
        job.running_procs -= 1
        layer.reserved_cores = max(0.0, layer.reserved_cores - proc.cores)
        layer.reserved_gpus = max(0.0, layer.reserved_gpus - proc.gpus)
        frame.proc = None
        now = state.now_int
        runtime = max(0, now - frame.start_time)
        frame.stop_time = now
        frame.llu_time = now
        frame.total_core_time += int(runtime * proc.cores)
        frame.max_rss = max(frame.max_rss, proc.used_memory)
        frame.used_memory = 0
        frame.reserved_memory = 0
        job.max_rss = max(job.max_rss, proc.used_memory)
        layer.max_rss = max(layer.max_rss, proc.used_memory)
        if host.reboot_when_idle and not host.procs:
            host.reboot_when_idle = False
            self.reboot(host)
        return runtime

    def complete(self, proc: Proc) -> None:
        """A proc's frame ran to its end: record the result and free the proc."""
        state = self.state
        frame = proc.frame
        layer = frame.layer
        job = layer.job
        runtime = self._release(proc)
        core_sec = int(runtime * proc.cores)
        if proc.succeeds:
            frame.exit_status = 0
            layer.rendered_frame_count += 1
            job.rendered_frame_count += 1
            job.show.rendered_frame_count += 1
            layer.rendered_core_sec += core_sec
            job.rendered_core_sec += core_sec
            layer.succeeded_sec_total += runtime
            job.succeeded_sec_total += runtime
            layer.high_frame_sec = max(layer.high_frame_sec, runtime)
            job.high_frame_sec = max(job.high_frame_sec, runtime)
            if not layer.low_frame_sec or runtime < layer.low_frame_sec:
                layer.low_frame_sec = runtime
            state.set_frame_state(frame, job_pb2.SUCCEEDED)
            return
        frame.exit_status = 1
        layer.failed_frame_count += 1
        job.failed_frame_count += 1
        job.show.failed_frame_count += 1
        layer.failed_core_sec += core_sec
        job.failed_core_sec += core_sec
        if frame.retry_count < job.max_retries:
            frame.retry_count += 1
            state.make_ready(frame)
        elif job.auto_eat:
            state.set_frame_state(frame, job_pb2.EATEN)
        else:
            state.set_frame_state(frame, job_pb2.DEAD)

    def stop(self, proc: Proc, new_state: int | None = None) -> None:
        """Kill or unbook a running proc; its frame goes to ``new_state`` (default: back
        in line)."""
        frame = proc.frame
        self._release(proc)
        frame.exit_status = -1
        self.unbooked_procs += 1
        if new_state is None:
            self.state.make_ready(frame)
        else:
            self.state.set_frame_state(frame, new_state)
