# -*- test-case-name: tests.test_api -*-
"""
The RPC routes through the real resource tree (edge, guard, Klein routes) in front of a
real gRPC server on loopback: routing, request and response JSON, error mapping.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest
import pytest_twisted
from opencue_proto import host_pb2, job_pb2, show_pb2

from opencue_gw.rpcs import load_rpcs

from gwtest import GatewayHarness
from upstreams import Script, ScriptedCuebot

RPCS = load_rpcs()


@pytest_twisted.ensureDeferred
async def test_every_rpc_has_a_route_to_its_own_method(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Each of the 293 routes answers 200 and reaches exactly the gRPC method of its path."""
    for path in RPCS:
        reply = await scripted_gateway.post(path, b"")
        assert reply.status == 200, (path, reply.body)
        assert scripted.seen[-1].method == path
    assert len(scripted.seen) == len(RPCS) == 293


@pytest.mark.parametrize(
    "path",
    [
        "/show.ShowInterface/NoSuchMethod",
        "/frame.FrameInterface/GetFrame",  # the Go gateway's README prefix; the package is job
        "/proc.ProcInterface/Kill",
        "/rqd.RqdInterface/LaunchFrame",  # served by RQD, never by Cuebot
        "/show.ShowInterface/GetShows/",
        "/",
        "/show.ShowInterface",
    ],
)
@pytest_twisted.ensureDeferred
async def test_unknown_path_is_404_json(
    path: str, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Paths that are not an RPC get grpc-gateway's 404 body and never reach Cuebot."""
    reply = await scripted_gateway.post(path)
    assert reply.status == 404
    assert reply.body == b'{"code":5,"message":"Not Found","details":[]}'
    assert reply.header("content-type") == "application/json"
    assert scripted.seen == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
@pytest_twisted.ensureDeferred
async def test_wrong_method_is_405_with_allow(
    method: str, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A known path with a method other than POST is 405, Allow: POST, code 12."""
    reply = await scripted_gateway.request(method, "/show.ShowInterface/GetShows")
    assert reply.status == 405
    assert reply.header("allow") == "POST"
    if method != "HEAD":
        assert reply.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
    assert scripted.seen == []


@pytest.mark.parametrize(
    "body",
    [
        {"r": {"include_finished": True, "ids": ["j1"], "shows": ["testing"]}},
        {"r": {"includeFinished": True, "ids": ["j1"], "shows": ["testing"]}},
        {"r": {"includeFinished": "true", "ids": ["j1"], "shows": ["testing"]}},
    ],
)
@pytest_twisted.ensureDeferred
async def test_request_keys_in_either_case(
    body: dict[str, Any], scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """snake_case and lowerCamelCase keys build the same request, as protojson does."""
    reply = await scripted_gateway.post("/job.JobInterface/GetJobs", body)
    if body["r"].get("includeFinished") == "true":
        # protojson refuses a string for a bool; so must we.
        assert reply.status == 400
        assert (
            "include_finished" in reply.json()["message"]
            or "includeFinished" in (reply.json()["message"])
        )
        return
    assert reply.status == 200
    sent = scripted.seen[-1].request
    assert sent.r.include_finished is True
    assert list(sent.r.ids) == ["j1"]
    assert list(sent.r.shows) == ["testing"]


@pytest.mark.parametrize("states", [[2, 5], ["RUNNING", "DEAD"], ["RUNNING", 5]])
@pytest_twisted.ensureDeferred
async def test_enums_by_name_or_number(
    states: list[Any], scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Enum values may be names or numbers (CueWeb sends numbers for frame states)."""
    body = {"job": {"id": "j"}, "req": {"states": {"frame_states": states}, "limit": 500}}
    reply = await scripted_gateway.post("/job.JobInterface/GetFrames", body)
    assert reply.status == 200, reply.body
    assert list(scripted.seen[-1].request.req.states.frame_states) == [
        job_pb2.RUNNING,
        job_pb2.DEAD,
    ]


@pytest.mark.parametrize("memory", [8589934592, "8589934592"])
@pytest_twisted.ensureDeferred
async def test_int64_as_number_or_string(
    memory: Any, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """64-bit integers are accepted as JSON numbers or strings."""
    reply = await scripted_gateway.post(
        "/job.LayerInterface/SetMinMemory", {"layer": {"id": "l"}, "memory": memory}
    )
    assert reply.status == 200, reply.body
    assert scripted.seen[-1].request.memory == 8589934592


@pytest.mark.parametrize("body", [b"", b"   \n", b"{}"])
@pytest_twisted.ensureDeferred
async def test_empty_body_is_empty_request(
    body: bytes, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """No body at all is an empty request message, as grpc-gateway treats io.EOF."""
    reply = await scripted_gateway.post("/show.ShowInterface/GetShows", body)
    assert reply.status == 200
    assert scripted.seen[-1].request == show_pb2.ShowGetShowsRequest()


@pytest_twisted.ensureDeferred
async def test_unknown_fields_are_dropped_by_default(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """{"r":{"show":...}} (a real client mistake) is silently dropped, as in Go."""
    reply = await scripted_gateway.post(
        "/job.JobInterface/GetJobs", {"r": {"show": {"name": "testing"}}, "extra": 1}
    )
    assert reply.status == 200
    assert scripted.seen[-1].request == job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria())


@pytest_twisted.ensureDeferred
async def test_strict_json_rejects_unknown_fields(scripted: ScriptedCuebot) -> None:
    """With --strict-json the same mistake is a 400 that names the field."""
    harness = GatewayHarness(scripted.address, strict_json=True)
    try:
        reply = await harness.post(
            "/job.JobInterface/GetJobs", {"r": {"show": {"name": "testing"}}}
        )
    finally:
        harness.close()
    assert reply.status == 400
    payload = reply.json()
    assert payload["code"] == 3
    assert "show" in payload["message"]
    assert scripted.seen == []


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b'{"name": ', "line 1"),
        (b"{bad json}", "line 1"),
        (b"[]", "object"),
        (b'"FindShow"', "object"),
        (b"42", "object"),
        (b'{"name": 5}', "name"),
        (b'{"name": {"x": 1}}', "name"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_bodies_are_400_naming_the_problem(
    body: bytes, mentions: str, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Malformed JSON, a non-object body or a wrong type is 400 code 3 with a useful message."""
    reply = await scripted_gateway.post("/show.ShowInterface/FindShow", body)
    assert reply.status == 400
    payload = reply.json()
    assert payload["code"] == 3 and payload["details"] == []
    assert mentions in payload["message"]
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_wrong_nested_type_names_the_path(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A wrong type deep in the body is reported with the field that holds it."""
    reply = await scripted_gateway.post(
        "/job.JobInterface/GetFrames", {"job": {"id": "j"}, "req": {"limit": "many"}}
    )
    assert reply.status == 400
    assert "limit" in reply.json()["message"]


def _busy_job() -> job_pb2.Job:
    job = job_pb2.Job(
        id="0f1e",
        name="testing-sh01-alice_comp",
        state=job_pb2.PENDING,
        shot="sh01",
        show="testing",
        user="alice",
        priority=100,
        min_cores=0.1,
        max_cores=100.0,
        is_paused=False,
        start_time=1700000000,
    )
    job.job_stats.running_frames = 3
    job.job_stats.max_rss = 123456789012
    return job


@pytest_twisted.ensureDeferred
async def test_response_json_is_grpc_gateway_shape(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """camelCase, enum names, int64 strings, zero values, [] and null, compact, in order."""
    scripted.scripts["/job.JobInterface/GetJobs"] = Script(
        reply=lambda r: job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=[_busy_job()]))
    )
    reply = await scripted_gateway.post("/job.JobInterface/GetJobs", {"r": {}})
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert b" " not in reply.body.replace(b"testing-sh01", b"")  # compact
    job = reply.json()["jobs"]["jobs"][0]
    assert list(job)[:4] == ["id", "state", "name", "shot"]
    declared = [f.json_name for f in job_pb2.Job.DESCRIPTOR.fields]
    assert [k for k in job if k in declared] == [k for k in declared if k in job]
    assert job["state"] == "PENDING"
    assert job["minCores"] == 0.1  # float32 0.1 printed at its own precision
    assert b'"minCores":0.1,' in reply.body
    assert job["maxCores"] == 100 and b'"maxCores":100,' in reply.body
    assert job["startTime"] == 1700000000
    assert job["jobStats"]["maxRss"] == "123456789012"
    assert job["jobStats"]["runningFrames"] == 3
    assert job["jobStats"]["deadFrames"] == 0
    assert job["group"] == "" and job["isPaused"] is False
    assert "uid" not in job  # unset oneof member


@pytest_twisted.ensureDeferred
async def test_unset_message_fields_are_null_and_lists_empty(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """An unset singular message is null and an empty repeated field is []."""
    scripted.scripts["/show.ShowInterface/FindShow"] = Script(
        reply=lambda r: show_pb2.ShowFindShowResponse(show=show_pb2.Show(name=r.name))
    )
    scripted.scripts["/host.HostInterface/GetHosts"] = Script(
        reply=lambda r: host_pb2.HostGetHostsResponse(hosts=host_pb2.HostSeq())
    )
    show = (await scripted_gateway.post("/show.ShowInterface/FindShow", {"name": "x"})).json()
    assert show["show"]["showStats"] is None
    assert show["show"]["name"] == "x"
    hosts = (await scripted_gateway.post("/host.HostInterface/GetHosts", {"r": {}})).json()
    assert hosts == {"hosts": {"hosts": []}}
    empty = await scripted_gateway.post("/job.JobInterface/Kill", {"job": {"id": "x"}})
    assert empty.body == b"{}"


@pytest_twisted.ensureDeferred
async def test_cuebot_response_headers_come_back_as_grpc_metadata(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Cuebot's response headers are echoed as Grpc-Metadata-<Key>."""
    scripted.scripts["/show.ShowInterface/GetShows"] = Script(
        headers=(("x-cuebot-node", "cue01"), ("x-trace", "abc"))
    )
    reply = await scripted_gateway.post("/show.ShowInterface/GetShows")
    assert reply.header("grpc-metadata-x-cuebot-node") == "cue01"
    assert reply.header("grpc-metadata-x-trace") == "abc"


GRPC_TO_HTTP = [
    (grpc.StatusCode.CANCELLED, 499),
    (grpc.StatusCode.UNKNOWN, 500),
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.ALREADY_EXISTS, 409),
    (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.FAILED_PRECONDITION, 400),
    (grpc.StatusCode.ABORTED, 409),
    (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.INTERNAL, 500),
    (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DATA_LOSS, 500),
    (grpc.StatusCode.UNAUTHENTICATED, 401),
]


@pytest.mark.parametrize(("code", "status"), GRPC_TO_HTTP)
@pytest_twisted.ensureDeferred
async def test_grpc_status_maps_like_grpc_gateway(
    code: grpc.StatusCode,
    status: int,
    scripted: ScriptedCuebot,
    scripted_gateway: GatewayHarness,
) -> None:
    """Cuebot's status becomes HTTPStatusFromCode's status and a {code,message,details} body."""
    scripted.scripts["/job.JobInterface/SetPriority"] = Script(
        code=code, details="Finished jobs are readonly"
    )
    reply = await scripted_gateway.post(
        "/job.JobInterface/SetPriority", {"job": {"id": "j"}, "val": 5}
    )
    assert reply.status == status
    assert reply.json() == {
        "code": code.value[0],
        "message": "Finished jobs are readonly",
        "details": [],
    }


@pytest_twisted.ensureDeferred
async def test_cuebot_down_is_503_promptly() -> None:
    """With nothing listening at the Cuebot address the client gets 503 code 14 in seconds."""
    dead = ScriptedCuebot()
    address = dead.address
    dead.stop()
    harness = GatewayHarness(address)
    try:
        started = time.monotonic()
        reply = await harness.post("/show.ShowInterface/GetShows")
        elapsed = time.monotonic() - started
    finally:
        harness.close()
    assert reply.status == 503
    assert reply.json()["code"] == 14
    assert elapsed < 3.0


@pytest_twisted.ensureDeferred
async def test_gateway_deadline_is_504(scripted: ScriptedCuebot) -> None:
    """A call slower than GRPC_TIMEOUT ends as 504 code 4, and Cuebot sees it cancelled."""
    scripted.scripts["/show.ShowInterface/GetShows"] = Script(delay=5.0)
    harness = GatewayHarness(scripted.address, grpc_timeout=0.3)
    try:
        started = time.monotonic()
        reply = await harness.post("/show.ShowInterface/GetShows")
        elapsed = time.monotonic() - started
    finally:
        harness.close()
    assert reply.status == 504
    assert reply.json()["code"] == 4
    assert elapsed < 2.0
    assert scripted.seen[-1].cancelled.wait(2.0)


@pytest_twisted.ensureDeferred
async def test_client_grpc_timeout_header_shortens_the_deadline(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Grpc-Timeout: 200m cuts a 30 s default deadline down to 0.2 s."""
    scripted.scripts["/show.ShowInterface/GetShows"] = Script(delay=5.0)
    started = time.monotonic()
    reply = await scripted_gateway.post(
        "/show.ShowInterface/GetShows", headers={"Grpc-Timeout": "200m"}
    )
    assert reply.status == 504
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("value", ["soon", "5", "123456789S", "-1S"])
@pytest_twisted.ensureDeferred
async def test_bad_grpc_timeout_header_is_400(
    value: str, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A Grpc-Timeout that is not gRPC's TimeoutValue+unit is the client's error."""
    reply = await scripted_gateway.post(
        "/show.ShowInterface/GetShows", headers={"Grpc-Timeout": value}
    )
    assert reply.status == 400
    assert "Grpc-Timeout" in reply.json()["message"]
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_metadata_headers_are_forwarded(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Grpc-Metadata-<Key> becomes metadata <key>; forwarding headers are added; no token."""
    reply = await scripted_gateway.post(
        "/show.ShowInterface/GetShows",
        headers={
            "Grpc-Metadata-Pipeline-Step": "lighting",
            "X-Forwarded-For": "10.1.2.3",
            "X-Request-ID": "req-42",
        },
    )
    assert reply.status == 200
    seen = scripted.seen[-1].metadata
    assert seen["pipeline-step"] == "lighting"
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-host"] == "gateway.test"
    assert seen["x-request-id"] == "req-42"
    assert reply.header("x-request-id") == "req-42"
    assert "authorization" not in seen


@pytest.mark.parametrize(
    "header", ["Grpc-Metadata-Grpc-Status", "Grpc-Metadata-X-Request-Id", "Grpc-Metadata-A%2Fb"]
)
@pytest_twisted.ensureDeferred
async def test_reserved_or_invalid_metadata_is_400(
    header: str, scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Metadata gRPC reserves, or the gateway sets itself, cannot be smuggled in."""
    reply = await scripted_gateway.post("/show.ShowInterface/GetShows", headers={header: "x"})
    assert reply.status == 400
    assert reply.json()["code"] == 3
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_one_channel_serves_every_service(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Calls to different services share one HTTP/2 connection to Cuebot."""
    for path in [
        "/show.ShowInterface/GetShows",
        "/job.JobInterface/GetJobs",
        "/host.HostInterface/GetHosts",
        "/cue.CueInterface/GetSystemStats",
    ]:
        assert (await scripted_gateway.post(path)).status == 200
    peers = {seen.peer for seen in scripted.seen}
    assert len(peers) == 1


def test_bodies_decode_as_json_everywhere() -> None:
    """The canned error bodies the edge and guard use are JSON with the three keys."""
    from opencue_gw.errors import status_body

    assert json.loads(status_body(14, "the gateway is shutting down")) == {
        "code": 14,
        "message": "the gateway is shutting down",
        "details": [],
    }
