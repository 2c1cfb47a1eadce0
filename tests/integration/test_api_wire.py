# -*- test-case-name: tests.test_api_wire -*-
"""
What only the real gRPC wire shows: the gateway's Cuebot client in front of a real
grpcio server on loopback. Reconnect timing, the real deadline and its cancellation
reaching Cuebot, status codes and metadata as grpcio carries them, one shared channel,
and the answer's size as received. Handler behaviour is tested synchronously in
L{test_api} and L{test_coalesce}.
"""

from __future__ import annotations

import time

import grpc
import pytest_twisted
from opencue_proto import job_pb2

from opencue_gw.errors import http_status_for
from opencue_gw.upstream.rpcs import load_rpcs

from gwtest import GatewayHarness
from upstreams import Script, ScriptedCuebot

GET_JOBS = "/job.JobInterface/GetJobs"


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
async def test_gateway_deadline_is_504_and_cancels_at_cuebot(scripted: ScriptedCuebot) -> None:
    """A mutation slower than GRPC_TIMEOUT (grpc's own deadline) is 504 and Cuebot sees it end."""
    scripted.scripts["/job.JobInterface/Pause"] = Script(delay=5.0)
    harness = GatewayHarness(scripted.address, grpc_timeout=0.3)
    try:
        started = time.monotonic()
        reply = await harness.post("/job.JobInterface/Pause", {"job": {"id": "j"}})
        elapsed = time.monotonic() - started
    finally:
        harness.close()
    assert reply.status == 504
    assert reply.json()["code"] == 4
    assert elapsed < 2.0
    assert scripted.seen[-1].cancelled.wait(2.0)


@pytest_twisted.ensureDeferred
async def test_grpc_status_codes_cross_the_wire(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Each gRPC status Cuebot aborts with reaches the client with its number and details."""
    for code in grpc.StatusCode:
        number = code.value[0]
        if number == 0:
            continue
        status = http_status_for(number)
        scripted.scripts["/job.JobInterface/SetPriority"] = Script(
            code=code, details="Finished jobs are readonly"
        )
        reply = await scripted_gateway.post(
            "/job.JobInterface/SetPriority", {"job": {"id": "j"}, "val": 5}
        )
        assert reply.status == status, number
        assert reply.json() == {
            "code": number,
            "message": "Finished jobs are readonly",
            "details": [],
        }


@pytest_twisted.ensureDeferred
async def test_metadata_and_response_headers_cross_the_wire(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Forwarded metadata arrives at Cuebot, and Cuebot's headers come back, through grpcio."""
    scripted.scripts["/show.ShowInterface/GetShows"] = Script(headers=(("x-cuebot-node", "c1"),))
    reply = await scripted_gateway.post(
        "/show.ShowInterface/GetShows",
        headers={"Grpc-Metadata-Pipeline-Step": "lighting", "X-Request-ID": "req-42"},
    )
    assert reply.status == 200
    seen = scripted.seen[-1].metadata
    assert seen["pipeline-step"] == "lighting"
    assert seen["x-request-id"] == "req-42"
    assert seen["x-forwarded-host"] == "gateway.test"
    assert "authorization" not in seen
    assert reply.header("grpc-metadata-x-cuebot-node") == "c1"


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


@pytest_twisted.ensureDeferred
async def test_answer_carries_its_size_on_the_wire(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """
    The size that picks inline or pooled encoding and counts against the cache comes from
    the bytes gRPC received, so a large answer is not walked an extra time to measure it.
    """
    scripted.scripts[GET_JOBS] = Script(
        reply=lambda r: job_pb2.JobGetJobsResponse(
            jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=i) for i in r.r.ids])
        )
    )
    rpc = load_rpcs()[GET_JOBS]
    request = job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=["a", "b", "c"]))
    reply = await scripted_gateway.client.call(rpc, request, timeout=5)
    assert reply.message.jobs.jobs[2].id == "c"
    assert reply.wire_size == reply.message.ByteSize() > 0
