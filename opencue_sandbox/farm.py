"""The thread-safe farm: one lock around the state, the scheduler and the depends.

Servicers enter ``read()`` to look things up and ``mutate()`` to change them; a
mutation first brings the farm up to the clock, then re-dispatches afterwards so that
freed or new work is booked at the mutation's own time.

The clock is the wall clock (a fake one in tests); ``config.speed`` only says how fast
work progresses against it, so timestamps are real whatever the speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opencue_proto import job_pb2

from opencue_sandbox.clock import Clock
from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.depends import Depends, job_done, layer_done
from opencue_sandbox.errors import internal, readonly
from opencue_sandbox.model import DONE_STATES, Frame, Group, Job
from opencue_sandbox.scheduler import Scheduler
from opencue_sandbox.state import FarmState


class Farm:
    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.state = FarmState(config.seed, clock.now())
        self.sched = Scheduler(self.state, config.failure_rate)
        self.deps = Depends(self.state)
        self.state.on_frame_done = self._frame_done
        self.started_at = self.state.now
        self.requests = 0

    # ---- time -----------------------------------------------------------------------
    @property
    def now(self) -> float:
        with self.lock:
            return self.state.now

    @property
    def work(self) -> float:
        """Seconds of simulated work the farm has done since it was built."""
        with self.lock:
            return self.state.work

    def advance_to(self, when: float) -> None:
        """Run the farm at real speed up to time ``when`` (never moves backwards).

        A test and benchmark hook: it may take the farm ahead of the clock, which then
        waits for the clock to catch up."""
        with self.lock:
            self.sched.advance_to(when, 1.0)

    def advance(self, seconds: float) -> None:
        """Run the farm at real speed for ``seconds`` more (see ``advance_to``)."""
        with self.lock:
            self.sched.advance_to(self.state.now + seconds, 1.0)

    def sync(self) -> None:
        """Catch up with the clock, work running at ``speed``; what the ticker calls."""
        with self.lock:
            self.sched.advance_to(self.clock.now(), self.config.speed)

    # ---- access ---------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[FarmState]:
        with self.lock:
            yield self.state

    @contextmanager
    def mutate(self) -> Iterator[FarmState]:
        with self.lock:
            self.sched.advance_to(self.clock.now(), self.config.speed)
            yield self.state
            if self.state.dispatch_dirty:
                self.sched.dispatch(None)

    def check_writable(self, job: Job) -> None:
        """Cuebot's ServantUtil.attemptChange: finished jobs refuse most changes."""
        if self.config.finished_jobs_readonly and job.finished:
            raise readonly()

    # ---- job lifecycle --------------------------------------------------------------
    def _frame_done(self, frame: Frame) -> None:
        layer = frame.layer
        job = layer.job
        if layer_done(layer):
            layer.stop_time = self.state.now_int
        self.deps.frame_done(frame)
        if not job.finished and job_done(job):
            self.finish_job(job)

    def finish_job(self, job: Job) -> None:
        """End a job (completed or killed): release its procs and mark it FINISHED."""
        state = self.state
        if job.finished:
            return
        for layer in job.layers:
            for frame in layer.frames:
                if frame.proc is not None:
                    self.sched.stop(frame.proc, job_pb2.WAITING)
        job.state = job_pb2.FINISHED
        job.stop_time = state.now_int
        state.active_jobs.pop(job.id, None)
        state.touch_job(job)
        state.dispatch_dirty = True
        state.order_dirty = True
        state.reindex()
        self.deps.job_finished(job)

    def move_job(self, job: Job, group: Group) -> None:
        """Re-home a job in another group of the same show."""
        if group.show is not job.show:
            raise internal(f"group {group.name} belongs to another show than job {job.name}")
        job.group.jobs.pop(job.id, None)
        job.group.cache = None
        job.group = group
        group.jobs[job.id] = job
        self.state.touch_job(job)

    def pause(self, job: Job, paused: bool) -> None:
        job.paused = paused
        self.state.touch_job(job)
        self.state.dispatch_dirty = True
        self.state.order_dirty = True
        self.state.reindex()

    # ---- frame operations -----------------------------------------------------------
    def retry(self, frame: Frame) -> None:
        """Cuebot's retry: a running frame is killed, any frame goes back in line."""
        if frame.proc is not None:
            self.sched.stop(frame.proc)
            return
        if frame.state in (job_pb2.WAITING, job_pb2.DEPEND):
            return
        frame.exit_status = -1
        self.state.make_ready(frame)
        self._reopen(frame.job)

    def kill(self, frame: Frame) -> None:
        if frame.proc is not None:
            self.sched.stop(frame.proc)

    def eat(self, frame: Frame) -> None:
        if frame.proc is not None:
            self.sched.stop(frame.proc, job_pb2.EATEN)
        elif frame.state != job_pb2.EATEN:
            self.state.set_frame_state(frame, job_pb2.EATEN)

    def mark_waiting(self, frame: Frame) -> None:
        """Cuebot's markFrameAsWaiting: drop the frame's depend count and queue it."""
        if frame.state != job_pb2.DEPEND:
            return
        frame.depend_count = 0
        self.state.set_frame_state(frame, job_pb2.WAITING)

    def mark_depend(self, frame: Frame) -> None:
        active = sum(1 for d in self.state.depends_er.get(frame.id, ()) if d.active)
        frame.depend_count = max(frame.depend_count, active)
        if frame.depend_count > 0 and frame.state == job_pb2.WAITING:
            self.state.set_frame_state(frame, job_pb2.DEPEND)

    def mark_done(self, frames: list[Frame]) -> None:
        """MarkDoneFrames: satisfy what waits on these frames as if they had succeeded."""
        for frame in frames:
            for dep in list(self.state.depends_on.get(frame.id, ())):
                if dep.on_frame is frame:
                    self.deps.satisfy(dep)
        layers = {f.layer.id: f.layer for f in frames}
        for layer in layers.values():
            if all(f in frames or f.state in DONE_STATES for f in layer.frames):
                for dep in list(self.state.depends_on.get(layer.id, ())):
                    if dep.on_frame is None:
                        self.deps.satisfy(dep)

    def _reopen(self, job: Job) -> None:
        """A finished job whose frames are retried runs again, as in Cuebot."""
        if job.finished and not job_done(job):
            job.state = job_pb2.PENDING
            job.stop_time = 0
            self.state.active_jobs[job.id] = job
            self.state.jobs_by_name[job.name] = job
            self.state.touch_job(job)
            self.state.dispatch_dirty = True
            self.state.order_dirty = True
            self.state.reindex()

    def reorder(self, frames: list[Frame], order: int) -> None:
        """Move ``frames`` to the front (FIRST), back (LAST) or reverse their order."""
        by_layer: dict[str, list[Frame]] = {}
        for frame in frames:
            by_layer.setdefault(frame.layer.id, []).append(frame)
        for chosen in by_layer.values():
            layer = chosen[0].layer
            picked = {f.id for f in chosen}
            rest = [
                f
                for f in sorted(layer.frames, key=lambda f: f.dispatch_order)
                if f.id not in picked
            ]
            chosen.sort(key=lambda f: f.dispatch_order)
            if order == job_pb2.FIRST:
                seq = chosen + rest
            elif order == job_pb2.LAST:
                seq = rest + chosen
            else:
                slots = sorted(f.dispatch_order for f in chosen)
                for frame, slot in zip(reversed(chosen), slots, strict=True):
                    frame.dispatch_order = slot
                    self.state.touch_frame(frame)
                self.state.rebuild_queue(layer)
                continue
            for i, frame in enumerate(seq):
                if frame.dispatch_order != i:
                    frame.dispatch_order = i
                    self.state.touch_frame(frame)
            self.state.rebuild_queue(layer)

    def stagger(self, frames: list[Frame], stagger: int) -> None:
        """Interleave: every ``stagger``-th frame first, then the next offset, and so on."""
        if stagger <= 1:
            return
        by_layer: dict[str, list[Frame]] = {}
        for frame in frames:
            by_layer.setdefault(frame.layer.id, []).append(frame)
        for chosen in by_layer.values():
            chosen.sort(key=lambda f: f.number)
            slots = sorted(f.dispatch_order for f in chosen)
            new_order = [f for off in range(stagger) for f in chosen[off::stagger]]
            for frame, slot in zip(new_order, slots, strict=True):
                frame.dispatch_order = slot
                self.state.touch_frame(frame)
            self.state.rebuild_queue(chosen[0].layer)
