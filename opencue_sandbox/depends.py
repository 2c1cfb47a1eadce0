"""Dependencies between jobs, layers and frames.

A dependent frame counts its active depends (``depend_count``); while the count is
above zero a waiting frame sits in DEPEND. A depend is satisfied when everything on
its "on" side is SUCCEEDED or EATEN, or by hand (Satisfy, MarkDone, DropDepends).
"""

from __future__ import annotations

from opencue_proto import depend_pb2, job_pb2

from opencue_sandbox.model import DONE_STATES, Depend, Frame, Job, Layer
from opencue_sandbox.state import FarmState


def layer_done(layer: Layer) -> bool:
    return layer.counts[job_pb2.SUCCEEDED] + layer.counts[job_pb2.EATEN] == len(layer.frames)


def job_done(job: Job) -> bool:
    total = job.total_frames
    return job.finished or job.counts[job_pb2.SUCCEEDED] + job.counts[job_pb2.EATEN] == total


class Depends:
    def __init__(self, state: FarmState) -> None:
        self.state = state

    # ---- creation -------------------------------------------------------------------
    def create(
        self,
        type_: int,
        er_job: Job,
        on_job: Job,
        er_layer: Layer | None = None,
        er_frame: Frame | None = None,
        on_layer: Layer | None = None,
        on_frame: Frame | None = None,
        any_frame: bool = False,
        parent: Depend | None = None,
    ) -> Depend:
        state = self.state
        dep = Depend(
            id=state.new_id(),
            type=type_,
            er_job=er_job,
            on_job=on_job,
            er_layer=er_layer,
            er_frame=er_frame,
            on_layer=on_layer,
            on_frame=on_frame,
            any_frame=any_frame,
            parent=parent,
        )
        state.depends[dep.id] = dep
        for key in self._er_keys(dep):
            state.depends_er.setdefault(key, []).append(dep)
        for key in self._on_keys(dep):
            state.depends_on.setdefault(key, []).append(dep)
        if type_ == depend_pb2.FRAME_BY_FRAME and er_layer is not None and on_layer is not None:
            self._frame_by_frame(dep, er_layer, on_layer)
        elif self._on_complete(dep):
            dep.active = False
        else:
            for frame in dep.er_frames():
                self._hold(frame)
        return dep

    def _frame_by_frame(self, parent: Depend, er_layer: Layer, on_layer: Layer) -> None:
        by_number = {f.number: f for f in on_layer.frames}
        for frame in er_layer.frames:
            target = by_number.get(frame.number)
            if target is None:
                continue
            child = self.create(
                depend_pb2.FRAME_ON_FRAME,
                er_layer.job,
                on_layer.job,
                er_layer=er_layer,
                er_frame=frame,
                on_layer=on_layer,
                on_frame=target,
                parent=parent,
            )
            parent.children.append(child)
        parent.active = any(c.active for c in parent.children)

    @staticmethod
    def _er_keys(dep: Depend) -> list[str]:
        keys = [dep.er_job.id]
        if dep.er_layer is not None:
            keys.append(dep.er_layer.id)
        if dep.er_frame is not None:
            keys.append(dep.er_frame.id)
        return keys

    @staticmethod
    def _on_keys(dep: Depend) -> list[str]:
        keys = [dep.on_job.id]
        if dep.on_layer is not None:
            keys.append(dep.on_layer.id)
        if dep.on_frame is not None:
            keys.append(dep.on_frame.id)
        return keys

    @staticmethod
    def _on_complete(dep: Depend) -> bool:
        if dep.children:
            return all(not c.active for c in dep.children)
        if dep.on_frame is not None:
            return dep.on_frame.state in DONE_STATES
        if dep.on_layer is not None:
            return layer_done(dep.on_layer)
        return job_done(dep.on_job)

    # ---- holding and releasing frames -------------------------------------------------
    def _hold(self, frame: Frame) -> None:
        if frame.state in DONE_STATES:
            return
        frame.depend_count += 1
        if frame.state == job_pb2.WAITING:
            self.state.set_frame_state(frame, job_pb2.DEPEND)
        else:
            self.state.touch_frame(frame)

    def _release(self, frame: Frame) -> None:
        if frame.depend_count > 0:
            frame.depend_count -= 1
        if frame.depend_count == 0 and frame.state == job_pb2.DEPEND:
            self.state.set_frame_state(frame, job_pb2.WAITING)

    def satisfy(self, dep: Depend) -> None:
        if dep.children:
            for child in dep.children:
                self.satisfy(child)
            dep.active = False
            return
        if not dep.active:
            return
        dep.active = False
        for frame in dep.er_frames():
            self._release(frame)
        parent = dep.parent
        if parent is not None and parent.active and not any(c.active for c in parent.children):
            parent.active = False

    def unsatisfy(self, dep: Depend) -> None:
        if dep.active or dep.children:
            return
        dep.active = True
        for frame in dep.er_frames():
            self._hold(frame)

    # ---- reacting to completions -----------------------------------------------------
    def frame_done(self, frame: Frame) -> None:
        """Satisfy the depends that were waiting on ``frame``, its layer or its job."""
        depends_on = self.state.depends_on
        keys = [frame.id]
        if layer_done(frame.layer):
            keys.append(frame.layer.id)
            if job_done(frame.layer.job):
                keys.append(frame.layer.job.id)
        for key in keys:
            for dep in list(depends_on.get(key, ())):
                if dep.active and not dep.children and self._on_complete(dep):
                    self.satisfy(dep)

    def job_finished(self, job: Job) -> None:
        for dep in list(self.state.depends_on.get(job.id, ())):
            if dep.active and not dep.children and dep.on_layer is None and dep.on_frame is None:
                self.satisfy(dep)

    # ---- queries and bulk drops -------------------------------------------------------
    def what_this_depends_on(self, key: str, level: str) -> list[Depend]:
        return [d for d in self.state.depends_er.get(key, ()) if d.active and self._level(d, level)]

    def what_depends_on_this(self, key: str, level: str) -> list[Depend]:
        return [
            d for d in self.state.depends_on.get(key, ()) if d.active and self._on_level(d, level)
        ]

    def all_for_job(self, job: Job) -> list[Depend]:
        seen: dict[str, Depend] = {}
        for d in self.state.depends_er.get(job.id, ()):
            seen[d.id] = d
        for d in self.state.depends_on.get(job.id, ()):
            seen[d.id] = d
        return [d for d in seen.values() if d.parent is None]

    @staticmethod
    def _level(dep: Depend, level: str) -> bool:
        if dep.parent is not None and level != "frame":
            return False
        if level == "layer":
            return dep.er_layer is not None
        if level == "frame":
            return dep.er_frame is not None
        return True

    @staticmethod
    def _on_level(dep: Depend, level: str) -> bool:
        if dep.parent is not None and level != "frame":
            return False
        if level == "layer":
            return dep.on_layer is not None
        if level == "frame":
            return dep.on_frame is not None
        return True

    def drop(self, key: str, level: str, target: int) -> int:
        dropped = 0
        for dep in self.what_this_depends_on(key, level):
            if target != depend_pb2.ANY_TARGET and dep.target != target:
                continue
            self.satisfy(dep)
            dropped += 1
        return dropped
