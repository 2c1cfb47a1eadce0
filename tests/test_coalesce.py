# -*- test-case-name: tests.test_coalesce -*-
"""
Read sharing through the real resource tree in front of a real gRPC server: identical
reads in flight share one Cuebot call, the optional cache shares answers for a while,
and mutations always go through on their own.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest_twisted
from opencue_proto import job_pb2
from twisted.internet.defer import Deferred, gatherResults

from opencue_gw.rpcs import load_rpcs

from gwtest import GatewayHarness, Reply
from upstreams import Script, ScriptedCuebot

GET_JOBS = "/job.JobInterface/GetJobs"
KILL = "/job.JobInterface/Kill"


def _jobs(request: Any) -> job_pb2.JobGetJobsResponse:
    ids = list(request.r.ids) or ["none"]
    return job_pb2.JobGetJobsResponse(
        jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=i, name=f"testing-sh01-u_{i}") for i in ids])
    )


def _calls(scripted: ScriptedCuebot, path: str) -> int:
    return sum(1 for seen in scripted.seen if seen.method == path)


async def _together(harness: GatewayHarness, *bodies: dict[str, Any], path: str) -> list[Reply]:
    results = await gatherResults(
        [Deferred.fromCoroutine(harness.post(path, body)) for body in bodies]
    )
    return list(results)


@pytest_twisted.ensureDeferred
async def test_identical_reads_in_flight_share_one_call(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Five identical GetJobs arriving together cost Cuebot one call and get one answer."""
    scripted.scripts[GET_JOBS] = Script(delay=0.4, reply=_jobs)
    body = {"r": {"ids": ["j1"], "include_finished": True}}
    replies = await _together(scripted_gateway, *[body] * 5, path=GET_JOBS)
    assert [r.status for r in replies] == [200] * 5
    assert len({r.body for r in replies}) == 1
    assert replies[0].json()["jobs"]["jobs"][0]["id"] == "j1"
    assert _calls(scripted, GET_JOBS) == 1
    assert scripted_gateway.metrics.coalesced_reads._value.get() == 4


@pytest_twisted.ensureDeferred
async def test_different_reads_are_not_shared(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Reads that differ in any field (here the id, or snake vs camel makes none) each call."""
    scripted.scripts[GET_JOBS] = Script(delay=0.3, reply=_jobs)
    replies = await _together(
        scripted_gateway,
        {"r": {"ids": ["a"]}},
        {"r": {"ids": ["b"]}},
        {"r": {"ids": ["a"], "includeFinished": True}},
        {"r": {"ids": ["a"], "include_finished": True}},
        path=GET_JOBS,
    )
    assert [r.json()["jobs"]["jobs"][0]["id"] for r in replies] == ["a", "b", "a", "a"]
    assert _calls(scripted, GET_JOBS) == 3


@pytest_twisted.ensureDeferred
async def test_mutations_are_never_shared(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """Three identical Kill calls arriving together are three Cuebot calls."""
    scripted.scripts[KILL] = Script(delay=0.3)
    body = {"job": {"id": "j1"}, "reason": "x"}
    replies = await _together(scripted_gateway, body, body, body, path=KILL)
    assert [r.status for r in replies] == [200, 200, 200]
    assert _calls(scripted, KILL) == 3


@pytest_twisted.ensureDeferred
async def test_shared_error_reaches_every_waiter_and_is_not_cached(
    scripted: ScriptedCuebot,
) -> None:
    """A NOT_FOUND is given to all who waited, and the next read asks Cuebot again."""
    scripted.scripts[GET_JOBS] = Script(
        delay=0.3, code=grpc.StatusCode.NOT_FOUND, details="Job not found"
    )
    harness = GatewayHarness(scripted.address, read_cache_ms=5000.0)
    try:
        body = {"r": {"ids": ["gone"]}}
        replies = await _together(harness, body, body, path=GET_JOBS)
        assert [r.status for r in replies] == [404, 404]
        assert _calls(scripted, GET_JOBS) == 1
        again = await harness.post(GET_JOBS, body)
        assert again.status == 404
        assert _calls(scripted, GET_JOBS) == 2
    finally:
        harness.close()


@pytest_twisted.ensureDeferred
async def test_read_cache_shares_answers_for_its_lifetime(scripted: ScriptedCuebot) -> None:
    """With a 300 ms cache, polls inside the window share an answer; after it, Cuebot is asked."""
    scripted.scripts[GET_JOBS] = Script(reply=_jobs)
    harness = GatewayHarness(scripted.address, read_cache_ms=300.0)
    try:
        body = {"r": {"ids": ["j1"]}}
        first = await harness.post(GET_JOBS, body)
        second = await harness.post(GET_JOBS, body)
        assert first.body == second.body
        assert _calls(scripted, GET_JOBS) == 1
        assert harness.metrics.cached_reads._value.get() == 1
        await _sleep(0.4)
        await harness.post(GET_JOBS, body)
        assert _calls(scripted, GET_JOBS) == 2
        await harness.post(KILL, {"job": {"id": "j1"}})
        await harness.post(KILL, {"job": {"id": "j1"}})
        assert _calls(scripted, KILL) == 2
    finally:
        harness.close()


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_follower_with_shorter_deadline_times_out_alone(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """A caller joining a slow shared read with Grpc-Timeout 100m gets 504; the other gets 200."""
    scripted.scripts[GET_JOBS] = Script(delay=0.8, reply=_jobs)
    body = {"r": {"ids": ["slow"]}}
    slow = Deferred.fromCoroutine(scripted_gateway.post(GET_JOBS, body))
    await _sleep(0.1)
    started = time.monotonic()
    hasty = await scripted_gateway.post(GET_JOBS, body, headers={"Grpc-Timeout": "100m"})
    assert hasty.status == 504 and time.monotonic() - started < 0.6
    patient = await slow
    assert patient.status == 200
    assert _calls(scripted, GET_JOBS) == 1
    assert not scripted.seen[-1].cancelled.is_set()


@pytest_twisted.ensureDeferred
async def test_answer_carries_its_size_on_the_wire(
    scripted: ScriptedCuebot, scripted_gateway: GatewayHarness
) -> None:
    """
    The size that picks inline or pooled encoding and counts against the cache comes from
    the bytes gRPC received, so a large answer is not walked an extra time to measure it.
    """
    scripted.scripts[GET_JOBS] = Script(reply=_jobs)
    rpc = load_rpcs()[GET_JOBS]
    request = job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=["a", "b", "c"]))
    reply = await scripted_gateway.client.call(rpc, request, timeout=5)
    assert reply.message.jobs.jobs[2].id == "c"
    assert reply.wire_size == reply.message.ByteSize() > 0
