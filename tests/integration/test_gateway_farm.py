# -*- test-case-name: tests.test_gateway_farm -*-
"""
The documentation's curl examples, with the right package prefixes, through the
gateway's real resource tree against the Cuebot simulator over real gRPC: the answers
have the documented shapes, the farm moves between two reads, and a kill shows.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from gwtest import GatewayHarness

# Keys of the example answers in the OpenCue REST gateway documentation.
SHOW_KEYS = {
    "id",
    "name",
    "defaultMinCores",
    "defaultMaxCores",
    "commentEmail",
    "bookingEnabled",
    "dispatchEnabled",
    "active",
    "showStats",
    "defaultMinGpus",
    "defaultMaxGpus",
}
SHOW_STATS_KEYS = {
    "runningFrames",
    "deadFrames",
    "pendingFrames",
    "pendingJobs",
    "createdJobCount",
    "createdFrameCount",
    "renderedFrameCount",
    "failedFrameCount",
    "reservedCores",
    "reservedGpus",
}
JOB_KEYS = {
    "id",
    "name",
    "shot",
    "show",
    "user",
    "group",
    "facility",
    "os",
    "priority",
    "minCores",
    "maxCores",
    "logDir",
    "isPaused",
    "hasComment",
    "autoEat",
    "startTime",
    "stopTime",
    "jobStats",
    "state",
}
JOB_STATS_KEYS = {
    "runningFrames",
    "deadFrames",
    "eatenFrames",
    "pendingFrames",
    "succeededFrames",
    "totalFrames",
}
FRAME_KEYS = {
    "id",
    "name",
    "layerName",
    "number",
    "state",
    "retryCount",
    "exitStatus",
    "dispatchOrder",
    "startTime",
    "stopTime",
    "maxRss",
    "usedMemory",
    "reservedMemory",
    "lastResource",
}


async def _ok(gateway: GatewayHarness, path: str, body: dict[str, Any]) -> Any:
    reply = await gateway.post(path, body)
    assert reply.status == 200, (path, reply.status, reply.body[:300])
    return reply.json()


async def _testing_jobs(gateway: GatewayHarness) -> list[dict[str, Any]]:
    answer = await _ok(gateway, "/job.JobInterface/GetJobs", {"r": {"shows": ["testing"]}})
    jobs = answer["jobs"]["jobs"]
    assert jobs
    return list(jobs)


@pytest_twisted.ensureDeferred
async def test_shows_examples(gateway: GatewayHarness) -> None:
    """GetShows and FindShow answer the documented shapes for the demo show `testing`."""
    shows = (await _ok(gateway, "/show.ShowInterface/GetShows", {}))["shows"]["shows"]
    testing = next(s for s in shows if s["name"] == "testing")
    assert SHOW_KEYS <= set(testing) and SHOW_STATS_KEYS <= set(testing["showStats"])
    assert isinstance(testing["showStats"]["createdJobCount"], str)
    found = (await _ok(gateway, "/show.ShowInterface/FindShow", {"name": "testing"}))["show"]
    assert found["id"] == testing["id"]
    missing = await gateway.post("/show.ShowInterface/FindShow", {"name": "testshow"})
    assert missing.status == 404
    assert missing.json()["code"] == 5


@pytest_twisted.ensureDeferred
async def test_job_examples(gateway: GatewayHarness) -> None:
    """GetJobs by show, FindJob by name and GetJob by id agree, with the documented keys."""
    jobs = await _testing_jobs(gateway)
    job = jobs[0]
    assert JOB_KEYS <= set(job) and JOB_STATS_KEYS <= set(job["jobStats"])
    assert job["name"].startswith("testing-") and job["show"] == "testing"
    by_name = await _ok(gateway, "/job.JobInterface/FindJob", {"name": job["name"]})
    by_id = await _ok(gateway, "/job.JobInterface/GetJob", {"id": job["id"]})
    assert by_name["job"]["id"] == by_id["job"]["id"] == job["id"]
    layers = await _ok(gateway, "/job.JobInterface/GetLayers", {"job": {"id": job["id"]}})
    assert layers["layers"]["layers"]


@pytest_twisted.ensureDeferred
async def test_frame_and_layer_examples(gateway: GatewayHarness) -> None:
    """GetFrames (paged), then the job.FrameInterface and job.LayerInterface lookups."""
    job = (await _testing_jobs(gateway))[0]
    answer = await _ok(
        gateway,
        "/job.JobInterface/GetFrames",
        {"job": {"id": job["id"]}, "req": {"include_finished": True, "page": 1, "limit": 100}},
    )
    frames = answer["frames"]["frames"]
    assert 0 < len(frames) <= 100
    assert FRAME_KEYS <= set(frames[0])
    frame = await _ok(gateway, "/job.FrameInterface/GetFrame", {"id": frames[0]["id"]})
    assert frame["frame"]["name"] == frames[0]["name"]
    layer = await _ok(
        gateway,
        "/job.LayerInterface/FindLayer",
        {"job": job["name"], "layer": frames[0]["layerName"]},
    )
    assert layer["layer"]["name"] == frames[0]["layerName"]
    again = await _ok(gateway, "/job.LayerInterface/GetLayer", {"id": layer["layer"]["id"]})
    assert again["layer"]["id"] == layer["layer"]["id"]


@pytest_twisted.ensureDeferred
async def test_host_group_owner_proc_examples(gateway: GatewayHarness) -> None:
    """Hosts, groups, owners and procs with their real packages (host.*, job.*)."""
    hosts = (await _ok(gateway, "/host.HostInterface/GetHosts", {"r": {}}))["hosts"]["hosts"]
    assert hosts
    host = await _ok(gateway, "/host.HostInterface/FindHost", {"name": hosts[0]["name"]})
    assert host["host"]["id"] == hosts[0]["id"]
    groups = await _ok(gateway, "/show.ShowInterface/GetGroups", {"show": {"name": "testing"}})
    group = groups["groups"]["groups"][0]
    found = await _ok(
        gateway, "/job.GroupInterface/FindGroup", {"show": "testing", "name": group["name"]}
    )
    assert found["group"]["id"] == group["id"]
    owner = await _ok(gateway, "/host.OwnerInterface/GetOwner", {"name": "alice"})
    assert owner["owner"]["name"] == "alice"
    procs = await _ok(gateway, "/host.ProcInterface/GetProcs", {"r": {}})
    assert "procs" in procs


@pytest_twisted.ensureDeferred
async def test_frames_progress_between_two_reads(
    fresh_farm: Any, fresh_gateway: GatewayHarness
) -> None:
    """After simulated time passes, frames read through the gateway have moved on."""
    job = (await _testing_jobs(fresh_gateway))[0]
    body = {"job": {"id": job["id"]}, "req": {"include_finished": True, "limit": 1000}}

    async def states() -> dict[str, str]:
        answer = await _ok(fresh_gateway, "/job.JobInterface/GetFrames", body)
        return {f["id"]: f["state"] for f in answer["frames"]["frames"]}

    jobs = await _testing_jobs(fresh_gateway)
    running = [j for j in jobs if j["jobStats"]["runningFrames"] > 0] or jobs
    body["job"]["id"] = running[0]["id"]
    before = await states()
    fresh_farm.farm.advance(1800.0)
    after = await states()
    moved = [i for i in before if before[i] != after.get(i)]
    assert moved, "no frame changed state in 30 simulated minutes"
    assert any(after[i] in ("SUCCEEDED", "DEAD", "RUNNING") for i in moved)


@pytest_twisted.ensureDeferred
async def test_kill_through_the_gateway_finishes_the_job(fresh_gateway: GatewayHarness) -> None:
    """job.JobInterface/Kill answers {} and the next read shows the job FINISHED."""
    job = next(j for j in await _testing_jobs(fresh_gateway) if j["state"] != "FINISHED")
    killed = await fresh_gateway.post(
        "/job.JobInterface/Kill", {"job": {"id": job["id"]}, "reason": "test"}
    )
    assert killed.status == 200 and killed.json() == {}
    after = await _ok(fresh_gateway, "/job.JobInterface/GetJob", {"id": job["id"]})
    assert after["job"]["state"] == "FINISHED"
    readonly = await fresh_gateway.post(
        "/job.JobInterface/SetPriority", {"job": {"id": job["id"]}, "val": 10}
    )
    assert readonly.status == 400
    assert readonly.json()["code"] == 9
