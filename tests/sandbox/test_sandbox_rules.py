"""The demo farm tells the time and keeps Cuebot's booking rules.

Synchronous: each test builds a farm on a fake wall clock (no gRPC server, no ticker
thread) and moves it the way the ticker would, by moving the clock and calling ``sync``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opencue_proto import host_pb2, job_pb2, limit_pb2

from opencue_sandbox import ManualClock, SandboxConfig, protos
from opencue_sandbox.farm import Farm
from opencue_sandbox.launch import JobPlan, LayerPlan, create_job
from opencue_sandbox.model import Frame, Group, Host, Job, Limit, Proc, Show, Subscription
from opencue_sandbox.server import build_farm

START = 1_750_000_000.0
TICK = 0.25  # what the sandbox's ticker thread waits between syncs


def demo_farm(speed: float = 10.0, **overrides: object) -> tuple[Farm, ManualClock]:
    """The demo farm, built on a fake wall clock."""
    clock = ManualClock(START)
    config = SandboxConfig(port=0, seed=7, speed=speed, clock=clock, **overrides)  # type: ignore[arg-type]
    return build_farm(config), clock


def run(farm: Farm, clock: ManualClock, seconds: float, step: float = TICK) -> Iterator[None]:
    """Move the clock ``seconds`` in ticker-sized steps, syncing the farm after each."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        farm.sync()
        yield


def launch(farm: Farm, plan: JobPlan) -> Job:
    """Launch a job the way LaunchSpec does: inside a mutation, so it is dispatched."""
    with farm.mutate():
        return create_job(farm, plan)


def watch_bookings(farm: Farm, check: Callable[[Proc], None]) -> list[Proc]:
    """Run ``check`` after every booking the scheduler makes; returns the bookings."""
    booked: list[Proc] = []
    real_book = farm.sched.book

    def book(host: Host, frame: Frame) -> Proc:
        proc = real_book(host, frame)
        booked.append(proc)
        check(proc)
        return proc

    farm.sched.book = book  # type: ignore[method-assign]
    return booked


def all_timestamps(farm: Farm) -> dict[str, list[int]]:
    """Every time the farm answers with, by where it comes from."""
    state = farm.state
    now = state.now_int
    frames = list(state.frames.values())
    return {
        "frame start": [f.start_time for f in frames],
        "frame stop": [f.stop_time for f in frames],
        "frame llu": [f.llu_time for f in frames],
        "frame updated": [f.updated_time for f in frames],
        "job start": [j.start_time for j in state.jobs.values()],
        "job stop": [j.stop_time for j in state.jobs.values()],
        "layer start": [la.start_time for la in state.layers.values()],
        "layer stop": [la.stop_time for la in state.layers.values()],
        "proc dispatch": [protos.proc(p, now).dispatch_time for p in state.procs.values()],
        "proc ping": [protos.proc(p, now).ping_time for p in state.procs.values()],
        "host ping": [protos.host(h, now).ping_time for h in state.hosts.values()],
        "host boot": [h.boot_time for h in state.hosts.values()],
        "comment": [c.timestamp for c in state.comments.values()],
    }


# ---- the clock -------------------------------------------------------------------------------


def test_timestamps_are_wall_time_after_a_minute_at_speed_10() -> None:
    """After a minute at speed 10 the farm's time is the clock's, no timestamp lies in the
    future, and ten minutes of work were done."""
    farm, clock = demo_farm(speed=10.0)
    work_before = farm.work
    finished_before = sum(1 for f in farm.state.frames.values() if f.stop_time)
    for _ in run(farm, clock, 60.0):
        pass
    now = clock.now()
    assert abs(farm.now - now) < 1.0
    assert farm.work - work_before == pytest.approx(600.0)
    for where, times in all_timestamps(farm).items():
        assert times, where
        assert max(times) <= now + 1.0, where
    up = [h for h in farm.state.hosts.values() if h.state == host_pb2.UP]
    pings = [protos.host(h, farm.state.now_int).ping_time for h in up]
    assert min(pings) >= now - protos.REPORT_SECONDS  # the last RQD report
    # Frames kept finishing during that minute, and at real times within it.
    stops = [f.stop_time for f in farm.state.frames.values() if f.stop_time > START]
    assert len(stops) > 0
    assert sum(1 for f in farm.state.frames.values() if f.stop_time) > finished_before
    assert all(START <= t <= now + 1.0 for t in stops)


def test_speed_makes_work_faster_not_time() -> None:
    """A frame needing 150-450 s of work (300 s mean) runs 15-45 s of wall time at speed 10;
    its start and stop times and its core time are the clock's."""
    farm, clock = demo_farm(speed=10.0)
    job = launch(
        farm,
        JobPlan(
            name="timed",
            show="testing",
            shot="sh100",
            user="tester",
            priority=10_000,
            layers=[LayerPlan(name="one", range="1-1", mean_seconds=300.0, fail_rate=0.0)],
        ),
    )
    frame = job.layers[0].frames[0]
    assert frame.state == job_pb2.RUNNING
    assert frame.start_time == int(START)
    for _ in run(farm, clock, 10.0):
        pass
    # Still running (it needs at least 15 s): its core time so far counts, as in Cuebot.
    assert frame.state == job_pb2.RUNNING
    assert protos.frame(frame, farm.state.now_int).total_core_time == 10
    for _ in run(farm, clock, 50.0):
        if frame.state == job_pb2.SUCCEEDED:
            break
    assert frame.state == job_pb2.SUCCEEDED
    runtime = frame.stop_time - frame.start_time
    assert 15 <= runtime <= 45
    assert frame.stop_time <= clock.now() <= frame.stop_time + 1


def test_speed_zero_freezes_work_but_not_time() -> None:
    """At speed 0 no frame finishes, but the farm's time still follows the clock."""
    farm, clock = demo_farm(speed=0.0)
    states = {f.id: f.state for f in farm.state.frames.values()}
    for _ in run(farm, clock, 30.0, step=1.0):
        pass
    assert {f.id: f.state for f in farm.state.frames.values()} == states
    assert farm.now == clock.now()


# ---- what has not happened yet ---------------------------------------------------------------


def test_a_frame_that_never_ran_reads_as_cuebot_reads_it() -> None:
    """No host yet: lastResource "" (Cuebot's NULL str_host), start, stop and LLU times 0;
    once it runs, lastResource names the proc as Cuebot's buildProcName does."""
    farm, _clock = demo_farm()
    job = launch(
        farm,
        JobPlan(
            name="later",
            show="testing",
            shot="sh100",
            user="tester",
            paused=True,
            layers=[LayerPlan(name="one", range="1-2", cores=2.0)],
        ),
    )
    for f in job.layers[0].frames:
        msg = protos.frame(f, farm.state.now_int)
        assert msg.last_resource == ""
        assert (msg.start_time, msg.stop_time, msg.llu_time) == (0, 0, 0)
        assert msg.submission_time == int(START)
        assert protos.updated_frame(f).last_resource == ""
    assert protos.layer(job.layers[0], farm.state).start_time == 0
    with farm.mutate() as state:
        job.paused = False
        state.dispatch_dirty = True
        state.order_dirty = True
    ran = job.layers[0].frames[0]
    assert ran.state == job_pb2.RUNNING
    assert ran.proc is not None
    assert protos.frame(ran, farm.state.now_int).last_resource == f"{ran.proc.host.name}/2.00/0"


def test_layer_stop_time_is_zero_while_frames_are_pending() -> None:
    """Like Cuebot's LAYER_MAPPER, a layer with frames still to run has no stop time, even
    if it stopped once before (retried frames)."""
    farm, _clock = demo_farm(speed=0.0)
    layer = next(
        la
        for la in farm.state.layers.values()
        if la.stop_time and la.counts[job_pb2.SUCCEEDED] == len(la.frames)
    )
    assert protos.layer(layer, farm.state).stop_time == layer.stop_time
    with farm.mutate():
        farm.retry(layer.frames[0])
    assert protos.layer(layer, farm.state).stop_time == 0


# ---- booking rules ---------------------------------------------------------------------------


def running_frames(farm: Farm, lim: Limit) -> list[Frame]:
    """Frames running in layers bound to ``lim``, counted from the frames themselves."""
    return [
        f
        for la in farm.state.layers.values()
        if lim.id in la.limits
        for f in la.frames
        if f.state == job_pb2.RUNNING
    ]


def new_limit(farm: Farm, name: str, max_value: int, **kw: int) -> Limit:
    lim = Limit(farm.state.new_id(), name, max_value, **kw)
    farm.state.limits[lim.id] = lim
    return lim


def limited_job(farm: Farm, name: str, limit: str, frames: int = 60) -> Job:
    return launch(
        farm,
        JobPlan(
            name=name,
            show="testing",
            shot="sh100",
            user="tester",
            priority=10_000,
            layers=[LayerPlan(name="lic", range=f"1-{frames}", limits=[limit], mean_seconds=120.0)],
        ),
    )


def test_demo_limits_are_within_their_maximum() -> None:
    """The demo's arnold (40) and nuke (12) limits are never above their maximum, and
    what a limit reports is what runs."""
    farm, clock = demo_farm(speed=10.0)
    limits = list(farm.state.limits.values())
    seen = {lim.name: 0 for lim in limits}
    for _ in run(farm, clock, 120.0, step=2.0):
        for lim in limits:
            count = len(running_frames(farm, lim))
            assert count <= lim.max_value, lim.name
            assert protos.limit(lim, farm.state).current_running == count
            seen[lim.name] = max(seen[lim.name], count)
    assert seen["arnold"] == 40 and seen["nuke"] == 12  # the limits do bind


def test_a_frame_limit_is_never_exceeded_while_frames_are_booked() -> None:
    """With a limit of 3 and 60 frames of top priority waiting, every single booking leaves
    at most 3 frames running under the limit, and the limit is reached."""
    farm, clock = demo_farm(speed=10.0)
    lim = new_limit(farm, "lowlic", 3)
    peak = [0]

    def check(proc: Proc) -> None:
        count = len(running_frames(farm, lim))
        assert count <= 3
        peak[0] = max(peak[0], count)

    booked = watch_bookings(farm, check)
    job = limited_job(farm, "licensed", "lowlic")
    for _ in run(farm, clock, 300.0, step=1.0):
        assert len(running_frames(farm, lim)) <= 3
    assert peak[0] == 3
    assert sum(1 for p in booked if p.frame.job is job) > 10  # frames kept cycling through
    assert job.counts[job_pb2.SUCCEEDED] > 10


def test_raising_a_limit_books_more_and_an_advisory_limit_does_not_block() -> None:
    """SetMaxValue-style changes apply at the next dispatch; ADVISORY limits only report."""
    farm, _clock = demo_farm(speed=0.0)
    lim = new_limit(farm, "soft", 2)
    limited_job(farm, "licensed", "soft", frames=20)
    assert len(running_frames(farm, lim)) == 2
    with farm.mutate() as state:
        lim.max_value = 5
        state.dispatch_dirty = True
    assert len(running_frames(farm, lim)) == 5
    advisory = new_limit(farm, "advice", 1, enforcement=limit_pb2.ADVISORY)
    limited_job(farm, "advised", "advice", frames=8)
    assert len(running_frames(farm, advisory)) > 1


def test_a_host_limit_counts_hosts() -> None:
    """A HOST limit of 2 keeps a layer's frames on at most two hosts at any booking."""
    farm, clock = demo_farm(speed=10.0)
    lim = new_limit(farm, "twohosts", 2, type=limit_pb2.HOST)
    peak = [0]

    def hosts() -> set[str]:
        return {f.proc.host.id for f in running_frames(farm, lim) if f.proc is not None}

    def check(proc: Proc) -> None:
        assert len(hosts()) <= 2
        peak[0] = max(peak[0], len(hosts()))

    watch_bookings(farm, check)
    limited_job(farm, "hosty", "twohosts")
    assert protos.limit(lim, farm.state).host_count == len(hosts())
    for _ in run(farm, clock, 120.0, step=2.0):
        assert protos.limit(lim, farm.state).host_count == len(hosts())
    assert peak[0] == 2


def make_show(farm: Farm, name: str, burst_cores: float | None) -> Show:
    """A show with a root group and, unless None, a subscription to local.general."""
    state = farm.state
    show = Show(state.new_id(), name)
    show.root = Group(state.new_id(), name, show, None)
    state.shows[show.id] = show
    state.groups[show.root.id] = show.root
    if burst_cores is not None:
        general = state.alloc_named("local.general")
        units = int(burst_cores * 100)
        sub = Subscription(state.new_id(), show, general, units, units)
        state.subscriptions[sub.id] = sub
    return show


def show_cores(farm: Farm, show: Show) -> float:
    return sum(p.cores for p in farm.state.procs.values() if p.frame.job.show is show)


def test_a_subscription_burst_caps_a_show_and_no_subscription_books_nothing() -> None:
    """Cuebot books a show's frame on an allocation only within its subscription's burst,
    and not at all where the show has no subscription."""
    farm, clock = demo_farm(speed=10.0)
    capped = make_show(farm, "capped", burst_cores=6.0)
    orphan = make_show(farm, "orphan", burst_cores=None)
    peak = [0.0]

    def check(proc: Proc) -> None:
        assert show_cores(farm, capped) <= 6.0
        assert proc.frame.job.show is not orphan
        peak[0] = max(peak[0], show_cores(farm, capped))

    watch_bookings(farm, check)
    for show in (capped, orphan):
        launch(
            farm,
            JobPlan(
                name="subbed",
                show=show.name,
                shot="sh1",
                user="tester",
                priority=10_000,
                layers=[LayerPlan(name="one", range="1-40", mean_seconds=60.0)],
            ),
        )
    for _ in run(farm, clock, 120.0, step=1.0):
        pass
    assert peak[0] == 6.0
    assert show_cores(farm, orphan) == 0.0
    sub = next(s for s in farm.state.subscriptions.values() if s.show is capped)
    assert protos.subscription(sub).reserved_cores <= 600


def test_a_group_max_cores_caps_its_jobs() -> None:
    """A group's maximum cores bounds the cores its jobs hold together."""
    farm, clock = demo_farm(speed=10.0)
    testing = farm.state.show_named("testing")
    assert testing.root is not None
    group = Group(farm.state.new_id(), "capped", testing, testing.root, max_cores=4.0)
    testing.root.children.append(group)
    farm.state.groups[group.id] = group
    peak = [0.0]

    def held() -> float:
        return sum(j.reserved_cores for j in group.jobs.values())

    def check(proc: Proc) -> None:
        assert held() <= 4.0
        peak[0] = max(peak[0], held())

    watch_bookings(farm, check)
    for name in ("g_one", "g_two"):
        launch(
            farm,
            JobPlan(
                name=name,
                show="testing",
                shot="sh1",
                user="tester",
                priority=10_000,
                group="capped",
                layers=[LayerPlan(name="one", range="1-20", mean_seconds=60.0)],
            ),
        )
    for _ in run(farm, clock, 60.0, step=1.0):
        pass
    assert peak[0] == 4.0
