"""Deterministic demo farm: a facility, shows, groups, hosts and jobs in every state.

The farm is built at ``now - warmup`` and then run at real speed up to ``now``, so
running, succeeded and dead frames come from the scheduler itself rather than being
painted on, and their times are a plausible past: none is later than the clock.
"""

from __future__ import annotations

import random

from opencue_proto import depend_pb2, filter_pb2, host_pb2, job_pb2, limit_pb2

from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.farm import Farm
from opencue_sandbox.launch import JobPlan, LayerPlan, create_job
from opencue_sandbox.model import (
    Action,
    Allocation,
    Comment,
    Deed,
    Department,
    Facility,
    Filter,
    Group,
    Host,
    Limit,
    Matcher,
    Owner,
    Service,
    ServiceOverride,
    Show,
    Subscription,
    Task,
)

GB = 1024 * 1024  # KB
SHOWS = ("testing", "pipe", "demo")
USERS = ("alice", "bob", "carol", "dave", "erin")
DEPTS = ("Unknown", "lighting", "comp", "fx", "anim", "layout")
SUBGROUPS = {
    "testing": (("lighting", None), ("comp", None), ("fx", None), ("fx_sims", "fx")),
    "pipe": (("rnd", None), ("tools", None)),
    "demo": (("showcase", None),),
}
# name, service, cores, memory GB, mean seconds, layer type
LAYER_KINDS = (
    ("prep", "shell", 1.0, 2, 120.0, job_pb2.PRE),
    ("render", "arnold", 4.0, 8, 600.0, job_pb2.RENDER),
    ("comp", "nuke", 2.0, 4, 240.0, job_pb2.RENDER),
    ("denoise", "prman", 2.0, 6, 300.0, job_pb2.RENDER),
    ("export", "shell", 1.0, 2, 90.0, job_pb2.UTIL),
)
SERVICES = (
    # name, threadable, min cores (core units), min memory KB, tags
    ("default", False, 100, 3355443, ["general"]),
    ("shell", False, 100, 2 * GB, ["general"]),
    ("prman", False, 100, 4 * GB, ["general"]),
    ("arnold", True, 400, 8 * GB, ["general"]),
    ("maya", False, 100, 4 * GB, ["general"]),
    ("nuke", False, 200, 4 * GB, ["general"]),
    ("blender", True, 200, 4 * GB, ["general"]),
    ("katana", True, 200, 6 * GB, ["general"]),
)


def build_demo(farm: Farm, config: SandboxConfig) -> None:
    """Populate ``farm`` for ``config`` and run it through the warm-up period."""
    with farm.lock:
        _build(farm, config)


def _build(farm: Farm, config: SandboxConfig) -> None:
    state = farm.state
    rng = random.Random(config.seed)
    end = state.now
    # Big farms get a shorter history so that starting one stays a matter of seconds.
    warmup = config.warmup_seconds * min(1.0, 100.0 / max(1, config.n_hosts))
    state.now = end - warmup
    start = state.now_int

    facility = Facility(state.new_id(), "local")
    state.facilities[facility.id] = facility
    allocs: dict[str, Allocation] = {}
    for tag in ("general", "desktop", "unassigned"):
        alloc = Allocation(state.new_id(), f"local.{tag}", tag, facility)
        state.allocs[alloc.id] = alloc
        allocs[tag] = alloc
    state.default_alloc = allocs["general"]

    for name, threadable, cores, memory, tags in SERVICES:
        svc = Service(state.new_id(), name, threadable, cores, 0, memory, tags=list(tags))
        state.services[svc.id] = svc
    for name, max_value in (("arnold", 40), ("nuke", 12), ("prman", 30)):
        lim = Limit(state.new_id(), name, max_value, limit_pb2.FRAME, limit_pb2.ENFORCED)
        state.limits[lim.id] = lim
    state.dept_names.extend(DEPTS)

    shows = [_make_show(farm, name, allocs) for name in SHOWS]
    hosts = _make_hosts(farm, config.n_hosts, allocs, rng, start)
    _make_management(farm, shows, hosts, start)

    plans = _job_plans(config, rng)
    jobs = [create_job(farm, plan, start_time=start) for plan in plans]

    # Layer-on-layer depends inside every fourth job, and one job waiting on another.
    for i, job in enumerate(jobs):
        if i % 4 == 2 and len(job.layers) >= 2:
            farm.deps.create(
                depend_pb2.LAYER_ON_LAYER,
                job,
                job,
                er_layer=job.layers[-1],
                on_layer=job.layers[0],
            )
    if len(jobs) >= 13:
        farm.deps.create(depend_pb2.JOB_ON_JOB, jobs[12], jobs[0])
    elif len(jobs) >= 4:
        farm.deps.create(depend_pb2.JOB_ON_JOB, jobs[3], jobs[2])

    if jobs:
        jobs[0].comments.append(
            Comment(
                state.new_id(), start, "alice", "retakes", "Check frame 12 noise", "job", jobs[0].id
            )
        )
        state.comments[jobs[0].comments[0].id] = jobs[0].comments[0]

    farm.sched.dispatch(None)
    farm.sched.advance_to(end, 1.0)

    # Make sure every frame state is on show: eat a dead frame, kill one job.
    for job in jobs:
        dead = [f for layer in job.layers for f in layer.frames if f.state == job_pb2.DEAD]
        if len(dead) >= 2:
            farm.eat(dead[0])
            break
    killable = [j for j in jobs if not j.finished and j.name.endswith("_cleanup")]
    for job in killable[:1]:
        farm.finish_job(job)
    if state.dispatch_dirty:
        farm.sched.dispatch(None)


def _make_show(farm: Farm, name: str, allocs: dict[str, Allocation]) -> Show:
    state = farm.state
    show = Show(state.new_id(), name, comment_email=f"{name}-prod@example.com")
    state.shows[show.id] = show
    root = Group(state.new_id(), name, show, None)
    show.root = root
    state.groups[root.id] = root
    by_name = {name: root}
    for sub, parent in SUBGROUPS.get(name, ()):
        up = by_name[parent] if parent else root
        group = Group(state.new_id(), sub, show, up, department=sub)
        up.children.append(group)
        state.groups[group.id] = group
        by_name[sub] = group
    for tag, size, burst in (("general", 200, 400), ("desktop", 20, 50)):
        sub_ = Subscription(state.new_id(), show, allocs[tag], size * 100, burst * 100)
        state.subscriptions[sub_.id] = sub_
    for dept in DEPTS[1:4]:
        department = Department(state.new_id(), show, dept)
        show.departments[dept] = department
        state.departments[department.id] = department
    return show


def _make_hosts(
    farm: Farm, count: int, allocs: dict[str, Allocation], rng: random.Random, boot: int
) -> list[Host]:
    state = farm.state
    hosts: list[Host] = []
    desktops = max(1, count // 10) if count >= 4 else 0
    for i in range(count):
        desktop = i >= count - desktops
        alloc = allocs["desktop" if desktop else "general"]
        cores = 8.0 if desktop else float(rng.choice((8, 16, 16, 32)))
        memory = int(cores * 4) * GB
        gpus = 1.0 if (i % 5 == 4) else 0.0
        name = f"desk-{i:04d}" if desktop else f"render-{i:04d}"
        host = Host(
            id=state.new_id(),
            name=name,
            alloc=alloc,
            cores=cores,
            memory=memory,
            gpus=gpus,
            gpu_memory=int(gpus * 16 * GB),
            idle_cores=cores,
            idle_memory=memory,
            idle_gpus=gpus,
            idle_gpu_memory=int(gpus * 16 * GB),
            tags=[alloc.tag, "linux"] + (["gpu"] if gpus else []),
            boot_time=boot - 86400,
            ping_time=boot,
        )
        state.hosts[host.id] = host
        state.hosts_by_name[host.name] = host
        alloc.hosts[host.id] = host
        hosts.append(host)
    if count >= 6:
        hosts[2].lock_state = host_pb2.LOCKED
        hosts[4].state = host_pb2.DOWN
    if count >= 9:
        hosts[7].state = host_pb2.REPAIR
    return hosts


def _make_management(farm: Farm, shows: list[Show], hosts: list[Host], now: int) -> None:
    state = farm.state
    testing = shows[0]
    owner = Owner(state.new_id(), "alice", testing)
    state.owners[owner.id] = owner
    desktops = [h for h in hosts if h.alloc.tag == "desktop"]
    if desktops:
        deed = Deed(state.new_id(), desktops[0], owner)
        owner.deeds[deed.id] = deed
        desktops[0].deed = deed
        state.deeds[deed.id] = deed
    if hosts:
        note = Comment(
            state.new_id(), now, "ops", "disk", "Scratch disk replaced", "host", hosts[0].id
        )
        hosts[0].comments.append(note)
        state.comments[note.id] = note

    flt = Filter(state.new_id(), "auto_pause_tests", testing, filter_pb2.MATCH_ANY, 1.0, True)
    flt.matchers.append(
        Matcher(state.new_id(), flt, filter_pb2.JOB_NAME, filter_pb2.CONTAINS, "autotest")
    )
    flt.actions.append(Action(state.new_id(), flt, filter_pb2.PAUSE_JOB, filter_pb2.NONE_TYPE))
    testing.filters.append(flt)
    state.filters[flt.id] = flt
    state.matchers[flt.matchers[0].id] = flt.matchers[0]
    state.actions[flt.actions[0].id] = flt.actions[0]

    lighting = testing.departments["lighting"]
    for shot, cores in (("sh010", 20.0), ("sh020", 40.0)):
        task = Task(state.new_id(), lighting, shot, cores)
        lighting.tasks[shot] = task
        state.tasks[task.id] = task

    arnold = next(s for s in state.services.values() if s.name == "arnold")
    override = Service(state.new_id(), "arnold", True, 800, 0, 16 * GB, tags=["general"])
    so = ServiceOverride(state.new_id(), testing, override)
    testing.overrides[arnold.name] = so
    state.overrides[so.id] = so


def _job_plans(config: SandboxConfig, rng: random.Random) -> list[JobPlan]:
    n_jobs, n_layers, n_frames = config.n_jobs, config.n_layers, config.n_frames
    plans: list[JobPlan] = []
    for i in range(n_jobs):
        show = SHOWS[0] if i % 2 == 0 else SHOWS[1 + (i // 2) % 2]
        groups = [g for g, _ in SUBGROUPS[show]]
        shot = f"sh{(i % 9 + 1) * 10:03d}"
        user = USERS[i % len(USERS)]
        kind = ("lighting", "comp", "fx", "anim")[i % 4]
        suffix = f"{kind}_v{i + 1:03d}"
        plan = JobPlan(
            name=suffix,
            show=show,
            shot=shot,
            user=user,
            priority=100,
            max_retries=2,
            group=groups[i % len(groups)] if i % 3 else None,
        )
        frames = n_frames if n_frames > 0 else 1
        for k in range(max(1, n_layers)):
            base = LAYER_KINDS[k % len(LAYER_KINDS)]
            name = base[0] if k < len(LAYER_KINDS) else f"{base[0]}{k:02d}"
            jitter = rng.uniform(0.6, 1.4)
            plan.layers.append(
                LayerPlan(
                    name=name,
                    command=f"/usr/bin/{base[1]} --frame #IFRAME#",
                    range=f"1-{frames}",
                    type=base[5],
                    cores=base[2],
                    memory=base[3] * GB,
                    services=[base[1]],
                    limits=[base[1]] if base[1] in ("arnold", "nuke") else [],
                    mean_seconds=base[4] * jitter,
                    outputs=[f"/shots/{show}/{shot}/render/{name}/{name}.#.exr"],
                )
            )
        plans.append(plan)
    # The special cases every demo needs, placed over ordinary jobs when there are any.
    specials = len(plans)
    if specials >= 1:
        plans[min(4, specials - 1)].paused = True
    if specials >= 2:
        broken = plans[min(6, specials - 1)]
        broken.name = broken.name + "_broken"
        broken.max_retries = 1
        for lp in broken.layers:
            lp.fail_rate = 0.6
            lp.mean_seconds = 60.0
    if specials >= 3:
        quick = plans[min(8, specials - 1)]
        quick.name = quick.name + "_quick"
        quick.priority = 500
        for lp in quick.layers:
            lp.range = "1-3"
            lp.mean_seconds = 60.0
            lp.fail_rate = 0.0
    if specials >= 4:
        plans[min(10, specials - 1)].name += "_cleanup"
    return plans
