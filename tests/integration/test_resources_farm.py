# -*- test-case-name: tests.test_resources_farm -*-
"""
The resource-style routes under /api/v1/ against the simulated farm, over real gRPC:
what lists, filters, pages and actions do to a farm. The gateway's own answers are
tested synchronously in L{test_resources}.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from opencue_gw.rest.paging import DEFAULT_LIMIT, MAX_LIMIT

from gwtest import GatewayHarness


async def get(gateway: GatewayHarness, path: str) -> Any:
    """GET a route that must answer 200; its JSON."""
    reply = await gateway.request("GET", path)
    assert reply.status == 200, (path, reply.body)
    assert reply.header("content-type") == "application/json"
    return reply.json()


async def first_job(gateway: GatewayHarness, name_part: str = "alice_lighting") -> dict[str, Any]:
    """A demo job of the show testing, by part of its name."""
    jobs = (await get(gateway, "/api/v1/jobs?show=testing"))["items"]
    return next(job for job in jobs if name_part in job["name"])


@pytest_twisted.ensureDeferred
async def test_shows_and_one_show(gateway: GatewayHarness) -> None:
    """Shows list in the envelope; one show by name is returned unwrapped."""
    shows = await get(gateway, "/api/v1/shows")
    assert {s["name"] for s in shows["items"]} >= {"testing", "pipe", "demo"}
    assert (shows["page"], shows["limit"], shows["nextPage"]) == (1, DEFAULT_LIMIT, None)
    show = await get(gateway, "/api/v1/shows/testing")
    assert show["name"] == "testing" and "showStats" in show


@pytest_twisted.ensureDeferred
async def test_show_jobs_and_groups(gateway: GatewayHarness) -> None:
    """A show's jobs and its groups (looked up by show name) come back as lists."""
    jobs = await get(gateway, "/api/v1/shows/testing/jobs")
    assert jobs["items"] and all(j["show"] == "testing" for j in jobs["items"])
    groups = await get(gateway, "/api/v1/shows/testing/groups")
    assert "testing" in {g["name"] for g in groups["items"]}


@pytest_twisted.ensureDeferred
async def test_jobs_filters(gateway: GatewayHarness) -> None:
    """show, user, name and include_finished reach JobSearchCriteria."""
    everyone = (await get(gateway, "/api/v1/jobs?show=testing"))["items"]
    carol = (await get(gateway, "/api/v1/jobs?show=testing&user=carol"))["items"]
    assert carol and {j["user"] for j in carol} == {"carol"} and len(carol) < len(everyone)
    name = everyone[0]["name"]
    named = (await get(gateway, f"/api/v1/jobs?name={name}&include_finished=true"))["items"]
    assert [j["name"] for j in named] == [name]
    both = (await get(gateway, "/api/v1/jobs?show=testing,pipe"))["items"]
    assert {j["show"] for j in both} == {"testing", "pipe"}


@pytest_twisted.ensureDeferred
async def test_gateway_paging_walks_the_whole_list(gateway: GatewayHarness) -> None:
    """Lists Cuebot does not page are sliced here: pages join up to the unpaged list."""
    whole = (await get(gateway, "/api/v1/hosts"))["items"]
    assert len(whole) > 3
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        answer = await get(gateway, f"/api/v1/hosts?limit=3&page={page}")
        assert answer["limit"] == 3 and answer["page"] == page and len(answer["items"]) <= 3
        seen.extend(h["id"] for h in answer["items"])
        page = answer["nextPage"]
    assert seen == [h["id"] for h in whole]
    beyond = await get(gateway, "/api/v1/hosts?limit=3&page=999")
    assert beyond["items"] == [] and beyond["nextPage"] is None


@pytest_twisted.ensureDeferred
async def test_frames_paged_and_filtered_by_cuebot(gateway: GatewayHarness) -> None:
    """Frame pages come from FrameSearchCriteria page/limit; state filters by name."""
    job = await first_job(gateway)
    total = job["jobStats"]["totalFrames"]
    first = await get(gateway, f"/api/v1/jobs/{job['id']}/frames?limit=10")
    second = await get(gateway, f"/api/v1/jobs/{job['id']}/frames?limit=10&page=2")
    assert len(first["items"]) == 10 and first["nextPage"] == 2
    assert not {f["id"] for f in first["items"]} & {f["id"] for f in second["items"]}
    everything = await get(gateway, f"/api/v1/jobs/{job['id']}/frames?limit={MAX_LIMIT}")
    assert len(everything["items"]) == total and everything["nextPage"] is None
    running = await get(gateway, f"/api/v1/jobs/{job['id']}/frames?state=RUNNING")
    assert len(running["items"]) == job["jobStats"]["runningFrames"] > 0
    assert {f["state"] for f in running["items"]} == {"RUNNING"}
    layered = await get(gateway, f"/api/v1/jobs/{job['id']}/frames?layer=prep&range=1-3")
    assert {(f["layerName"], f["number"]) for f in layered["items"]} <= {
        ("prep", 1),
        ("prep", 2),
        ("prep", 3),
    }


@pytest_twisted.ensureDeferred
async def test_job_layers_comments_and_single_objects(gateway: GatewayHarness) -> None:
    """A job, its layers, a layer, its frames, a frame and comments all resolve by id."""
    job = await first_job(gateway)
    assert (await get(gateway, f"/api/v1/jobs/{job['id']}"))["name"] == job["name"]
    layers = (await get(gateway, f"/api/v1/jobs/{job['id']}/layers"))["items"]
    assert len(layers) == job["jobStats"]["totalLayers"]
    layer = await get(gateway, f"/api/v1/layers/{layers[0]['id']}")
    assert layer["name"] == layers[0]["name"]
    frames = (await get(gateway, f"/api/v1/layers/{layer['id']}/frames?limit=5"))["items"]
    assert frames and {f["layerName"] for f in frames} == {layer["name"]}
    frame = await get(gateway, f"/api/v1/frames/{frames[0]['id']}")
    assert frame["id"] == frames[0]["id"]
    comments = await get(gateway, f"/api/v1/jobs/{job['id']}/comments")
    assert job["hasComment"] and comments["items"]


@pytest_twisted.ensureDeferred
async def test_hosts_filters_one_host_and_procs(gateway: GatewayHarness) -> None:
    """Hosts filter by allocation and state; one host by name; its procs by id."""
    busy = next(
        h for h in (await get(gateway, "/api/v1/hosts"))["items"] if h["idleCores"] < h["cores"]
    )
    alloc = busy["allocName"]
    same = (await get(gateway, f"/api/v1/hosts?alloc={alloc}&state=UP"))["items"]
    assert busy["id"] in {h["id"] for h in same} and {h["allocName"] for h in same} == {alloc}
    down = (await get(gateway, f"/api/v1/hosts?alloc={alloc}&state=DOWN"))["items"]
    assert {h["state"] for h in down} <= {"DOWN"} and busy["id"] not in {h["id"] for h in down}
    host = await get(gateway, f"/api/v1/hosts/{busy['name']}")
    assert host["id"] == busy["id"]
    procs = (await get(gateway, f"/api/v1/hosts/{busy['id']}/procs"))["items"]
    assert procs


@pytest_twisted.ensureDeferred
async def test_pause_resume_kill(fresh_gateway: GatewayHarness) -> None:
    """Pause, resume and kill change the job as the RPCs do."""
    job = await first_job(fresh_gateway)
    path = f"/api/v1/jobs/{job['id']}"
    assert (await fresh_gateway.request("POST", path + "/pause")).status == 200
    assert (await get(fresh_gateway, path))["isPaused"] is True
    assert (await fresh_gateway.request("POST", path + "/resume", {})).status == 200
    assert (await get(fresh_gateway, path))["isPaused"] is False
    killed = await fresh_gateway.request("POST", path + "/kill", {"reason": "test"})
    assert killed.status == 200, killed.body
    assert (await get(fresh_gateway, path))["state"] == "FINISHED"


@pytest_twisted.ensureDeferred
async def test_retry_and_eat_frames_by_state(fresh_gateway: GatewayHarness) -> None:
    """retry-frames with a state filter retries only those frames; eat-frames eats them."""
    jobs = (await get(fresh_gateway, "/api/v1/jobs?show=testing"))["items"]
    job = next(j for j in jobs if j["jobStats"]["deadFrames"] > 0)
    frames = f"/api/v1/jobs/{job['id']}/frames"
    dead = (await get(fresh_gateway, frames + "?state=DEAD"))["items"]
    # Idle cores would book retried frames at once; a paused job keeps them waiting.
    await fresh_gateway.request("POST", f"/api/v1/jobs/{job['id']}/pause")
    retried = await fresh_gateway.request(
        "POST", f"/api/v1/jobs/{job['id']}/retry-frames", {"state": ["DEAD"]}
    )
    assert retried.status == 200, retried.body
    assert (await get(fresh_gateway, frames + "?state=DEAD"))["items"] == []
    waiting = {f["id"] for f in (await get(fresh_gateway, frames + "?state=WAITING"))["items"]}
    assert {f["id"] for f in dead} <= waiting
    layer = dead[0]["layerName"]
    eaten = await fresh_gateway.request(
        "POST", f"/api/v1/jobs/{job['id']}/eat-frames", {"state": "WAITING", "layer": layer}
    )
    assert eaten.status == 200
    left = (await get(fresh_gateway, frames + f"?state=WAITING&layer={layer}"))["items"]
    assert left == []


@pytest_twisted.ensureDeferred
async def test_frame_actions(fresh_gateway: GatewayHarness) -> None:
    """A running frame can be killed and an eaten frame retried, by frame id."""
    job = await first_job(fresh_gateway)
    running = await get(fresh_gateway, f"/api/v1/jobs/{job['id']}/frames?state=RUNNING")
    frame = running["items"][0]["id"]
    assert (await fresh_gateway.request("POST", f"/api/v1/frames/{frame}/kill")).status == 200
    assert (await fresh_gateway.request("POST", f"/api/v1/frames/{frame}/eat")).status == 200
    assert (await get(fresh_gateway, f"/api/v1/frames/{frame}"))["state"] == "EATEN"
    assert (await fresh_gateway.request("POST", f"/api/v1/frames/{frame}/retry")).status == 200
    assert (await get(fresh_gateway, f"/api/v1/frames/{frame}"))["state"] == "WAITING"


@pytest_twisted.ensureDeferred
async def test_host_lock_unlock_reboot(fresh_gateway: GatewayHarness) -> None:
    """Lock and unlock change a host's lock state; reboot is accepted."""
    host = (await get(fresh_gateway, "/api/v1/hosts?limit=1"))["items"][0]
    base = f"/api/v1/hosts/{host['id']}"
    assert (await fresh_gateway.request("POST", base + "/lock")).status == 200
    assert (await get(fresh_gateway, f"/api/v1/hosts/{host['name']}"))["lockState"] == "LOCKED"
    assert (await fresh_gateway.request("POST", base + "/unlock")).status == 200
    assert (await get(fresh_gateway, f"/api/v1/hosts/{host['name']}"))["lockState"] == "OPEN"
    assert (await fresh_gateway.request("POST", base + "/reboot")).status == 200


@pytest_twisted.ensureDeferred
async def test_submit_spec(fresh_gateway: GatewayHarness) -> None:
    """POST /api/v1/jobs launches a job spec and answers the launched jobs."""
    spec = """<?xml version="1.0"?>
<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" "http://localhost:8080/spcue/dtd/cjsl-1.12.dtd">
<spec><facility>local</facility><show>testing</show><shot>sh999</shot><user>tester</user>
<job name="api_v1_submit"><paused>false</paused><maxretries>2</maxretries><autoeat>false</autoeat>
<env/><layers><layer name="render" type="Render"><cmd>echo hi</cmd><range>1-4</range>
<chunk>1</chunk><cores>1</cores><memory>1g</memory><services><service>shell</service></services>
</layer></layers></job></spec>"""
    reply = await fresh_gateway.request("POST", "/api/v1/jobs", {"spec": spec})
    assert reply.status == 200, reply.body
    launched = reply.json()["jobs"]
    assert len(launched) == 1 and launched[0]["name"].endswith("api_v1_submit")
    frames = await get(fresh_gateway, f"/api/v1/jobs/{launched[0]['id']}/frames")
    assert len(frames["items"]) == 4
