"""The sandbox farm through gRPC: motion over simulated time, job and frame mutations,
Cuebot's errors, search criteria, paging, LaunchSpec and determinism."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from opencue_proto import (
    department_pb2,
    department_pb2_grpc,
    depend_pb2,
    depend_pb2_grpc,
    host_pb2,
    host_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    limit_pb2,
    limit_pb2_grpc,
    show_pb2,
    show_pb2_grpc,
)

from opencue_sandbox import ManualClock, Sandbox, SandboxConfig, start_sandbox
from opencue_sandbox.jobspec import memory_kb

W, R, S, DEP, DEAD, EATEN = (
    job_pb2.WAITING,
    job_pb2.RUNNING,
    job_pb2.SUCCEEDED,
    job_pb2.DEPEND,
    job_pb2.DEAD,
    job_pb2.EATEN,
)


class Cue:
    """Stubs for one sandbox, plus the lookups the tests keep repeating."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.channel = grpc.insecure_channel(sb.address)
        self.show = show_pb2_grpc.ShowInterfaceStub(self.channel)
        self.job = job_pb2_grpc.JobInterfaceStub(self.channel)
        self.layer = job_pb2_grpc.LayerInterfaceStub(self.channel)
        self.frame = job_pb2_grpc.FrameInterfaceStub(self.channel)
        self.group = job_pb2_grpc.GroupInterfaceStub(self.channel)
        self.host = host_pb2_grpc.HostInterfaceStub(self.channel)
        self.proc = host_pb2_grpc.ProcInterfaceStub(self.channel)
        self.depend = depend_pb2_grpc.DependInterfaceStub(self.channel)
        self.limit = limit_pb2_grpc.LimitInterfaceStub(self.channel)
        self.dept = department_pb2_grpc.DepartmentInterfaceStub(self.channel)

    def jobs(self, **criteria: object) -> list[job_pb2.Job]:
        r = job_pb2.JobSearchCriteria(**criteria)  # type: ignore[arg-type]
        return list(self.job.GetJobs(job_pb2.JobGetJobsRequest(r=r)).jobs.jobs)

    def get_job(self, job: job_pb2.Job) -> job_pb2.Job:
        return self.job.GetJob(job_pb2.JobGetJobRequest(id=job.id)).job

    def frames(self, job: job_pb2.Job, **criteria: object) -> list[job_pb2.Frame]:
        req = job_pb2.FrameSearchCriteria(**criteria)  # type: ignore[arg-type]
        reply = self.job.GetFrames(job_pb2.JobGetFramesRequest(job=job, req=req))
        return list(reply.frames.frames)

    def layers(self, job: job_pb2.Job) -> list[job_pb2.Layer]:
        return list(self.job.GetLayers(job_pb2.JobGetLayersRequest(job=job)).layers.layers)

    def testing_job(self, suffix: str) -> job_pb2.Job:
        found = [j for j in self.jobs(shows=["testing"], include_finished=True) if suffix in j.name]
        assert found, suffix
        return found[0]

    def launch(self, spec: str) -> job_pb2.Job:
        reply = self.job.LaunchSpecAndWait(job_pb2.JobLaunchSpecAndWaitRequest(spec=spec))
        return reply.jobs.jobs[0]


def spec(
    name: str,
    frames: str = "1-4",
    show: str = "testing",
    retries: int = 2,
    extra_layers: str = "",
    depends: str = "",
    paused: bool = False,
) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" "http://localhost:8080/spcue/dtd/cjsl-1.15.dtd">
<spec><facility>local</facility><show>{show}</show><shot>sh900</shot><user>tester</user>
<uid>1001</uid><job name="{name}"><paused>{paused}</paused><maxretries>{retries}</maxretries>
<autoeat>False</autoeat><layers>
<layer name="render" type="Render"><cmd>/bin/render</cmd><range>{frames}</range><chunk>1</chunk>
<cores>1.0</cores><memory>1g</memory><services><service>shell</service></services></layer>
{extra_layers}</layers></job><depends>{depends}</depends></spec>"""


@pytest.fixture
def cue(sandbox_fresh: Sandbox) -> Iterator[Cue]:
    c = Cue(sandbox_fresh)
    yield c
    c.channel.close()


def sandbox_with(**overrides: object) -> Sandbox:
    return start_sandbox(SandboxConfig(port=0, seed=7, speed=0, **overrides))  # type: ignore[arg-type]


# ---- the API and the demo data ------------------------------------------------------------


def test_start_sandbox_api() -> None:
    """start_sandbox binds a free port, reports its address, and stop() is idempotent."""
    sb = sandbox_with()
    assert isinstance(sb.port, int) and sb.port > 0
    assert sb.address == f"127.0.0.1:{sb.port}"
    assert sb.farm.now > 0
    sb.stop()
    sb.stop(grace=0.1)
    with grpc.insecure_channel(sb.address) as channel, pytest.raises(grpc.RpcError):
        show_pb2_grpc.ShowInterfaceStub(channel).GetShows(show_pb2.ShowGetShowsRequest(), timeout=1)


def test_demo_testing_show_has_every_state(cue: Cue) -> None:
    """The demo's testing show has frames in every state, a paused job and a finished job."""
    jobs = cue.jobs(shows=["testing"], include_finished=True)
    states = {f.state for j in jobs for f in cue.frames(j, limit=1000)}
    assert {W, R, S, DEP, DEAD, EATEN} <= states
    assert any(j.is_paused for j in jobs)
    assert any(j.state == job_pb2.FINISHED and j.stop_time > 0 for j in jobs)
    shows = {s.name for s in cue.show.GetShows(show_pb2.ShowGetShowsRequest()).shows.shows}
    assert {"testing", "pipe", "demo"} <= shows
    for j in jobs:
        assert j.name.startswith(f"testing-{j.shot}-{j.user}_")


def test_show_stats_match_jobs(cue: Cue) -> None:
    """FindShow's stats add up the running, dead and pending frames of its unfinished jobs."""
    show = cue.show.FindShow(show_pb2.ShowFindShowRequest(name="testing")).show
    jobs = cue.jobs(shows=["testing"])
    assert show.show_stats.running_frames == sum(j.job_stats.running_frames for j in jobs) > 0
    assert show.show_stats.dead_frames == sum(j.job_stats.dead_frames for j in jobs)
    assert show.show_stats.pending_jobs == len(jobs)
    assert show.show_stats.reserved_cores == pytest.approx(
        sum(j.job_stats.reserved_cores for j in jobs)
    )


def test_layer_and_job_stats_agree_with_frames(cue: Cue) -> None:
    """Job and layer stats count exactly the frames GetFrames returns in each state."""
    job = cue.testing_job("_broken")
    frames = cue.frames(job, limit=1000)
    stats = job.job_stats
    assert stats.total_frames == len(frames)
    assert stats.dead_frames == sum(f.state == DEAD for f in frames)
    assert stats.succeeded_frames == sum(f.state == S for f in frames)
    assert stats.pending_frames == sum(f.state in (W, DEP) for f in frames)
    for layer in cue.layers(job):
        mine = [f for f in frames if f.layer_name == layer.name]
        assert layer.layer_stats.total_frames == len(mine)
        assert layer.layer_stats.running_frames == sum(f.state == R for f in mine)
        assert layer.parent_id == job.id


def test_host_idle_cores_follow_procs(cue: Cue) -> None:
    """A host's idle cores and memory are its totals minus what its procs reserve."""
    hosts = cue.host.GetHosts(host_pb2.HostGetHostsRequest()).hosts.hosts
    busy = [h for h in hosts if h.idle_cores < h.cores]
    assert busy
    for h in busy:
        procs = cue.host.GetProcs(host_pb2.HostGetProcsRequest(host=h)).procs.procs
        assert h.cores - h.idle_cores == pytest.approx(sum(p.reserved_cores for p in procs))
        assert h.memory - h.idle_memory == sum(p.reserved_memory for p in procs)


# ---- motion -------------------------------------------------------------------------------


def test_frames_go_waiting_running_succeeded_and_job_finishes() -> None:
    """Over simulated time a frame goes WAITING, RUNNING, SUCCEEDED and its job FINISHES."""
    sb = sandbox_with(failure_rate=0.0)
    cue = Cue(sb)
    try:
        # Launched paused, so that every frame is seen WAITING before the farm's idle cores
        # take it.
        job = cue.launch(spec("motion", frames="1-30", paused=True))
        assert job.state == job_pb2.PENDING
        seen: dict[str, list[int]] = {}
        for step in range(120):
            if step == 1:
                cue.job.Resume(job_pb2.JobResumeRequest(job=job))
            for f in cue.frames(job, limit=1000):
                history = seen.setdefault(f.name, [])
                if not history or history[-1] != f.state:
                    history.append(f.state)
            if cue.get_job(job).state == job_pb2.FINISHED:
                break
            sb.farm.advance(120.0)
        final = cue.get_job(job)
        assert final.state == job_pb2.FINISHED and final.stop_time >= final.start_time
        assert final.job_stats.succeeded_frames == 30
        assert final.job_stats.avg_frame_sec > 0
        assert any(h[:3] == [W, R, S] for h in seen.values())
        assert all(h[-1] == S for h in seen.values())
        done = cue.frames(job, limit=1000)
        assert all(f.stop_time >= f.start_time > 0 and f.exit_status == 0 for f in done)
    finally:
        cue.channel.close()
        sb.stop()


def test_failing_frames_retry_then_die() -> None:
    """A frame that keeps failing is retried max_retries times, then stays DEAD; the job
    stays PENDING with deadFrames, like Cuebot."""
    sb = sandbox_with(failure_rate=1.0)
    cue = Cue(sb)
    try:
        job = cue.launch(spec("doomed", frames="1-3", retries=2))
        sb.farm.advance(6 * 3600.0)
        frames = cue.frames(job)
        assert [f.state for f in frames] == [DEAD] * 3
        assert all(f.retry_count == 2 and f.exit_status != 0 for f in frames)
        final = cue.get_job(job)
        assert final.state == job_pb2.PENDING and final.job_stats.dead_frames == 3
        assert final.job_stats.failed_frame_count == 9
    finally:
        cue.channel.close()
        sb.stop()


def test_pause_stops_dispatch_and_resume_restarts(cue: Cue) -> None:
    """A paused job gets no new frames booked; resuming it books frames again."""
    job = cue.launch(spec("pausable", frames="1-200"))
    cue.sb.farm.advance(30.0)
    cue.job.Pause(job_pb2.JobPauseRequest(job=job))
    assert cue.get_job(job).is_paused
    cue.sb.farm.advance(4 * 3600.0)
    assert cue.get_job(job).job_stats.running_frames == 0
    waiting = cue.get_job(job).job_stats.waiting_frames
    assert waiting > 0
    cue.job.Resume(job_pb2.JobResumeRequest(job=job))
    cue.sb.farm.advance(600.0)
    resumed = cue.get_job(job)
    assert not resumed.is_paused
    assert resumed.job_stats.waiting_frames < waiting


def test_kill_job_finishes_it_and_frees_procs(cue: Cue) -> None:
    """Kill makes a job FINISHED, releases its procs and hides it from FindJob."""
    job = next(j for j in cue.jobs(shows=["testing"]) if j.job_stats.running_frames > 0)
    cue.job.Kill(job_pb2.JobKillRequest(job=job, username="tester", reason="test"))
    killed = cue.get_job(job)
    assert killed.state == job_pb2.FINISHED and killed.stop_time > 0
    assert killed.job_stats.running_frames == 0 and killed.job_stats.reserved_cores == 0
    procs = cue.proc.GetProcs(
        host_pb2.ProcGetProcsRequest(r=host_pb2.ProcSearchCriteria(jobs=[job.name]))
    )
    assert not procs.procs.procs
    with pytest.raises(grpc.RpcError) as info:
        cue.job.FindJob(job_pb2.JobFindJobRequest(name=job.name))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert job.id not in {j.id for j in cue.jobs()}
    assert job.id in {j.id for j in cue.jobs(include_finished=True)}


def test_depend_is_released_when_its_target_completes() -> None:
    """A layer-on-layer depend holds frames in DEPEND until the other layer is done."""
    sb = sandbox_with(failure_rate=0.0)
    cue = Cue(sb)
    try:
        comp = (
            '<layer name="comp" type="Render"><cmd>/bin/comp</cmd><range>1-2</range>'
            "<chunk>1</chunk><cores>1</cores><services><service>nuke</service></services>"
            "</layer>"
        )
        dep = (
            '<depend type="LayerOnLayer" anyframe="False"><depjob>chain</depjob>'
            "<deplayer>comp</deplayer><onjob>chain</onjob><onlayer>render</onlayer></depend>"
        )
        job = cue.launch(spec("chain", frames="1-3", extra_layers=comp, depends=dep))
        comp_frames = [f for f in cue.frames(job) if f.layer_name == "comp"]
        assert [f.state for f in comp_frames] == [DEP, DEP]
        layer = next(la for la in cue.layers(job) if la.name == "comp")
        deps = cue.layer.GetWhatThisDependsOn(job_pb2.LayerGetWhatThisDependsOnRequest(layer=layer))
        assert deps.depends.depends[0].type == depend_pb2.LAYER_ON_LAYER
        assert deps.depends.depends[0].depend_on_layer == "render"
        for _ in range(100):
            sb.farm.advance(300.0)
            if cue.get_job(job).state == job_pb2.FINISHED:
                break
        assert cue.get_job(job).job_stats.succeeded_frames == 5
        render_done = max(f.stop_time for f in cue.frames(job) if f.layer_name == "render")
        assert all(f.start_time >= render_done for f in cue.frames(job) if f.layer_name == "comp")
    finally:
        cue.channel.close()
        sb.stop()


# ---- frame mutations ------------------------------------------------------------------------


def test_frame_interface_mutations(cue: Cue) -> None:
    """Retry, Eat, Kill and MarkAsWaiting on single frames change what GetFrame returns."""
    broken = cue.testing_job("_broken")
    dead = cue.frames(broken, states=job_pb2.FrameStateSeq(frame_states=[DEAD]))
    assert dead
    cue.frame.Retry(job_pb2.FrameRetryRequest(frame=dead[0]))
    after = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=dead[0].id)).frame
    assert after.state in (W, R, DEP)

    waiting = cue.frames(broken, states=job_pb2.FrameStateSeq(frame_states=[W]))[0]
    cue.frame.Eat(job_pb2.FrameEatRequest(frame=waiting))
    eaten = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=waiting.id)).frame
    assert eaten.state == EATEN

    running_job = next(j for j in cue.jobs(shows=["testing"]) if j.job_stats.running_frames)
    running = cue.frames(running_job, states=job_pb2.FrameStateSeq(frame_states=[R]))[0]
    cue.frame.Kill(job_pb2.FrameKillRequest(frame=running, reason="test"))
    killed = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=running.id)).frame
    assert killed.state != R or killed.start_time > running.start_time

    depend = cue.frames(broken, states=job_pb2.FrameStateSeq(frame_states=[DEP]))[0]
    cue.frame.MarkAsWaiting(job_pb2.FrameMarkAsWaitingRequest(frame=depend))
    marked = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=depend.id)).frame
    assert marked.state in (W, R)


def test_job_frame_operations_by_criteria(cue: Cue) -> None:
    """Job-level Retry/Eat/Kill/MarkDone frames act on the frames the criteria select."""
    broken = cue.testing_job("_broken")
    dead = job_pb2.FrameSearchCriteria(states=job_pb2.FrameStateSeq(frame_states=[DEAD]))
    cue.job.EatFrames(job_pb2.JobEatFramesRequest(job=broken, req=dead))
    assert cue.frames(broken, states=dead.states) == []
    assert cue.get_job(broken).job_stats.dead_frames == 0

    job = cue.launch(spec("bulk", frames="1-10"))
    assert any(f.state == R for f in cue.frames(job))
    # Paused, so that the farm's idle cores do not book the killed frames again at once.
    cue.job.Pause(job_pb2.JobPauseRequest(job=job))
    cue.job.KillFrames(
        job_pb2.JobKillFramesRequest(job=job, req=job_pb2.FrameSearchCriteria(frame_range="1-10"))
    )
    assert all(f.state != R for f in cue.frames(job))
    cue.job.EatFrames(
        job_pb2.JobEatFramesRequest(job=job, req=job_pb2.FrameSearchCriteria(frame_range="1-5"))
    )
    states = [f.state for f in cue.frames(job)]
    assert states[:5] == [EATEN] * 5 and EATEN not in states[5:]
    cue.job.RetryFrames(
        job_pb2.JobRetryFramesRequest(job=job, req=job_pb2.FrameSearchCriteria(frame_range="1-2"))
    )
    assert [f.state for f in cue.frames(job)][:2] != [EATEN, EATEN]


def test_layer_frame_operations(cue: Cue) -> None:
    """LayerInterface Eat/Retry/MarkdoneFrames act on every frame of the layer."""
    comp = (
        '<layer name="comp" type="Render"><cmd>c</cmd><range>1-3</range><chunk>1</chunk>'
        "<services><service>shell</service></services></layer>"
    )
    dep = (
        '<depend type="LayerOnLayer" anyframe="False"><depjob>lops</depjob>'
        "<deplayer>comp</deplayer><onjob>lops</onjob><onlayer>render</onlayer></depend>"
    )
    job = cue.launch(spec("lops", frames="1-3", extra_layers=comp, depends=dep))
    render, comp_layer = cue.layers(job)
    cue.layer.MarkdoneFrames(job_pb2.LayerMarkdoneFramesRequest(layer=render))
    assert all(f.state != DEP for f in cue.frames(job) if f.layer_name == "comp")
    cue.layer.EatFrames(job_pb2.LayerEatFramesRequest(layer=render))
    assert all(f.state == EATEN for f in cue.frames(job) if f.layer_name == "render")
    cue.layer.RetryFrames(job_pb2.LayerRetryFramesRequest(layer=render))
    assert all(f.state in (W, R) for f in cue.frames(job) if f.layer_name == "render")
    assert any(f.state == R for f in cue.frames(job) if f.layer_name == "comp")
    cue.job.Pause(job_pb2.JobPauseRequest(job=job))  # or idle cores book them again at once
    cue.layer.KillFrames(job_pb2.LayerKillFramesRequest(layer=comp_layer))
    assert all(f.state != R for f in cue.frames(job) if f.layer_name == "comp")


def test_reorder_and_stagger_change_dispatch_order(cue: Cue) -> None:
    """ReorderFrames FIRST moves a range to the front; StaggerFrames interleaves frames."""
    job = cue.launch(spec("order", frames="1-8", paused=True))
    cue.job.ReorderFrames(
        job_pb2.JobReorderFramesRequest(job=job, range="7-8", order=job_pb2.FIRST)
    )
    frames = sorted(cue.frames(job), key=lambda f: f.dispatch_order)
    assert [f.number for f in frames[:2]] == [7, 8]
    layer = cue.layers(job)[0]
    cue.layer.StaggerFrames(job_pb2.LayerStaggerFramesRequest(layer=layer, range="1-8", stagger=2))
    frames = sorted(cue.frames(job), key=lambda f: f.dispatch_order)
    assert [f.number for f in frames[:4]] == [1, 3, 5, 7]


def test_setters_change_job_layer_and_group(cue: Cue) -> None:
    """Job, layer and group setters change what the next read returns."""
    job = cue.jobs(shows=["testing"])[0]
    cue.job.SetPriority(job_pb2.JobSetPriorityRequest(job=job, val=321))
    cue.job.SetMaxCores(job_pb2.JobSetMaxCoresRequest(job=job, val=42.0))
    cue.job.SetMinCores(job_pb2.JobSetMinCoresRequest(job=job, val=3.0))
    cue.job.SetAutoEat(job_pb2.JobSetAutoEatRequest(job=job, value=True))
    cue.job.SetMaxRetries(job_pb2.JobSetMaxRetriesRequest(job=job, max_retries=5))
    got = cue.get_job(job)
    assert (got.priority, got.max_cores, got.min_cores, got.auto_eat) == (321, 42.0, 3.0, True)
    assert cue.sb.farm.state.jobs[job.id].max_retries == 5

    layer = cue.layers(job)[0]
    cue.layer.SetMinCores(job_pb2.LayerSetMinCoresRequest(layer=layer, cores=2.0))
    cue.layer.SetMinMemory(job_pb2.LayerSetMinMemoryRequest(layer=layer, memory=1048576))
    cue.layer.SetTags(job_pb2.LayerSetTagsRequest(layer=layer, tags=["general", "gpu"]))
    cue.layer.SetThreadable(job_pb2.LayerSetThreadableRequest(layer=layer, threadable=True))
    cue.layer.SetMinGpuMemory(job_pb2.LayerSetMinGpuMemoryRequest(layer=layer, gpu_memory=5))
    got_layer = cue.layer.GetLayer(job_pb2.LayerGetLayerRequest(id=layer.id)).layer
    assert got_layer.min_cores == 2.0 and got_layer.min_memory == 1048576
    assert list(got_layer.tags) == ["general", "gpu"] and got_layer.is_threadable
    assert got_layer.min_gpu_memory == 5

    group = cue.group.FindGroup(job_pb2.GroupFindGroupRequest(show="testing", name="fx")).group
    cue.group.SetMinCores(job_pb2.GroupSetMinCoresRequest(group=group, min_cores=5.0))
    cue.group.SetMaxCores(job_pb2.GroupSetMaxCoresRequest(group=group, max_cores=50.0))
    got_group = cue.group.GetGroup(job_pb2.GroupGetGroupRequest(id=group.id)).group
    assert (got_group.min_cores, got_group.max_cores) == (5.0, 50.0)


# ---- errors -----------------------------------------------------------------------------------


def code_of(call: object, *args: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)  # type: ignore[operator]
    return info.value.code(), info.value.details()


def test_errors_carry_cuebot_codes(cue: Cue) -> None:
    """Unknown names and ids answer the status codes and texts Cuebot's servants use."""
    empty = "Incorrect result size: expected 1, actual 0"
    assert code_of(cue.show.FindShow, show_pb2.ShowFindShowRequest(name="nope")) == (
        grpc.StatusCode.NOT_FOUND,
        empty,
    )
    assert code_of(cue.job.FindJob, job_pb2.JobFindJobRequest(name="nope")) == (
        grpc.StatusCode.NOT_FOUND,
        empty,
    )
    assert code_of(cue.job.GetJob, job_pb2.JobGetJobRequest(id="0000")) == (
        grpc.StatusCode.NOT_FOUND,
        empty,
    )
    assert code_of(cue.host.FindHost, host_pb2.HostFindHostRequest(name="nope")) == (
        grpc.StatusCode.NOT_FOUND,
        empty,
    )
    assert code_of(cue.job.Pause, job_pb2.JobPauseRequest(job=job_pb2.Job(id="x"))) == (
        grpc.StatusCode.INTERNAL,
        "Failed to find job data",
    )
    code, text = code_of(cue.limit.Find, limit_pb2.LimitFindRequest(name="nope"))
    assert code == grpc.StatusCode.INTERNAL and "EmptyResultDataAccessException" in text
    code, _ = code_of(cue.dept.Delete, department_pb2.DeptDeleteRequest())
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_finished_job_is_readonly(cue: Cue) -> None:
    """Setting priority or retrying frames of a finished job answers FAILED_PRECONDITION."""
    job = cue.testing_job("_quick")
    assert job.state == job_pb2.FINISHED
    assert code_of(cue.job.SetPriority, job_pb2.JobSetPriorityRequest(job=job, val=5)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Finished jobs are readonly",
    )
    code, _ = code_of(cue.job.RetryFrames, job_pb2.JobRetryFramesRequest(job=job))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    cue.job.SetMinCores(job_pb2.JobSetMinCoresRequest(job=job, val=2.0))
    assert cue.get_job(job).min_cores == 2.0


# ---- criteria and paging ----------------------------------------------------------------------


def test_frame_paging_is_capped_at_1000(cue: Cue) -> None:
    """GetFrames pages like Cuebot: limit <=0 or >=1000 means 1000, page defaults to 1."""
    job = cue.launch(spec("paging", frames="1-1500", paused=True))
    assert len(cue.frames(job)) == 1000
    assert len(cue.frames(job, limit=5000)) == 1000
    assert len(cue.frames(job, limit=1000, page=2)) == 500
    page3 = cue.frames(job, limit=100, page=3)
    assert [f.number for f in page3] == list(range(201, 301))
    layer = cue.layers(job)[0]
    reply = cue.layer.GetFrames(
        job_pb2.LayerGetFramesRequest(layer=layer, s=job_pb2.FrameSearchCriteria(limit=0))
    )
    assert len(reply.frames.frames) == 1000


def test_frame_page_cap_option_raises_the_cap() -> None:
    """SandboxConfig.frame_page_cap lets one GetFrames return more than 1000 frames."""
    sb = sandbox_with(frame_page_cap=5000, jobs=2, hosts=2)
    cue = Cue(sb)
    try:
        job = cue.launch(spec("bigpage", frames="1-3000", paused=True))
        assert len(cue.frames(job)) == 3000
    finally:
        cue.channel.close()
        sb.stop()


def test_frame_search_criteria(cue: Cue) -> None:
    """FrameSearchCriteria ids, frames, layers, states and frame_range all filter."""
    job = cue.testing_job("_broken")
    frames = cue.frames(job)
    some = frames[:3]
    assert [f.id for f in cue.frames(job, ids=[f.id for f in some])] == [f.id for f in some]
    assert [f.name for f in cue.frames(job, frames=[some[1].name])] == [some[1].name]
    assert {f.layer_name for f in cue.frames(job, layers=["render"])} == {"render"}
    dead = cue.frames(job, states=job_pb2.FrameStateSeq(frame_states=[DEAD]))
    assert dead and all(f.state == DEAD for f in dead)
    assert {f.number for f in cue.frames(job, frame_range="2-4")} == {2, 3, 4}
    assert {f.number for f in cue.frames(job, frame_range="1-9x4")} == {1, 5, 9}


def test_job_search_criteria(cue: Cue) -> None:
    """JobSearchCriteria ids, names, regex, substr, users, shows and shots all filter."""
    everything = cue.jobs(include_finished=True)
    unfinished = cue.jobs()
    assert len(unfinished) < len(everything)
    assert all(j.state != job_pb2.FINISHED for j in unfinished)
    one = unfinished[0]
    assert [j.id for j in cue.jobs(ids=[one.id])] == [one.id]
    assert [j.name for j in cue.jobs(jobs=[one.name])] == [one.name]
    assert {j.user for j in cue.jobs(users=["alice"])} == {"alice"}
    assert {j.show for j in cue.jobs(shows=["pipe"])} == {"pipe"}
    assert {j.shot for j in cue.jobs(shots=["sh010"])} == {"sh010"}
    assert all("_fx_" in j.name for j in cue.jobs(substr=["_fx_"]))
    assert all(j.name.startswith("demo-") for j in cue.jobs(regex=["^demo-"]))
    finished = next(j for j in everything if j.state == job_pb2.FINISHED)
    assert cue.jobs(ids=[finished.id]) == []
    assert [j.id for j in cue.jobs(ids=[finished.id], include_finished=True)] == [finished.id]


def test_host_and_proc_criteria(cue: Cue) -> None:
    """HostSearchCriteria and ProcSearchCriteria select hosts and procs."""

    def hosts(**kw: object) -> list[host_pb2.Host]:
        r = host_pb2.HostSearchCriteria(**kw)  # type: ignore[arg-type]
        return list(cue.host.GetHosts(host_pb2.HostGetHostsRequest(r=r)).hosts.hosts)

    assert {h.alloc_name for h in hosts(allocs=["local.desktop"])} == {"local.desktop"}
    assert all(h.name.startswith("render-") for h in hosts(regex=["^render-"]))
    down = hosts(states=host_pb2.HardwareStateSeq(state=[host_pb2.DOWN]))
    assert down and all(h.state == host_pb2.DOWN for h in down)
    first = hosts()[0]
    assert [h.name for h in hosts(hosts=[first.name])] == [first.name]
    assert [h.id for h in hosts(ids=[first.id])] == [first.id]
    busy = next(h for h in hosts() if h.idle_cores < h.cores)
    procs = cue.proc.GetProcs(
        host_pb2.ProcGetProcsRequest(r=host_pb2.ProcSearchCriteria(hosts=[busy.name]))
    ).procs.procs
    assert procs and all(p.name.startswith(busy.name + "/") for p in procs)
    by_job = cue.proc.GetProcs(
        host_pb2.ProcGetProcsRequest(r=host_pb2.ProcSearchCriteria(jobs=[procs[0].job_name]))
    ).procs.procs
    assert by_job and all(p.job_name == procs[0].job_name for p in by_job)


# ---- LaunchSpec -------------------------------------------------------------------------------


def test_launch_spec_returns_names_and_runs(cue: Cue) -> None:
    """LaunchSpec answers the new job names; the job is findable and gets frames booked."""
    reply = cue.job.LaunchSpec(job_pb2.JobLaunchSpecRequest(spec=spec("Fresh-One", "1-6")))
    assert list(reply.names) == ["testing-sh900-tester_fresh_one"]
    job = cue.job.FindJob(job_pb2.JobFindJobRequest(name=reply.names[0])).job
    assert job.show == "testing" and job.user == "tester" and job.job_stats.total_frames == 6
    layer = cue.layers(job)[0]
    assert layer.services == ["shell"] and layer.min_memory == memory_kb("1g") == 1048576
    cue.sb.farm.advance(3600.0)
    assert cue.get_job(job).job_stats.succeeded_frames > 0


def test_launch_spec_errors(cue: Cue) -> None:
    """Malformed specs and unknown shows answer INTERNAL with Cuebot's prefix."""
    code, text = code_of(
        cue.job.LaunchSpecAndWait, job_pb2.JobLaunchSpecAndWaitRequest(spec="<spec><show>")
    )
    assert code == grpc.StatusCode.INTERNAL
    assert text.startswith("Failed to launch and add job: ")
    code, text = code_of(
        cue.job.LaunchSpec, job_pb2.JobLaunchSpecRequest(spec=spec("ghost", show="noshow"))
    )
    assert code == grpc.StatusCode.INTERNAL and "noshow" in text
    bomb = '<?xml version="1.0"?><!DOCTYPE spec [<!ENTITY a "aaaa">]><spec>&a;</spec>'
    code, _ = code_of(cue.job.LaunchSpec, job_pb2.JobLaunchSpecRequest(spec=bomb))
    assert code == grpc.StatusCode.INTERNAL
    no_layers = (
        spec("empty").replace("<layers>", "<layers><!--").replace("</layers>", "--></layers>")
    )
    code, text = code_of(cue.job.LaunchSpec, job_pb2.JobLaunchSpecRequest(spec=no_layers))
    assert code == grpc.StatusCode.INTERNAL and "no layers" in text


def test_launch_spec_from_pyoutline(cue: Cue, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec serialised by pyoutline (the real submission library) launches."""
    import outline  # a pinned test dependency: missing it is a failure, not a skip

    # CI runs as root and Cuebot (like the sandbox) refuses uid 0 submissions.
    monkeypatch.setattr("outline.util.get_uid", lambda: 1000)
    from outline.cuerun import OutlineLauncher
    from outline.modules.shell import Shell

    ol = outline.Outline("pyol", shot="sh100", show="testing", user="tester", frame_range="1-5")
    ol.add_layer(Shell("beauty", command=["/bin/echo", "hi"], range="1-5", threads=1))
    launcher = OutlineLauncher(ol, user="tester", show="testing", shot="sh100")
    xml = launcher.serialize(use_pycuerun=False)
    names = cue.job.LaunchSpec(job_pb2.JobLaunchSpecRequest(spec=xml)).names
    assert list(names) == ["testing-sh100-tester_pyol"]
    job = cue.job.FindJob(job_pb2.JobFindJobRequest(name=names[0])).job
    assert [la.name for la in cue.layers(job)] == ["beauty"]
    assert job.job_stats.total_frames == 5


# ---- determinism ------------------------------------------------------------------------------


def test_same_seed_same_answers() -> None:
    """Two sandboxes with the same seed and clock give identical ids, names and answers."""
    replies = []
    for _ in range(2):
        sb = start_sandbox(SandboxConfig(port=0, seed=11, clock=ManualClock(1_750_000_000.0)))
        cue = Cue(sb)
        try:
            first = cue.jobs(include_finished=True)
            sb.farm.advance(900.0)
            later = cue.jobs(include_finished=True)
            frames = cue.frames(later[0])
            replies.append(
                (
                    [j.SerializeToString() for j in first],
                    [j.SerializeToString() for j in later],
                    [f.SerializeToString() for f in frames],
                )
            )
        finally:
            cue.channel.close()
            sb.stop()
    assert replies[0] == replies[1]
    other = start_sandbox(SandboxConfig(port=0, seed=12, clock=ManualClock(1_750_000_000.0)))
    try:
        with other.farm.read() as state:
            assert not set(state.jobs) & {job_pb2.Job.FromString(b).id for b in replies[0][0]}
    finally:
        other.stop()


def test_ticker_runs_work_at_speed_on_real_time() -> None:
    """With speed > 0 the ticker thread moves the farm by itself: work runs ``speed`` times
    faster than real, while the farm's time stays the wall clock's."""
    import time

    sb = start_sandbox(SandboxConfig(port=0, seed=7, speed=600.0, jobs=4, hosts=4))
    try:
        start = sb.farm.work
        deadline = time.monotonic() + 5.0
        while sb.farm.work - start < 300.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sb.farm.work - start >= 300.0
        assert abs(sb.farm.now - time.time()) < 1.0
    finally:
        sb.stop()
