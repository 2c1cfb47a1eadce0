"""Entities of the simulated render farm.

Plain mutable records; every invariant (counters, indexes, caches) is kept by
``FarmState`` so that these stay dumb. ``cache`` slots hold the last proto built for
the entity and are cleared whenever the entity changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opencue_proto import depend_pb2, filter_pb2, host_pb2, job_pb2, limit_pb2

FRAME_STATES = (
    job_pb2.WAITING,
    job_pb2.SETUP,
    job_pb2.RUNNING,
    job_pb2.SUCCEEDED,
    job_pb2.DEPEND,
    job_pb2.DEAD,
    job_pb2.EATEN,
    job_pb2.CHECKPOINT,
)
DONE_STATES = frozenset({job_pb2.SUCCEEDED, job_pb2.EATEN})


def new_counts() -> list[int]:
    return [0] * 8


class Entity:
    """A short repr: the generated one would walk the whole farm graph (a frame's layer,
    its job, all their frames...), which makes a failing test's traceback unreadable."""

    id: str

    def __repr__(self) -> str:
        name = getattr(self, "name", "")
        return f"<{type(self).__name__} {name} {self.id}>"


@dataclass(eq=False, repr=False)
class Facility(Entity):
    id: str
    name: str


@dataclass(eq=False, repr=False)
class Allocation(Entity):
    id: str
    name: str  # "<facility>.<tag>"
    tag: str
    facility: Facility
    billable: bool = True
    hosts: dict[str, Host] = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class Comment(Entity):
    id: str
    timestamp: int
    user: str
    subject: str
    message: str
    owner_kind: str  # "job" | "host"
    owner_id: str


@dataclass(eq=False, repr=False)
class Show(Entity):
    id: str
    name: str
    default_min_cores: float = 1.0
    default_max_cores: float = 200.0
    default_min_gpus: float = 0.0
    default_max_gpus: float = 100.0
    comment_email: str = ""
    booking_enabled: bool = True
    dispatch_enabled: bool = True
    active: bool = True
    scheduler_managed: bool = False
    root: Group | None = None
    created_job_count: int = 0
    created_frame_count: int = 0
    rendered_frame_count: int = 0
    failed_frame_count: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)  # unfinished and finished
    filters: list[Filter] = field(default_factory=list)
    overrides: dict[str, ServiceOverride] = field(default_factory=dict)  # by service name
    departments: dict[str, Department] = field(default_factory=dict)  # by dept name
    cache: Any = None


@dataclass(eq=False, repr=False)
class Group(Entity):
    id: str
    name: str
    show: Show
    parent: Group | None
    department: str = "Unknown"
    default_job_priority: int = 100
    default_job_min_cores: float = -1.0
    default_job_max_cores: float = -1.0
    default_job_min_gpus: float = -1.0
    default_job_max_gpus: float = -1.0
    min_cores: float = 0.0
    max_cores: float = -1.0
    min_gpus: float = 0.0
    max_gpus: float = -1.0
    children: list[Group] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    cache: Any = None

    @property
    def level(self) -> int:
        depth, g = 0, self.parent
        while g is not None:
            depth, g = depth + 1, g.parent
        return depth


@dataclass(eq=False, repr=False)
class Job(Entity):
    id: str
    name: str
    show: Show
    group: Group
    shot: str
    user: str
    facility: str
    seq: int  # submission order, the dispatch tie-breaker
    os: str = "Linux"
    uid: int = 1000
    priority: int = 100
    min_cores: float = 1.0
    max_cores: float = 200.0
    min_gpus: float = 0.0
    max_gpus: float = 100.0
    log_dir: str = ""
    paused: bool = False
    auto_eat: bool = False
    state: int = job_pb2.PENDING
    start_time: int = 0
    stop_time: int = 0
    max_retries: int = 3
    email: str = ""
    layers: list[Layer] = field(default_factory=list)
    counts: list[int] = field(default_factory=new_counts)
    reserved_cores: float = 0.0
    reserved_gpus: float = 0.0
    running_procs: int = 0
    rendered_core_sec: int = 0
    failed_core_sec: int = 0
    succeeded_sec_total: int = 0
    high_frame_sec: int = 0
    rendered_frame_count: int = 0
    failed_frame_count: int = 0
    max_rss: int = 0
    comments: list[Comment] = field(default_factory=list)
    cache: Any = None

    @property
    def total_frames(self) -> int:
        return sum(self.counts)

    @property
    def finished(self) -> bool:
        return self.state == job_pb2.FINISHED


@dataclass(eq=False, repr=False)
class Layer(Entity):
    id: str
    name: str
    job: Job
    index: int
    type: int = job_pb2.RENDER
    range: str = "1-10"
    chunk: int = 1
    command: str = ""
    tags: list[str] = field(default_factory=lambda: ["general"])
    services: list[str] = field(default_factory=lambda: ["default"])
    min_cores: float = 1.0
    max_cores: float = 0.0
    threadable: bool = False
    min_memory: int = 3355443
    min_gpu_memory: int = 0
    min_gpus: float = 0.0
    max_gpus: float = 0.0
    timeout: int = 0
    timeout_llu: int = 0
    memory_optimizer: bool = False
    limits: list[str] = field(default_factory=list)  # limit ids
    output_paths: list[str] = field(default_factory=list)
    start_after: int = 0
    start_after_reason: str = ""
    # Simulation knobs: mean run time of a frame and the chance that one fails.
    mean_seconds: float = 300.0
    fail_rate: float | None = None
    frames: list[Frame] = field(default_factory=list)
    counts: list[int] = field(default_factory=new_counts)
    reserved_cores: float = 0.0
    reserved_gpus: float = 0.0
    rendered_core_sec: int = 0
    failed_core_sec: int = 0
    succeeded_sec_total: int = 0
    low_frame_sec: int = 0
    high_frame_sec: int = 0
    rendered_frame_count: int = 0
    failed_frame_count: int = 0
    max_rss: int = 0
    start_time: int = 0
    stop_time: int = 0
    # Heap of (dispatch_order, number, frame) candidates; stale entries are skipped.
    waiting: list[tuple[int, int, int, Frame]] = field(default_factory=list)
    cache: Any = None


@dataclass(eq=False, repr=False)
class Frame(Entity):
    id: str
    layer: Layer
    number: int
    dispatch_order: int
    state: int = job_pb2.WAITING
    retry_count: int = 0
    exit_status: int = -1
    start_time: int = 0
    stop_time: int = 0
    max_rss: int = 0
    used_memory: int = 0
    reserved_memory: int = 0
    # Cuebot answers "" until the frame has had a host (frame.str_host is NULL), and 0 for
    # the times of what has not happened yet (NULL ts_started, ts_stopped, ts_llu).
    last_resource: str = ""
    total_core_time: int = 0
    llu_time: int = 0
    # When anything about the frame last changed (Cuebot's ts_updated; GetUpdatedFrames).
    updated_time: int = 0
    submission_time: int = 0
    eligible_time: int = 0
    checkpoint_state: int = job_pb2.DISABLED
    depend_count: int = 0
    proc: Proc | None = None
    cache: Any = None

    @property
    def name(self) -> str:
        return f"{self.number:04d}-{self.layer.name}"

    @property
    def job(self) -> Job:
        return self.layer.job


@dataclass(eq=False, repr=False)
class Host(Entity):
    id: str
    name: str
    alloc: Allocation
    cores: float
    memory: int  # KB
    gpus: float = 0.0
    gpu_memory: int = 0
    idle_cores: float = 0.0
    idle_memory: int = 0
    idle_gpus: float = 0.0
    idle_gpu_memory: int = 0
    total_swap: int = 8388608
    free_swap: int = 8388608
    total_mcp: int = 20971520
    free_mcp: int = 20971520
    os: str = "Linux"
    tags: list[str] = field(default_factory=list)
    state: int = host_pb2.UP
    lock_state: int = host_pb2.OPEN
    thread_mode: int = host_pb2.AUTO
    nimby_enabled: bool = False
    reboot_when_idle: bool = False
    boot_time: int = 0
    ping_time: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    deed: Deed | None = None
    cache: Any = None


@dataclass(eq=False, repr=False)
class Proc(Entity):
    id: str
    host: Host
    frame: Frame
    cores: float
    memory: int
    gpus: float
    booked_time: int
    # The farm's work clock (``FarmState.work``) reading at which the frame's work is done.
    done_at_work: float
    succeeds: bool
    used_memory: int
    unbooked: bool = False
    redirect_target: str = ""
    # What ``FarmState.charge`` counted this proc against: limit ids, (show, allocation).
    limits: tuple[str, ...] = ()
    charged_to: tuple[str, str] = ("", "")

    @property
    def name(self) -> str:
        return f"{self.host.name}/{self.cores:.2f}/{self.gpus:.0f}"


@dataclass(eq=False, repr=False)
class Owner(Entity):
    id: str
    name: str
    show: Show
    deeds: dict[str, Deed] = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class Deed(Entity):
    id: str
    host: Host
    owner: Owner


@dataclass(eq=False, repr=False)
class Filter(Entity):
    id: str
    name: str
    show: Show
    type: int = filter_pb2.MATCH_ANY
    order: float = 0.0
    enabled: bool = True
    matchers: list[Matcher] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class Matcher(Entity):
    id: str
    filter: Filter
    subject: int = filter_pb2.JOB_NAME
    type: int = filter_pb2.CONTAINS
    input: str = ""


@dataclass(eq=False, repr=False)
class Action(Entity):
    id: str
    filter: Filter
    type: int = filter_pb2.PAUSE_JOB
    value_type: int = filter_pb2.NONE_TYPE
    group_value: str = ""
    string_value: str = ""
    integer_value: int = 0
    float_value: float = 0.0
    boolean_value: bool = False


@dataclass(eq=False, repr=False)
class Limit(Entity):
    id: str
    name: str
    max_value: int
    type: int = limit_pb2.FRAME
    enforcement: int = limit_pb2.ENFORCED
    soft_value: int = 0
    exit_status: int = 0
    delay_minutes: int = 0
    auto_tag: bool = False
    report_ttl: int = 0


@dataclass(eq=False, repr=False)
class Subscription(Entity):
    id: str
    show: Show
    alloc: Allocation
    size: int
    burst: int

    @property
    def name(self) -> str:
        return f"{self.alloc.name}.{self.show.name}"


@dataclass(eq=False, repr=False)
class Service(Entity):
    id: str
    name: str
    threadable: bool = False
    min_cores: int = 100
    max_cores: int = 0
    min_memory: int = 3355443
    min_gpu_memory: int = 0
    tags: list[str] = field(default_factory=lambda: ["general"])
    timeout: int = 0
    timeout_llu: int = 0
    min_gpus: int = 0
    max_gpus: int = 0
    min_memory_increase: int = 2097152


@dataclass(eq=False, repr=False)
class ServiceOverride(Entity):
    id: str
    show: Show
    data: Service


@dataclass(eq=False, repr=False)
class Department(Entity):
    id: str
    show: Show
    dept: str
    ti_task: str = ""
    min_cores: float = 0.0
    ti_managed: bool = False
    tasks: dict[str, Task] = field(default_factory=dict)  # by shot

    @property
    def name(self) -> str:
        return f"{self.show.name}.{self.dept}"


@dataclass(eq=False, repr=False)
class Task(Entity):
    id: str
    department: Department
    shot: str
    min_cores: float
    adjust_cores: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.department.dept}.{self.shot}"


@dataclass(eq=False, repr=False)
class Depend(Entity):
    """A dependency; ``er_*`` waits for ``on_*``. Exactly one of each side's most
    specific level is set, e.g. a layer-on-job depend has er_layer and on_job."""

    id: str
    type: int
    er_job: Job
    on_job: Job
    er_layer: Layer | None = None
    er_frame: Frame | None = None
    on_layer: Layer | None = None
    on_frame: Frame | None = None
    any_frame: bool = False
    active: bool = True
    parent: Depend | None = None
    children: list[Depend] = field(default_factory=list)

    @property
    def target(self) -> int:
        same = self.er_job is self.on_job
        return depend_pb2.INTERNAL if same else depend_pb2.EXTERNAL

    def er_frames(self) -> list[Frame]:
        if self.er_frame is not None:
            return [self.er_frame]
        if self.er_layer is not None:
            return list(self.er_layer.frames)
        return [f for layer in self.er_job.layers for f in layer.frames]
