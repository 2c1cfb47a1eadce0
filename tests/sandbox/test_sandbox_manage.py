"""Management mutations through gRPC: hosts, procs, shows, groups, comments, filters,
limits, subscriptions, services, departments, owners and depends."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from opencue_proto import (
    comment_pb2,
    comment_pb2_grpc,
    department_pb2,
    department_pb2_grpc,
    depend_pb2,
    depend_pb2_grpc,
    facility_pb2,
    facility_pb2_grpc,
    filter_pb2,
    filter_pb2_grpc,
    host_pb2,
    host_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    limit_pb2,
    limit_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    show_pb2,
    show_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)

from opencue_sandbox import Sandbox


class Stubs:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        ch = self.channel = grpc.insecure_channel(sb.address)
        self.show = show_pb2_grpc.ShowInterfaceStub(ch)
        self.job = job_pb2_grpc.JobInterfaceStub(ch)
        self.layer = job_pb2_grpc.LayerInterfaceStub(ch)
        self.frame = job_pb2_grpc.FrameInterfaceStub(ch)
        self.group = job_pb2_grpc.GroupInterfaceStub(ch)
        self.host = host_pb2_grpc.HostInterfaceStub(ch)
        self.owner = host_pb2_grpc.OwnerInterfaceStub(ch)
        self.proc = host_pb2_grpc.ProcInterfaceStub(ch)
        self.alloc = facility_pb2_grpc.AllocationInterfaceStub(ch)
        self.comment = comment_pb2_grpc.CommentInterfaceStub(ch)
        self.filter = filter_pb2_grpc.FilterInterfaceStub(ch)
        self.matcher = filter_pb2_grpc.MatcherInterfaceStub(ch)
        self.action = filter_pb2_grpc.ActionInterfaceStub(ch)
        self.limit = limit_pb2_grpc.LimitInterfaceStub(ch)
        self.sub = subscription_pb2_grpc.SubscriptionInterfaceStub(ch)
        self.service = service_pb2_grpc.ServiceInterfaceStub(ch)
        self.override = service_pb2_grpc.ServiceOverrideInterfaceStub(ch)
        self.dept = department_pb2_grpc.DepartmentInterfaceStub(ch)
        self.task = task_pb2_grpc.TaskInterfaceStub(ch)
        self.depend = depend_pb2_grpc.DependInterfaceStub(ch)

    @property
    def testing(self) -> show_pb2.Show:
        return self.show.FindShow(show_pb2.ShowFindShowRequest(name="testing")).show

    def find_host(self, name: str) -> host_pb2.Host:
        return self.host.FindHost(host_pb2.HostFindHostRequest(name=name)).host

    def hosts(self) -> list[host_pb2.Host]:
        return list(self.host.GetHosts(host_pb2.HostGetHostsRequest()).hosts.hosts)

    def jobs(self, show: str = "testing") -> list[job_pb2.Job]:
        r = job_pb2.JobSearchCriteria(shows=[show])
        return list(self.job.GetJobs(job_pb2.JobGetJobsRequest(r=r)).jobs.jobs)


BUSY_SPEC = """<?xml version="1.0"?><spec><show>testing</show><shot>sh1</shot><user>bot</user>
<job name="busy_work"><paused>{paused}</paused><maxcores>5000</maxcores><layers>
<layer name="main" type="Render"><cmd>x</cmd><range>1-500</range><cores>1</cores>
<memory>1g</memory></layer></layers></job></spec>"""


@pytest.fixture
def cue(sandbox_fresh: Sandbox) -> Iterator[Stubs]:
    stubs = Stubs(sandbox_fresh)
    yield stubs
    stubs.channel.close()


def test_host_lock_keeps_new_work_off(cue: Stubs) -> None:
    """A locked host gets no new procs as time passes; unlocking lets work back on."""
    host = next(h for h in cue.hosts() if h.idle_cores < h.cores)
    cue.host.Lock(host_pb2.HostLockRequest(host=host))
    assert cue.find_host(host.name).lock_state == host_pb2.LOCKED
    cue.sb.farm.advance(4 * 3600.0)
    assert cue.find_host(host.name).idle_cores == host.cores
    cue.job.LaunchSpec(job_pb2.JobLaunchSpecRequest(spec=BUSY_SPEC.replace("{paused}", "False")))
    cue.host.Unlock(host_pb2.HostUnlockRequest(host=host))
    cue.sb.farm.advance(60.0)
    after = cue.find_host(host.name)
    assert after.lock_state == host_pb2.OPEN and after.idle_cores < after.cores


def test_host_state_tags_allocation_and_comments(cue: Stubs) -> None:
    """SetHardwareState, tag edits, SetAllocation and comments change the host's answers."""
    host = cue.hosts()[1]
    cue.host.SetHardwareState(
        host_pb2.HostSetHardwareStateRequest(host=host, state=host_pb2.REPAIR)
    )
    cue.host.AddTags(host_pb2.HostAddTagsRequest(host=host, tags=["fast", "ssd"]))
    cue.host.RemoveTags(host_pb2.HostRemoveTagsRequest(host=host, tags=["ssd"]))
    cue.host.RenameTag(host_pb2.HostRenameTagRequest(host=host, old_tag="fast", new_tag="quick"))
    desktop = cue.alloc.Find(facility_pb2.AllocFindRequest(name="local.desktop")).allocation
    cue.host.SetAllocation(host_pb2.HostSetAllocationRequest(host=host, allocation_id=desktop.id))
    cue.host.AddComment(
        host_pb2.HostAddCommentRequest(
            host=host, new_comment=comment_pb2.Comment(user="ops", subject="fan", message="noisy")
        )
    )
    got = cue.find_host(host.name)
    assert got.state == host_pb2.REPAIR
    assert "quick" in got.tags and "ssd" not in got.tags and "fast" not in got.tags
    assert got.alloc_name == "local.desktop" and "desktop" in got.tags
    assert got.has_comment
    comments = cue.host.GetComments(host_pb2.HostGetCommentsRequest(host=host)).comments.comments
    assert [c.subject for c in comments] == ["fan"]


def test_reboot_releases_procs(cue: Stubs) -> None:
    """Reboot kills the host's procs and takes it down for a while; RebootWhenIdle locks
    the host and reboots it once its procs are done."""
    busy = [h for h in cue.hosts() if h.idle_cores < h.cores]
    cue.host.Reboot(host_pb2.HostRebootRequest(host=busy[0]))
    got = cue.find_host(busy[0].name)
    assert got.state == host_pb2.REBOOTING and got.idle_cores == got.cores
    assert not cue.host.GetProcs(host_pb2.HostGetProcsRequest(host=got)).procs.procs
    cue.host.RebootWhenIdle(host_pb2.HostRebootWhenIdleRequest(host=busy[1]))
    second = cue.find_host(busy[1].name)
    assert second.lock_state == host_pb2.LOCKED
    assert second.state == host_pb2.REBOOT_WHEN_IDLE
    cue.sb.farm.advance(6 * 3600.0)
    rebooted = cue.find_host(busy[1].name)
    assert rebooted.state == host_pb2.UP and rebooted.boot_time > second.boot_time
    assert rebooted.lock_state == host_pb2.LOCKED and rebooted.idle_cores == rebooted.cores
    assert cue.find_host(busy[0].name).state == host_pb2.UP
    cue.job.LaunchSpec(job_pb2.JobLaunchSpecRequest(spec=BUSY_SPEC.replace("{paused}", "False")))
    back = cue.find_host(busy[0].name)
    assert back.idle_cores < back.cores


def test_unbook_and_kill_procs_send_frames_back(cue: Stubs) -> None:
    """Unbooking or killing a proc frees its cores and puts its frame back to WAITING."""
    procs = list(cue.proc.GetProcs(host_pb2.ProcGetProcsRequest()).procs.procs)
    first, second = procs[0], procs[1]
    frame_of_first = cue.proc.GetFrame(host_pb2.ProcGetFrameRequest(proc=first)).frame
    cue.proc.Unbook(host_pb2.ProcUnbookRequest(proc=first, kill=True))
    frame = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=frame_of_first.id)).frame
    assert frame.state in (job_pb2.WAITING, job_pb2.RUNNING)
    assert frame.start_time != frame_of_first.start_time or frame.state == job_pb2.WAITING
    cue.proc.Kill(host_pb2.ProcKillRequest(proc=second))
    left = {p.id for p in cue.proc.GetProcs(host_pb2.ProcGetProcsRequest()).procs.procs}
    assert first.id not in left and second.id not in left
    host_name = procs[2].name.split("/")[0]
    n = cue.proc.UnbookProcs(
        host_pb2.ProcUnbookProcsRequest(r=host_pb2.ProcSearchCriteria(hosts=[host_name]), kill=True)
    ).num_procs
    assert n >= 1


def test_show_and_group_management(cue: Stubs) -> None:
    """CreateShow, CreateSubGroup, ReparentGroups/Jobs and group Delete reshape the tree."""
    new = cue.show.CreateShow(show_pb2.ShowCreateShowRequest(name="newshow")).show
    assert new.name == "newshow" and new.active
    with pytest.raises(grpc.RpcError) as info:
        cue.show.CreateShow(show_pb2.ShowCreateShowRequest(name="newshow"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "Show could not be created."

    root = cue.show.GetRootGroup(show_pb2.ShowGetRootGroupRequest(show=cue.testing)).group
    made = cue.group.CreateSubGroup(job_pb2.GroupCreateSubGroupRequest(group=root, name="tmp"))
    child = cue.group.CreateSubGroup(
        job_pb2.GroupCreateSubGroupRequest(group=made.group, name="inner")
    ).group
    assert child.parent_id == made.group.id and child.level == 2
    fx = cue.group.FindGroup(job_pb2.GroupFindGroupRequest(show="testing", name="fx")).group
    cue.group.ReparentGroups(
        job_pb2.GroupReparentGroupsRequest(group=fx, groups=job_pb2.GroupSeq(groups=[child]))
    )
    moved = cue.group.GetGroup(job_pb2.GroupGetGroupRequest(id=child.id)).group
    assert moved.parent_id == fx.id
    job = cue.jobs()[0]
    cue.group.ReparentJobs(
        job_pb2.GroupReparentJobsRequest(group=made.group, jobs=job_pb2.JobSeq(jobs=[job]))
    )
    in_group = cue.group.GetJobs(job_pb2.GroupGetJobsRequest(group=made.group)).jobs.jobs
    assert [j.id for j in in_group] == [job.id]
    assert cue.job.GetJob(job_pb2.JobGetJobRequest(id=job.id)).job.group == "tmp"
    with pytest.raises(grpc.RpcError):
        cue.group.Delete(job_pb2.GroupDeleteRequest(group=made.group))
    cue.group.Delete(job_pb2.GroupDeleteRequest(group=moved))
    names = {
        g.name
        for g in cue.show.GetGroups(show_pb2.ShowGetGroupsRequest(show=cue.testing)).groups.groups
    }
    assert "tmp" in names and "inner" not in names


def test_show_settings(cue: Stubs) -> None:
    """Show setters change FindShow's answer."""
    show = cue.testing
    cue.show.SetDefaultMaxCores(show_pb2.ShowSetDefaultMaxCoresRequest(show=show, max_cores=77))
    cue.show.SetDefaultMinCores(show_pb2.ShowSetDefaultMinCoresRequest(show=show, min_cores=2))
    cue.show.SetCommentEmail(show_pb2.ShowSetCommentEmailRequest(show=show, email="a@b.c"))
    cue.show.EnableBooking(show_pb2.ShowEnableBookingRequest(show=show, enabled=False))
    cue.show.EnableDispatching(show_pb2.ShowEnableDispatchingRequest(show=show, enabled=False))
    got = cue.testing
    assert (got.default_max_cores, got.default_min_cores) == (77, 2)
    assert got.comment_email == "a@b.c" and not got.booking_enabled and not got.dispatch_enabled
    cue.show.SetActive(show_pb2.ShowSetActiveRequest(show=show, value=False))
    active = cue.show.GetActiveShows(show_pb2.ShowGetActiveShowsRequest()).shows.shows
    assert "testing" not in {s.name for s in active}


def test_job_comments_save_and_delete(cue: Stubs) -> None:
    """Job comments can be added, edited with CommentInterface.Save and deleted."""
    job = cue.jobs()[3]
    cue.job.AddComment(
        job_pb2.JobAddCommentRequest(
            job=job, new_comment=comment_pb2.Comment(user="me", subject="s1", message="m1")
        )
    )
    comments = cue.job.GetComments(job_pb2.JobGetCommentsRequest(job=job)).comments.comments
    mine = next(c for c in comments if c.subject == "s1")
    assert (
        mine.timestamp > 0 and cue.job.GetJob(job_pb2.JobGetJobRequest(id=job.id)).job.has_comment
    )
    edited = comment_pb2.Comment(id=mine.id, user="me", subject="s2", message="m2")
    cue.comment.Save(comment_pb2.CommentSaveRequest(comment=edited))
    comments = cue.job.GetComments(job_pb2.JobGetCommentsRequest(job=job)).comments.comments
    assert [(c.subject, c.message) for c in comments if c.id == mine.id] == [("s2", "m2")]
    cue.comment.Delete(comment_pb2.CommentDeleteRequest(comment=edited))
    comments = cue.job.GetComments(job_pb2.JobGetCommentsRequest(job=job)).comments.comments
    assert mine.id not in {c.id for c in comments}
    with pytest.raises(grpc.RpcError) as info:
        cue.comment.Delete(comment_pb2.CommentDeleteRequest(comment=edited))
    assert info.value.code() == grpc.StatusCode.INTERNAL


def test_filters_matchers_and_actions(cue: Stubs) -> None:
    """Filters are created, ordered, edited and deleted; their matchers/actions too."""
    show = cue.testing
    a = cue.show.CreateFilter(show_pb2.ShowCreateFilterRequest(show=show, name="fa")).filter
    b = cue.show.CreateFilter(show_pb2.ShowCreateFilterRequest(show=show, name="fb")).filter

    def order() -> list[str]:
        got = cue.show.GetFilters(show_pb2.ShowGetFiltersRequest(show=show)).filters.filters
        return [f.name for f in sorted(got, key=lambda f: f.order)]

    assert order()[-2:] == ["fa", "fb"]
    cue.filter.OrderFirst(filter_pb2.FilterOrderFirstRequest(filter=b))
    assert order()[0] == "fb"
    cue.filter.LowerOrder(filter_pb2.FilterLowerOrderRequest(filter=b))
    assert order()[1] == "fb"
    cue.filter.RaiseOrder(filter_pb2.FilterRaiseOrderRequest(filter=b))
    assert order()[0] == "fb"
    cue.filter.OrderLast(filter_pb2.FilterOrderLastRequest(filter=b))
    assert order()[-1] == "fb"
    cue.filter.SetOrder(filter_pb2.FilterSetOrderRequest(filter=b, order=1))
    assert order()[0] == "fb"
    cue.filter.SetName(filter_pb2.FilterSetNameRequest(filter=a, name="fa2"))
    cue.filter.SetEnabled(filter_pb2.FilterSetEnabledRequest(filter=a, enabled=True))
    cue.filter.SetType(filter_pb2.FilterSetTypeRequest(filter=a, type=filter_pb2.MATCH_ALL))
    found = cue.filter.FindFilter(
        filter_pb2.FilterFindFilterRequest(show="testing", name="fa2")
    ).filter
    assert found.enabled and found.type == filter_pb2.MATCH_ALL

    m = cue.filter.CreateMatcher(
        filter_pb2.FilterCreateMatcherRequest(
            filter=found,
            data=filter_pb2.Matcher(subject=filter_pb2.USER, type=filter_pb2.IS, input="tester"),
        )
    ).matcher
    act = cue.filter.CreateAction(
        filter_pb2.FilterCreateActionRequest(
            filter=found,
            data=filter_pb2.Action(
                type=filter_pb2.SET_JOB_PRIORITY,
                value_type=filter_pb2.INTEGER_TYPE,
                integer_value=7,
            ),
        )
    ).action
    m.input = "tester2"
    cue.matcher.Commit(filter_pb2.MatcherCommitRequest(matcher=m))
    act.integer_value = 9
    cue.action.Commit(filter_pb2.ActionCommitRequest(action=act))
    matchers = cue.filter.GetMatchers(filter_pb2.FilterGetMatchersRequest(filter=found))
    actions = cue.filter.GetActions(filter_pb2.FilterGetActionsRequest(filter=found))
    assert [x.input for x in matchers.matchers.matchers] == ["tester2"]
    assert [x.integer_value for x in actions.actions.actions] == [9]
    cue.matcher.Delete(filter_pb2.MatcherDeleteRequest(matcher=m))
    cue.action.Delete(filter_pb2.ActionDeleteRequest(action=act))
    assert not cue.filter.GetMatchers(
        filter_pb2.FilterGetMatchersRequest(filter=found)
    ).matchers.matchers
    cue.filter.Delete(filter_pb2.FilterDeleteRequest(filter=found))
    assert "fa2" not in order()


def test_enabled_filter_acts_on_launched_job(cue: Stubs) -> None:
    """The demo's enabled pause filter pauses a newly launched job whose name matches."""
    xml = """<?xml version="1.0"?><spec><show>testing</show><shot>sh1</shot><user>bot</user>
<job name="autotest_run"><layers><layer name="main" type="Render"><cmd>x</cmd>
<range>1-2</range></layer></layers></job></spec>"""
    job = cue.job.LaunchSpecAndWait(job_pb2.JobLaunchSpecAndWaitRequest(spec=xml)).jobs.jobs[0]
    assert job.is_paused


def test_limits(cue: Stubs) -> None:
    """Limits are created, found, renamed, resized and deleted."""
    made = cue.limit.Create(limit_pb2.LimitCreateRequest(name="houdini", max_value=5)).limit
    assert made.max_value == 5
    assert cue.limit.Get(limit_pb2.LimitGetRequest(id=made.id)).limit.name == "houdini"
    cue.limit.Rename(limit_pb2.LimitRenameRequest(old_name="houdini", new_name="hou"))
    cue.limit.SetMaxValue(limit_pb2.LimitSetMaxValueRequest(name="hou", max_value=9))
    assert cue.limit.Find(limit_pb2.LimitFindRequest(name="hou")).limit.max_value == 9
    names = {x.name for x in cue.limit.GetAll(limit_pb2.LimitGetAllRequest()).limits}
    assert {"hou", "arnold", "nuke"} <= names
    arnold = cue.limit.Find(limit_pb2.LimitFindRequest(name="arnold")).limit
    assert arnold.current_running > 0
    cue.limit.Delete(limit_pb2.LimitDeleteRequest(name="hou"))
    names = {x.name for x in cue.limit.GetAll(limit_pb2.LimitGetAllRequest()).limits}
    assert "hou" not in names


def test_subscriptions(cue: Stubs) -> None:
    """Subscriptions are created on a show, resized, bursted and deleted."""
    show = cue.testing
    spare = cue.alloc.Find(facility_pb2.AllocFindRequest(name="local.unassigned")).allocation
    sub = cue.show.CreateSubscription(
        show_pb2.ShowCreateSubscriptionRequest(show=show, allocation_id=spare.id, size=10, burst=20)
    ).subscription
    assert (sub.size, sub.burst, sub.name) == (1000, 2000, "local.unassigned.testing")
    cue.sub.SetSize(subscription_pb2.SubscriptionSetSizeRequest(subscription=sub, new_size=500))
    cue.sub.SetBurst(subscription_pb2.SubscriptionSetBurstRequest(subscription=sub, burst=900))
    got = cue.sub.Get(subscription_pb2.SubscriptionGetRequest(id=sub.id)).subscription
    assert (got.size, got.burst) == (500, 900)
    subs = cue.show.GetSubscriptions(show_pb2.ShowGetSubscriptionRequest(show=show))
    general = next(s for s in subs.subscriptions.subscriptions if s.name.startswith("local.gen"))
    assert general.reserved_cores > 0
    cue.sub.Delete(subscription_pb2.SubscriptionDeleteRequest(subscription=sub))
    subs = cue.show.GetSubscriptions(show_pb2.ShowGetSubscriptionRequest(show=show))
    assert sub.id not in {s.id for s in subs.subscriptions.subscriptions}


def test_services_and_overrides(cue: Stubs) -> None:
    """Services and show service overrides are created, updated and deleted."""
    names = {
        s.name
        for s in cue.service.GetDefaultServices(
            service_pb2.ServiceGetDefaultServicesRequest()
        ).services.services
    }
    assert {"default", "prman", "arnold", "shell"} <= names
    made = cue.service.CreateService(
        service_pb2.ServiceCreateServiceRequest(
            data=service_pb2.Service(name="houdini", min_cores=200, tags=["general"])
        )
    ).service
    made.min_memory = 123456
    cue.service.Update(service_pb2.ServiceUpdateRequest(service=made))
    got = cue.service.GetService(service_pb2.ServiceGetServiceRequest(name="houdini")).service
    assert got.min_memory == 123456 and got.min_cores == 200
    cue.service.Delete(service_pb2.ServiceDeleteRequest(service=got))
    with pytest.raises(grpc.RpcError) as info:
        cue.service.GetService(service_pb2.ServiceGetServiceRequest(name="houdini"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    show = cue.testing
    so = cue.show.CreateServiceOverride(
        show_pb2.ShowCreateServiceOverrideRequest(
            show=show, service=service_pb2.Service(name="nuke", min_cores=300)
        )
    ).service_override
    so.data.min_cores = 400
    cue.override.Update(service_pb2.ServiceOverrideUpdateRequest(service=so.data))
    listed = cue.show.GetServiceOverrides(show_pb2.ShowGetServiceOverridesRequest(show=show))
    by_name = {o.data.name: o for o in listed.service_overrides.service_overrides}
    assert by_name["nuke"].data.min_cores == 400
    cue.override.Delete(service_pb2.ServiceOverrideDeleteRequest(service=so.data))
    listed = cue.show.GetServiceOverrides(show_pb2.ShowGetServiceOverridesRequest(show=show))
    assert "nuke" not in {o.data.name for o in listed.service_overrides.service_overrides}


def test_departments_and_tasks(cue: Stubs) -> None:
    """Departments are managed and their tasks added, adjusted and deleted."""
    show = cue.testing
    depts = cue.show.GetDepartments(show_pb2.ShowGetDepartmentsRequest(show=show))
    lighting = next(d for d in depts.departments.departments if d.dept == "lighting")
    names = cue.dept.GetDepartmentNames(department_pb2.DeptGetDepartmentNamesRequest()).names
    assert "lighting" in names
    task = cue.dept.AddTask(
        department_pb2.DeptAddTaskRequest(department=lighting, shot="sh077", min_cores=12)
    ).task
    assert (task.shot, task.min_cores, task.dept) == ("sh077", 12, "lighting")
    cue.dept.EnableTiManaged(
        department_pb2.DeptEnableTiManagedRequest(
            department=lighting, ti_task="light", managed_cores=50
        )
    )
    cue.dept.SetManagedCores(
        department_pb2.DeptSetManagedCoresRequest(department=lighting, managed_cores=60)
    )
    got = cue.show.GetDepartment(
        show_pb2.ShowGetDepartmentRequest(show=show, department="lighting")
    )
    assert got.department.ti_managed and got.department.min_cores == 60
    cue.dept.DisableTiManaged(department_pb2.DeptDisableTiManagedRequest(department=lighting))
    cue.task.SetMinCores(task_pb2.TaskSetMinCoresRequest(task=task, new_min_cores=20))
    cue.task.ClearAdjustments(task_pb2.TaskClearAdjustmentsRequest(task=task))
    tasks = cue.dept.GetTasks(department_pb2.DeptGetTasksRequest(department=lighting)).tasks
    assert {t.shot: t.min_cores for t in tasks.tasks}["sh077"] == 20
    cue.task.Delete(task_pb2.TaskDeleteRequest(task=task))
    tasks = cue.dept.GetTasks(department_pb2.DeptGetTasksRequest(department=lighting)).tasks
    assert "sh077" not in {t.shot for t in tasks.tasks}
    assert not cue.show.GetDepartment(
        show_pb2.ShowGetDepartmentRequest(show=show, department="lighting")
    ).department.ti_managed


def test_take_ownership(cue: Stubs) -> None:
    """TakeOwnership gives a host to an owner: the host's owner and the owner's deeds follow."""
    owner = cue.owner.GetOwner(host_pb2.OwnerGetOwnerRequest(name="alice")).owner
    host = cue.hosts()[0]
    cue.owner.TakeOwnership(host_pb2.OwnerTakeOwnershipRequest(owner=owner, host=host.name))
    got = cue.host.GetOwner(host_pb2.HostGetOwnerRequest(host=host)).owner
    assert got.name == "alice"
    deeds = cue.owner.GetDeeds(host_pb2.OwnerGetDeedsRequest(owner=owner)).deeds.deeds
    assert host.name in {d.host for d in deeds}


def test_depend_create_satisfy_and_drop(cue: Stubs) -> None:
    """Depends created over gRPC hold frames; Satisfy and DropDepends release them."""
    jobs = cue.jobs()
    er, on = jobs[0], jobs[1]
    dep = cue.job.CreateDependencyOnJob(
        job_pb2.JobCreateDependencyOnJobRequest(job=er, on_job=on)
    ).depend
    assert dep.active and dep.type == depend_pb2.JOB_ON_JOB and dep.depend_on_job == on.name
    held = cue.job.GetJob(job_pb2.JobGetJobRequest(id=er.id)).job.job_stats
    assert held.depend_frames > 0 and held.waiting_frames == 0
    listed = cue.job.GetWhatThisDependsOn(job_pb2.JobGetWhatThisDependsOnRequest(job=er))
    assert dep.id in {d.id for d in listed.depends.depends}
    on_side = cue.job.GetWhatDependsOnThis(job_pb2.JobGetWhatDependsOnThisRequest(job=on))
    assert dep.id in {d.id for d in on_side.depends.depends}
    cue.depend.Satisfy(depend_pb2.DependSatisfyRequest(depend=dep))
    got = cue.depend.GetDepend(depend_pb2.DependGetDependRequest(id=dep.id)).depend
    assert not got.active
    assert cue.job.GetJob(job_pb2.JobGetJobRequest(id=er.id)).job.job_stats.depend_frames == 0

    layers = cue.job.GetLayers(job_pb2.JobGetLayersRequest(job=er)).layers.layers
    blocker = cue.job.LaunchSpecAndWait(
        job_pb2.JobLaunchSpecAndWaitRequest(spec=BUSY_SPEC.replace("{paused}", "True"))
    ).jobs.jobs[0]
    other = cue.job.GetLayers(job_pb2.JobGetLayersRequest(job=blocker)).layers.layers
    fbf = cue.layer.CreateFrameByFrameDependency(
        job_pb2.LayerCreateFrameByFrameDependRequest(layer=layers[-1], depend_layer=other[-1])
    ).depend
    assert fbf.type == depend_pb2.FRAME_BY_FRAME
    frame = cue.job.GetFrames(
        job_pb2.JobGetFramesRequest(
            job=er, req=job_pb2.FrameSearchCriteria(layers=[layers[-1].name])
        )
    ).frames.frames[-1]
    frame_deps = cue.frame.GetWhatThisDependsOn(
        job_pb2.FrameGetWhatThisDependsOnRequest(frame=frame)
    ).depends.depends
    assert frame_deps and frame_deps[0].type == depend_pb2.FRAME_ON_FRAME
    cue.layer.DropDepends(
        job_pb2.LayerDropDependsRequest(layer=layers[-1], target=depend_pb2.ANY_TARGET)
    )
    after = cue.frame.GetFrame(job_pb2.FrameGetFrameRequest(id=frame.id)).frame
    assert after.state != job_pb2.DEPEND
