"""Every RPC the sandbox serves answers through real gRPC with its declared response type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opencue_proto import monitoring_pb2

from opencue_sandbox import Sandbox, SandboxConfig, start_sandbox
from opencue_sandbox.probe import Probe, all_methods, message_class

# The 145 RPCs CueWeb calls (facts file, section 5.4), plus pycue's connection test.
CUEWEB = {
    "comment.CommentInterface": "Delete Save",
    "department.DepartmentInterface": (
        "AddTask DisableTiManaged EnableTiManaged GetDepartmentNames GetTasks SetManagedCores"
    ),
    "facility.AllocationInterface": "GetAll",
    "filter.ActionInterface": "Commit Delete",
    "filter.FilterInterface": (
        "CreateAction CreateMatcher Delete GetActions GetMatchers LowerOrder OrderFirst "
        "OrderLast RaiseOrder SetEnabled SetName SetOrder SetType"
    ),
    "filter.MatcherInterface": "Commit Delete",
    "host.HostInterface": (
        "AddComment AddTags Delete FindHost GetComments GetHosts GetProcs Lock Reboot "
        "RebootWhenIdle RedirectToJob RemoveTags RenameTag SetAllocation SetHardwareState Unlock"
    ),
    "host.OwnerInterface": "TakeOwnership",
    "host.ProcInterface": "GetProcs Kill Unbook UnbookProcs",
    "job.FrameInterface": (
        "CreateDependencyOnFrame CreateDependencyOnJob CreateDependencyOnLayer DropDepends Eat "
        "GetFrame GetWhatThisDependsOn Kill MarkAsWaiting Retry"
    ),
    "job.GroupInterface": "CreateSubGroup Delete GetJobs ReparentGroups ReparentJobs",
    "job.JobInterface": (
        "AddComment AddRenderPartition AddSubscriber CreateDependencyOnFrame "
        "CreateDependencyOnJob CreateDependencyOnLayer DropDepends EatFrames GetComments "
        "GetDepends GetFrames GetJob GetJobs GetLayers GetWhatDependsOnThis Kill KillFrames "
        "LaunchSpecAndWait MarkDoneFrames Pause ReorderFrames Resume RetryFrames SetAutoEat "
        "SetMaxCores SetMaxGpus SetMaxRetries SetMinCores SetMinGpus SetPriority StaggerFrames"
    ),
    "job.LayerInterface": (
        "CreateDependencyOnFrame CreateDependencyOnJob CreateDependencyOnLayer "
        "CreateFrameByFrameDependency EatFrames GetOutputPaths GetWhatThisDependsOn KillFrames "
        "MarkdoneFrames ReorderFrames RetryFrames SetMinCores SetMinGpuMemory SetMinMemory "
        "SetStartAfter SetTags SetThreadable StaggerFrames"
    ),
    "limit.LimitInterface": "Create Delete GetAll Rename SetMaxValue",
    "service.ServiceInterface": "CreateService Delete GetDefaultServices Update",
    "service.ServiceOverrideInterface": "Delete Update",
    "show.ShowInterface": (
        "CreateFilter CreateServiceOverride CreateShow CreateSubscription EnableBooking "
        "EnableDispatching FindShow GetActiveShows GetDepartments GetFilters GetGroups "
        "GetServiceOverrides GetShows GetSubscriptions SetCommentEmail SetDefaultMaxCores "
        "SetDefaultMinCores"
    ),
    "subscription.SubscriptionInterface": "Delete SetBurst SetSize",
    "task.TaskInterface": "ClearAdjustments Delete SetMinCores",
    "cue.CueInterface": "GetSystemStats",
}
CUEWEB_RPCS = sorted((svc, m) for svc, names in CUEWEB.items() for m in names.split())

# RPCs Cuebot itself does not implement (its servants lack them), plus the RQD-facing
# limit usage report; these answer UNIMPLEMENTED like on Cuebot.
UNMODELLED = {
    ("department.DepartmentInterface", "Delete"),
    ("facility.FacilityInterface", "GetAllocations"),
    ("job.LayerInterface", "SetMinGpu"),
    ("limit.LimitInterface", "ReportUsage"),
    ("show.ShowInterface", "Archive"),
}
# Cuebot refuses these for the probe's plausible-but-conflicting request (e.g. deleting
# a host that is running frames); the refusal must still be a Cuebot status, not UNKNOWN.
REFUSED = {
    ("host.HostInterface", "Delete"),
    ("job.GroupInterface", "Delete"),
    ("show.ShowInterface", "Delete"),
    ("facility.FacilityInterface", "Delete"),
    ("facility.AllocationInterface", "Delete"),
    ("job.GroupInterface", "ReparentGroups"),
    ("job.GroupInterface", "SetGroup"),
    ("job.FrameInterface", "GetFrameStateDisplayOverrides"),
}

METHODS = {(svc, name): desc for svc, name, desc in all_methods()}
READ_ONLY = sorted(k for k in METHODS if k[1].startswith(("Get", "Find", "Is")))
MUTATING = sorted(k for k in METHODS if k not in set(READ_ONLY))


def call(sb: Sandbox, service: str, method: str, request: Any = None) -> Any:
    desc = METHODS[(service, method)]
    with grpc.insecure_channel(sb.address) as channel:
        stub = channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_class(desc.output_type).FromString,
        )
        if request is None:
            request = Probe(sb.farm).request(service, method, desc)
        return stub(request, timeout=10)


def check(sb: Sandbox, service: str, method: str) -> None:
    desc = METHODS[(service, method)]
    key = (service, method)
    try:
        reply = call(sb, service, method)
    except grpc.RpcError as err:
        code = err.code()
        if key in UNMODELLED:
            assert code == grpc.StatusCode.UNIMPLEMENTED
            return
        assert key in REFUSED, f"{service}/{method}: {code} {err.details()}"
        assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION)
        return
    assert key not in UNMODELLED, f"{service}/{method} should be UNIMPLEMENTED"
    assert type(reply).DESCRIPTOR.full_name == desc.output_type.full_name


def test_cueweb_list_is_complete() -> None:
    """The table holds exactly the 145 CueWeb RPCs plus GetSystemStats, all real methods."""
    assert len(CUEWEB_RPCS) == 146
    assert all(key in METHODS for key in CUEWEB_RPCS)
    assert not set(CUEWEB_RPCS) & UNMODELLED


@pytest.mark.parametrize(("service", "method"), READ_ONLY, ids=lambda v: v)
def test_read_rpc_answers(sandbox_frozen: Sandbox, service: str, method: str) -> None:
    """A Get/Find/Is RPC answers a plausible request with its declared response type."""
    check(sandbox_frozen, service, method)


@pytest.fixture
def small_sandbox() -> Iterator[Sandbox]:
    """A fresh, smaller demo farm: each mutating RPC gets an untouched one."""
    sb = start_sandbox(
        SandboxConfig(port=0, seed=7, speed=0, jobs=14, frames_per_layer=8, hosts=10)
    )
    yield sb
    sb.stop()


@pytest.mark.parametrize(("service", "method"), MUTATING, ids=lambda v: v)
def test_mutating_rpc_answers(small_sandbox: Sandbox, service: str, method: str) -> None:
    """A mutating RPC answers a plausible request with its declared response type."""
    check(small_sandbox, service, method)


def test_monitoring_is_unimplemented(sandbox_frozen: Sandbox) -> None:
    """Monitoring RPCs answer UNIMPLEMENTED, as on Cuebot which does not register them."""
    with grpc.insecure_channel(sandbox_frozen.address) as channel:
        stub = channel.unary_unary(
            "/monitoring.MonitoringInterface/GetFarmStatistics",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub(monitoring_pb2.GetFarmStatisticsRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_ids_never_give_unknown(sandbox_frozen: Sandbox) -> None:
    """Every RPC fed an empty request answers OK or a Cuebot status, never UNKNOWN."""
    for (service, method), desc in sorted(METHODS.items()):
        if method.startswith(("Create", "Launch", "Add")):
            continue
        try:
            call(sandbox_frozen, service, method, message_class(desc.input_type)())
        except grpc.RpcError as err:
            assert err.code() != grpc.StatusCode.UNKNOWN, f"{service}/{method}: {err.details()}"
