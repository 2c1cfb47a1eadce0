"""Creating jobs from a blueprint: shared by the demo seeding and LaunchSpec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from opencue_proto import depend_pb2, job_pb2

from opencue_sandbox.errors import Missing, internal
from opencue_sandbox.farm import Farm
from opencue_sandbox.model import Frame, Group, Job, Layer
from opencue_sandbox.search import parse_frame_range

_NAME_OK = re.compile(r"^[\w.]{3,}$")


@dataclass
class LayerPlan:
    name: str
    command: str = "/bin/true"
    range: str = "1-10"
    chunk: int = 1
    type: int = job_pb2.RENDER
    cores: float = 1.0
    max_cores: float = 0.0
    threadable: bool = False
    memory: int = 3355443  # KB
    gpus: float = 0.0
    gpu_memory: int = 0
    tags: list[str] = field(default_factory=lambda: ["general"])
    services: list[str] = field(default_factory=lambda: ["default"])
    limits: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    timeout: int = 0
    timeout_llu: int = 0
    mean_seconds: float = 300.0
    fail_rate: float | None = None


@dataclass
class JobPlan:
    name: str  # the suffix; the full name is show-shot-user_name
    show: str
    shot: str
    user: str
    facility: str = "local"
    os: str = "Linux"
    uid: int = 1000
    email: str = ""
    priority: int = 100
    paused: bool = False
    auto_eat: bool = False
    max_retries: int = 1
    max_cores: float | None = None
    group: str | None = None
    layers: list[LayerPlan] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.show}-{self.shot}-{self.user}_{self.name}".lower()


@dataclass
class DependPlan:
    """A spec <depend>: ``type`` is a depend_pb2.DependType; names are full job names."""

    type: int
    er_job: str
    on_job: str
    er_layer: str = ""
    on_layer: str = ""
    er_frame: str = ""
    on_frame: str = ""
    any_frame: bool = False


def check_name(kind: str, name: str) -> None:
    if not _NAME_OK.match(name.replace("-", "_")):
        raise internal(
            f"The {kind} name: {name} is not in the proper format. "
            f"{kind.capitalize()} names must be alpha numeric, no dashes or punctuation."
        )


def validate(farm: Farm, plan: JobPlan) -> None:
    """Raise a Cuebot-worded error for a plan Cuebot would refuse."""
    state = farm.state
    try:
        state.show_named(plan.show)
    except Missing:
        raise internal(f"The show '{plan.show}' does not exist") from None
    if not plan.layers:
        raise internal(f"The job {plan.full_name} has no layers")
    seen: set[str] = set()
    for layer in plan.layers:
        check_name("layer", layer.name)
        if layer.name in seen:
            raise internal(
                f"error, the layer {layer.name} was already defined in job {plan.full_name}"
            )
        seen.add(layer.name)
        if not parse_frame_range(layer.range):
            raise internal(f"invalid frame range {layer.range!r} in layer {layer.name}")
    existing = state.jobs_by_name.get(plan.full_name)
    if existing is not None and not existing.finished:
        raise internal(f"The job {plan.full_name} is already pending")


def create_job(farm: Farm, plan: JobPlan, start_time: int | None = None) -> Job:
    """Build a job with its layers and frames; the caller holds the farm lock."""
    validate(farm, plan)
    state = farm.state
    show = state.show_named(plan.show)
    assert show.root is not None
    group: Group = show.root
    if plan.group:
        for g in state.groups.values():
            if g.show is show and g.name == plan.group:
                group = g
                break
    now = state.now_int if start_time is None else start_time
    job_id = state.new_id()
    max_cores = plan.max_cores if plan.max_cores is not None else show.default_max_cores
    job = Job(
        id=job_id,
        name=plan.full_name,
        show=show,
        group=group,
        shot=plan.shot,
        user=plan.user,
        facility=plan.facility,
        seq=state.next_seq(),
        os=plan.os,
        uid=plan.uid,
        priority=plan.priority,
        min_cores=show.default_min_cores,
        max_cores=max_cores,
        log_dir=f"/shots/{show.name}/{plan.shot}/logs/{plan.full_name}--{job_id}",
        paused=plan.paused,
        auto_eat=plan.auto_eat,
        start_time=now,
        max_retries=plan.max_retries,
        email=plan.email,
    )
    state.add_job(job)
    for index, lp in enumerate(plan.layers):
        layer = Layer(
            id=state.new_id(),
            name=lp.name,
            job=job,
            index=index,
            type=lp.type,
            range=lp.range,
            chunk=max(1, lp.chunk),
            command=lp.command,
            tags=list(lp.tags),
            services=list(lp.services),
            min_cores=lp.cores,
            max_cores=lp.max_cores,
            threadable=lp.threadable,
            min_memory=lp.memory,
            min_gpu_memory=lp.gpu_memory,
            min_gpus=lp.gpus,
            timeout=lp.timeout,
            timeout_llu=lp.timeout_llu,
            output_paths=list(lp.outputs),
            mean_seconds=lp.mean_seconds,
            fail_rate=lp.fail_rate,
        )
        for name in lp.limits:
            for lim in state.limits.values():
                if lim.name == name:
                    layer.limits.append(lim.id)
        state.add_layer(layer)
        numbers = parse_frame_range(lp.range)[:: layer.chunk]
        for order, number in enumerate(numbers):
            frame = Frame(
                id=state.new_id(),
                layer=layer,
                number=number,
                dispatch_order=order,
                updated_time=now,
                submission_time=now,
                eligible_time=now,
            )
            state.add_frame(frame)
    return job


def add_depend(farm: Farm, plan: DependPlan) -> None:
    """Create a spec-level depend between jobs already created by the same launch."""
    state = farm.state
    er_job = state.job_named(plan.er_job)
    on_job = state.job_named(plan.on_job)

    def layer_of(job: Job, name: str) -> Layer | None:
        if not name:
            return None
        for layer in job.layers:
            if layer.name == name:
                return layer
        raise internal(f"depend refers to an unknown layer {name} in {job.name}")

    def frame_of(job: Job, name: str) -> Frame | None:
        if not name:
            return None
        for layer in job.layers:
            for frame in layer.frames:
                if frame.name == name:
                    return frame
        raise internal(f"depend refers to an unknown frame {name} in {job.name}")

    farm.deps.create(
        plan.type,
        er_job,
        on_job,
        er_layer=layer_of(er_job, plan.er_layer),
        er_frame=frame_of(er_job, plan.er_frame),
        on_layer=layer_of(on_job, plan.on_layer),
        on_frame=frame_of(on_job, plan.on_frame),
        any_frame=plan.any_frame or plan.type == depend_pb2.LAYER_ON_SIM_FRAME,
    )
