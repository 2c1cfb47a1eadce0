"""Tests for L{opencue_gw.upstream.rpcs}: the RPC table built from the opencue_proto descriptors."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from opencue_gw.upstream.rpcs import RQD_SIDE_SERVICES, Rpc, is_read_method, load_rpcs


@pytest.fixture(scope="module")
def table() -> Mapping[str, Rpc]:
    return load_rpcs()


def test_count(table: Mapping[str, Rpc]) -> None:
    """The pinned opencue-proto yields exactly 293 Cuebot-side RPCs."""
    assert len(table) == 293


def test_rqd_side_services_excluded(table: Mapping[str, Rpc]) -> None:
    """No route belongs to a service that RQD serves or calls."""
    services = {rpc.service for rpc in table.values()}
    assert RQD_SIDE_SERVICES == {
        "rqd.RqdInterface",
        "rqd.RunningFrame",
        "report.RqdReportInterface",
    }
    assert services.isdisjoint(RQD_SIDE_SERVICES)
    assert not any(path.startswith(("/rqd.", "/report.")) for path in table)


def test_rqd_side_services_exist_when_not_excluded() -> None:
    """The exclusion is doing work: without it the RQD-side services appear."""
    services = {rpc.service for rpc in load_rpcs(exclude=frozenset()).values()}
    assert services >= RQD_SIDE_SERVICES


def test_inclusions(table: Mapping[str, Rpc]) -> None:
    """GetSystemStats, the monitoring and render-partition services are served."""
    assert "/cue.CueInterface/GetSystemStats" in table
    services = {rpc.service for rpc in table.values()}
    assert "monitoring.MonitoringInterface" in services
    assert "renderPartition.RenderPartitionInterface" in services


@pytest.mark.parametrize(
    ("path", "request_name", "response_name"),
    [
        ("/job.JobInterface/GetJobs", "JobGetJobsRequest", "JobGetJobsResponse"),
        ("/job.FrameInterface/GetFrame", "FrameGetFrameRequest", "FrameGetFrameResponse"),
        ("/host.ProcInterface/Kill", "ProcKillRequest", "ProcKillResponse"),
        ("/show.ShowInterface/FindShow", "ShowFindShowRequest", "ShowFindShowResponse"),
    ],
)
def test_paths_and_classes(
    table: Mapping[str, Rpc], path: str, request_name: str, response_name: str
) -> None:
    """Paths use the proto package and carry the right request and response classes."""
    rpc = table[path]
    assert rpc.path == path
    assert rpc.request_class.DESCRIPTOR.name == request_name
    assert rpc.response_class.DESCRIPTOR.name == response_name
    assert isinstance(rpc.request_class(), rpc.request_class)


def test_every_path_shape(table: Mapping[str, Rpc]) -> None:
    """Every key is /<pkg>.<Service>/<Method> and agrees with the Rpc's own fields."""
    shape = re.compile(r"^/([A-Za-z][A-Za-z0-9_]*)\.([A-Za-z0-9_]+)/([A-Za-z0-9_]+)$")
    for path, rpc in table.items():
        match = shape.match(path)
        assert match, path
        assert rpc.path == path
        assert f"{match.group(1)}.{match.group(2)}" == rpc.service
        assert match.group(3) == rpc.method


@pytest.mark.parametrize(
    ("path", "is_read"),
    [
        ("/job.JobInterface/GetJobs", True),
        ("/show.ShowInterface/FindShow", True),
        ("/job.JobInterface/IsJobPending", True),
        ("/job.JobInterface/Kill", False),
        ("/job.JobInterface/LaunchSpec", False),
        ("/job.JobInterface/SetMaxCores", False),
    ],
)
def test_is_read_classification(table: Mapping[str, Rpc], path: str, is_read: bool) -> None:
    """Get*, Find* and Is* are reads; everything else changes the farm."""
    assert table[path].is_read is is_read


def test_is_read_method_prefixes() -> None:
    """The classifier goes by the method-name prefix only."""
    assert is_read_method("GetHost")
    assert is_read_method("FindJob")
    assert is_read_method("IsJobPending")
    assert not is_read_method("Kill")
    assert not is_read_method("Retry")
    assert not is_read_method("SetMinCores")
