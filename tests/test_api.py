# -*- test-case-name: tests.test_api -*-
"""
The RPC routes through the real resource tree (edge, guard, Klein routes) in front of a
fake upstream, synchronously: routing, request and response JSON, error mapping,
deadlines and metadata. What needs the real gRPC wire is in L{test_api_wire}.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opencue_proto import host_pb2, job_pb2, show_pb2

from opencue_gw.testing import FakeUpstream, GatewayUnderTest
from opencue_gw.upstream.rpcs import load_rpcs

RPCS = load_rpcs()


@pytest.fixture
def gw() -> GatewayUnderTest:
    """The gateway in front of a fake upstream that answers every call at once."""
    return GatewayUnderTest(FakeUpstream(answer_all=True))


def test_every_rpc_has_a_route_to_its_own_method(gw: GatewayUnderTest) -> None:
    """Each of the 293 routes answers 200 and reaches exactly the gRPC method of its path."""
    for path in RPCS:
        reply = gw.post(path, b"")
        assert reply.status == 200, (path, reply.body)
        assert gw.upstream.last.path == path
    assert len(gw.upstream.calls) == len(RPCS) == 293


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
def test_unknown_path_is_404_json(path: str, gw: GatewayUnderTest) -> None:
    """Paths that are not an RPC get grpc-gateway's 404 body and never reach Cuebot."""
    reply = gw.post(path)
    assert reply.status == 404
    assert reply.body == b'{"code":5,"message":"Not Found","details":[]}'
    assert reply.header("content-type") == "application/json"
    assert gw.upstream.calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_wrong_method_is_405_with_allow(method: str, gw: GatewayUnderTest) -> None:
    """A known path with a method other than POST is 405, Allow: POST, code 12."""
    reply = gw.request(method, "/show.ShowInterface/GetShows")
    assert reply.status == 405
    assert reply.header("allow") == "POST"
    if method != "HEAD":
        assert reply.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
    assert gw.upstream.calls == []


@pytest.mark.parametrize(
    "body",
    [
        {"r": {"include_finished": True, "ids": ["j1"], "shows": ["testing"]}},
        {"r": {"includeFinished": True, "ids": ["j1"], "shows": ["testing"]}},
        {"r": {"includeFinished": "true", "ids": ["j1"], "shows": ["testing"]}},
    ],
)
def test_request_keys_in_either_case(body: dict[str, Any], gw: GatewayUnderTest) -> None:
    """snake_case and lowerCamelCase keys build the same request, as protojson does."""
    reply = gw.post("/job.JobInterface/GetJobs", body)
    if body["r"].get("includeFinished") == "true":
        # protojson refuses a string for a bool; so must we.
        assert reply.status == 400
        assert (
            "include_finished" in reply.json()["message"]
            or "includeFinished" in (reply.json()["message"])
        )
        return
    assert reply.status == 200
    sent = gw.upstream.last.request
    assert sent.r.include_finished is True  # type: ignore[attr-defined]
    assert list(sent.r.ids) == ["j1"]  # type: ignore[attr-defined]
    assert list(sent.r.shows) == ["testing"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("states", [[2, 5], ["RUNNING", "DEAD"], ["RUNNING", 5]])
def test_enums_by_name_or_number(states: list[Any], gw: GatewayUnderTest) -> None:
    """Enum values may be names or numbers (CueWeb sends numbers for frame states)."""
    body = {"job": {"id": "j"}, "req": {"states": {"frame_states": states}, "limit": 500}}
    reply = gw.post("/job.JobInterface/GetFrames", body)
    assert reply.status == 200, reply.body
    assert list(gw.upstream.last.request.req.states.frame_states) == [  # type: ignore[attr-defined]
        job_pb2.RUNNING,
        job_pb2.DEAD,
    ]


@pytest.mark.parametrize("memory", [8589934592, "8589934592"])
def test_int64_as_number_or_string(memory: Any, gw: GatewayUnderTest) -> None:
    """64-bit integers are accepted as JSON numbers or strings."""
    reply = gw.post("/job.LayerInterface/SetMinMemory", {"layer": {"id": "l"}, "memory": memory})
    assert reply.status == 200, reply.body
    assert gw.upstream.last.request.memory == 8589934592  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [b"", b"   \n", b"{}"])
def test_empty_body_is_empty_request(body: bytes, gw: GatewayUnderTest) -> None:
    """No body at all is an empty request message, as grpc-gateway treats io.EOF."""
    reply = gw.post("/show.ShowInterface/GetShows", body)
    assert reply.status == 200
    assert gw.upstream.last.request == show_pb2.ShowGetShowsRequest()


def test_unknown_fields_are_dropped_by_default(gw: GatewayUnderTest) -> None:
    """{"r":{"show":...}} (a real client mistake) is silently dropped, as in Go."""
    reply = gw.post("/job.JobInterface/GetJobs", {"r": {"show": {"name": "testing"}}, "extra": 1})
    assert reply.status == 200
    assert gw.upstream.last.request == job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria())


def test_strict_json_rejects_unknown_fields() -> None:
    """With --strict-json the same mistake is a 400 that names the field."""
    gw = GatewayUnderTest(FakeUpstream(answer_all=True), strict_json=True)
    reply = gw.post("/job.JobInterface/GetJobs", {"r": {"show": {"name": "testing"}}})
    assert reply.status == 400
    payload = reply.json()
    assert payload["code"] == 3
    assert "show" in payload["message"]
    assert gw.upstream.calls == []


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
def test_bad_bodies_are_400_naming_the_problem(
    body: bytes, mentions: str, gw: GatewayUnderTest
) -> None:
    """Malformed JSON, a non-object body or a wrong type is 400 code 3 with a useful message."""
    reply = gw.post("/show.ShowInterface/FindShow", body)
    assert reply.status == 400
    payload = reply.json()
    assert payload["code"] == 3 and payload["details"] == []
    assert mentions in payload["message"]
    assert gw.upstream.calls == []


def test_wrong_nested_type_names_the_path(gw: GatewayUnderTest) -> None:
    """A wrong type deep in the body is reported with the field that holds it."""
    reply = gw.post("/job.JobInterface/GetFrames", {"job": {"id": "j"}, "req": {"limit": "many"}})
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


def test_response_json_is_grpc_gateway_shape(gw: GatewayUnderTest) -> None:
    """camelCase, enum names, int64 strings, zero values, [] and null, compact, in order."""
    gw.upstream.auto["/job.JobInterface/GetJobs"] = lambda r: job_pb2.JobGetJobsResponse(
        jobs=job_pb2.JobSeq(jobs=[_busy_job()])
    )
    reply = gw.post("/job.JobInterface/GetJobs", {"r": {}})
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


def test_unset_message_fields_are_null_and_lists_empty(gw: GatewayUnderTest) -> None:
    """An unset singular message is null and an empty repeated field is []."""
    gw.upstream.auto["/show.ShowInterface/FindShow"] = lambda r: show_pb2.ShowFindShowResponse(
        show=show_pb2.Show(name=r.name)  # type: ignore[attr-defined]
    )
    gw.upstream.auto["/host.HostInterface/GetHosts"] = lambda r: host_pb2.HostGetHostsResponse(
        hosts=host_pb2.HostSeq()
    )
    show = gw.post("/show.ShowInterface/FindShow", {"name": "x"}).json()
    assert show["show"]["showStats"] is None
    assert show["show"]["name"] == "x"
    hosts = gw.post("/host.HostInterface/GetHosts", {"r": {}}).json()
    assert hosts == {"hosts": {"hosts": []}}
    empty = gw.post("/job.JobInterface/Kill", {"job": {"id": "x"}})
    assert empty.body == b"{}"


def test_cuebot_response_headers_come_back_as_grpc_metadata() -> None:
    """Cuebot's response headers are echoed as Grpc-Metadata-<Key>."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/show.ShowInterface/GetShows", b"{}")
    gw.upstream.last.succeed(headers=[("x-cuebot-node", "cue01"), ("x-trace", "abc")])
    reply = pending.answer()
    assert reply.header("grpc-metadata-x-cuebot-node") == "cue01"
    assert reply.header("grpc-metadata-x-trace") == "abc"


GRPC_TO_HTTP = [
    (1, 499),  # CANCELLED
    (2, 500),  # UNKNOWN
    (3, 400),  # INVALID_ARGUMENT
    (4, 504),  # DEADLINE_EXCEEDED
    (5, 404),  # NOT_FOUND
    (6, 409),  # ALREADY_EXISTS
    (7, 403),  # PERMISSION_DENIED
    (8, 429),  # RESOURCE_EXHAUSTED
    (9, 400),  # FAILED_PRECONDITION
    (10, 409),  # ABORTED
    (11, 400),  # OUT_OF_RANGE
    (12, 501),  # UNIMPLEMENTED
    (13, 500),  # INTERNAL
    (14, 503),  # UNAVAILABLE
    (15, 500),  # DATA_LOSS
    (16, 401),  # UNAUTHENTICATED
]


@pytest.mark.parametrize(("code", "status"), GRPC_TO_HTTP)
def test_grpc_status_maps_like_grpc_gateway(code: int, status: int) -> None:
    """Cuebot's status becomes HTTPStatusFromCode's status and a {code,message,details} body."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/job.JobInterface/SetPriority", {"job": {"id": "j"}, "val": 5})
    gw.upstream.last.fail(code, "Finished jobs are readonly")
    reply = pending.answer()
    assert reply.status == status
    assert reply.json() == {
        "code": code,
        "message": "Finished jobs are readonly",
        "details": [],
    }


def test_cuebot_down_is_503() -> None:
    """A call failing with UNAVAILABLE (nothing listening at Cuebot) is 503 code 14."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/show.ShowInterface/GetShows", b"{}")
    gw.upstream.last.fail(14, "failed to connect to all addresses")
    reply = pending.answer()
    assert reply.status == 503
    assert reply.json()["code"] == 14


def test_gateway_deadline_is_504() -> None:
    """A call slower than GRPC_TIMEOUT ends as 504 code 4, and the upstream call is over."""
    gw = GatewayUnderTest(grpc_timeout=0.3)
    pending = gw.send("POST", "/show.ShowInterface/GetShows", b"{}")
    call = gw.upstream.last
    assert call.timeout == 0.3
    gw.clock.advance(0.29)
    assert not pending.answered
    gw.clock.advance(0.01)
    reply = pending.answer()
    assert reply.status == 504
    assert reply.json()["code"] == 4
    assert call.answered
    assert gw.upstream.pending() == []


def test_client_grpc_timeout_header_shortens_the_deadline() -> None:
    """Grpc-Timeout: 200m cuts a 30 s default deadline down to 0.2 s."""
    gw = GatewayUnderTest()
    pending = gw.send(
        "POST", "/show.ShowInterface/GetShows", b"{}", headers={"Grpc-Timeout": "200m"}
    )
    assert gw.upstream.last.timeout == pytest.approx(0.2)
    gw.clock.advance(0.19)
    assert not pending.answered
    gw.clock.advance(0.01)
    assert pending.answer().status == 504


@pytest.mark.parametrize("value", ["soon", "5", "123456789S", "-1S"])
def test_bad_grpc_timeout_header_is_400(value: str, gw: GatewayUnderTest) -> None:
    """A Grpc-Timeout that is not gRPC's TimeoutValue+unit is the client's error."""
    reply = gw.post("/show.ShowInterface/GetShows", headers={"Grpc-Timeout": value})
    assert reply.status == 400
    assert "Grpc-Timeout" in reply.json()["message"]
    assert gw.upstream.calls == []


def test_metadata_headers_are_forwarded(gw: GatewayUnderTest) -> None:
    """Grpc-Metadata-<Key> becomes metadata <key>; forwarding headers are added; no token."""
    reply = gw.post(
        "/show.ShowInterface/GetShows",
        headers={
            "Grpc-Metadata-Pipeline-Step": "lighting",
            "X-Forwarded-For": "10.1.2.3",
            "X-Request-ID": "req-42",
        },
    )
    assert reply.status == 200
    seen = gw.upstream.last.metadata_dict
    assert seen["pipeline-step"] == "lighting"
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-host"] == "gateway.test"
    assert seen["x-request-id"] == "req-42"
    assert reply.header("x-request-id") == "req-42"
    assert "authorization" not in seen


@pytest.mark.parametrize(
    "header", ["Grpc-Metadata-Grpc-Status", "Grpc-Metadata-X-Request-Id", "Grpc-Metadata-A%2Fb"]
)
def test_reserved_or_invalid_metadata_is_400(header: str, gw: GatewayUnderTest) -> None:
    """Metadata gRPC reserves, or the gateway sets itself, cannot be smuggled in."""
    reply = gw.post("/show.ShowInterface/GetShows", headers={header: "x"})
    assert reply.status == 400
    assert reply.json()["code"] == 3
    assert gw.upstream.calls == []


def test_bodies_decode_as_json_everywhere() -> None:
    """The canned error bodies the edge and guard use are JSON with the three keys."""
    from opencue_gw.errors import status_body

    assert json.loads(status_body(14, "the gateway is shutting down")) == {
        "code": 14,
        "message": "the gateway is shutting down",
        "details": [],
    }


def test_large_answer_is_encoded_on_the_pool() -> None:
    """An answer above 256 KiB is encoded through the codec pool; a small one is not."""
    from test_coalesce import _large_jobs

    from opencue_gw.codec import encode

    gw = GatewayUnderTest()
    small = gw.send("POST", "/job.JobInterface/GetJobs", {"r": {"ids": ["a"]}})
    gw.upstream.last.succeed(job_pb2.JobGetJobsResponse())
    assert small.answer().status == 200
    assert gw.pool.ran == 0
    large = _large_jobs()
    pending = gw.send("POST", "/job.JobInterface/GetJobs", {"r": {}})
    gw.upstream.last.succeed(large)
    reply = pending.answer()
    assert reply.status == 200
    assert gw.pool.ran == 1
    assert reply.body == encode(large)
    assert reply.length == len(reply.body)


def test_read_is_cancelled_when_the_client_disconnects() -> None:
    """A client going away during a read cancels the Cuebot call: nobody wants the answer."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/job.JobInterface/GetJobs", {"r": {}})
    call = gw.upstream.last
    pending.disconnect()
    assert call.cancelled
    assert gw.in_flight.count == 0


def test_mutation_is_not_cancelled_when_the_client_disconnects() -> None:
    """A Kill whose client went away still runs to its end: Cuebot may already have acted."""
    gw = GatewayUnderTest()
    pending = gw.send("POST", "/job.JobInterface/Kill", {"job": {"id": "j"}})
    call = gw.upstream.last
    pending.disconnect()
    assert not call.cancelled
    call.succeed()
    assert gw.in_flight.count == 0
