# -*- test-case-name: tests.test_coalesce -*-
"""
Read sharing through the real resource tree in front of a fake upstream, on a fake
clock: identical reads in flight share one Cuebot call, the optional cache shares
answers for a while, mutations always go through on their own, and a shared large
answer is encoded once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message
from opencue_proto import job_pb2

from opencue_gw.codec import encode
from opencue_gw.testing import FakeUpstream, GatewayUnderTest, HTTPReply, InlineThreadPool

GET_JOBS = "/job.JobInterface/GetJobs"
KILL = "/job.JobInterface/Kill"
# Answers above this protobuf size are encoded on the codec pool (README).
INLINE_ENCODE_LIMIT = 256 * 1024


def patch_encode(monkeypatch: pytest.MonkeyPatch, replacement: Callable[[Message], bytes]) -> None:
    """
    Replace the JSON encoder the gateway answers with, wherever the HTTP side binds it
    (the API module, or the answer encoder it delegates to).
    """
    import importlib

    patched = 0
    for name in ("opencue_gw.api", "opencue_gw.http.encoder"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "encode", None) is encode:
            monkeypatch.setattr(module, "encode", replacement)
            patched += 1
    assert patched, "no module of the HTTP side binds opencue_gw.codec.encode any more"


def _jobs(request: Any) -> job_pb2.JobGetJobsResponse:
    ids = list(request.r.ids) or ["none"]
    return job_pb2.JobGetJobsResponse(
        jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=i, name=f"testing-sh01-u_{i}") for i in ids])
    )


def _answers(gw: GatewayUnderTest, *bodies: dict[str, Any], path: str) -> list[HTTPReply]:
    """Send the requests together, then answer every upstream call they caused."""
    pending = [gw.send("POST", path, body) for body in bodies]
    # Answering a call may send the next one (batched reads wait for the call in flight).
    while calls := gw.upstream.pending():
        for call in calls:
            call.succeed(_jobs(call.request) if path == GET_JOBS else None)
    return [p.answer() for p in pending]


def test_identical_reads_in_flight_share_one_call() -> None:
    """Five identical GetJobs arriving together cost Cuebot one call and get one answer."""
    gw = GatewayUnderTest()
    body = {"r": {"ids": ["j1"], "include_finished": True}}
    replies = _answers(gw, *[body] * 5, path=GET_JOBS)
    assert [r.status for r in replies] == [200] * 5
    assert len({r.body for r in replies}) == 1
    assert replies[0].json()["jobs"]["jobs"][0]["id"] == "j1"
    assert len(gw.upstream.calls_to(GET_JOBS)) == 1
    assert gw.metrics.coalesced_reads._value.get() == 4


def test_different_reads_are_not_shared() -> None:
    """Reads that differ in any field (here the id, or snake vs camel makes none) each call."""
    gw = GatewayUnderTest(batch_reads=False)  # batching would merge the two ids (see below)
    replies = _answers(
        gw,
        {"r": {"ids": ["a"]}},
        {"r": {"ids": ["b"]}},
        {"r": {"ids": ["a"], "includeFinished": True}},
        {"r": {"ids": ["a"], "include_finished": True}},
        path=GET_JOBS,
    )
    assert [r.json()["jobs"]["jobs"][0]["id"] for r in replies] == ["a", "b", "a", "a"]
    assert len(gw.upstream.calls_to(GET_JOBS)) == 3


def test_reads_differing_only_in_ids_are_batched_behind_the_call_in_flight() -> None:
    """With batching (the default), the second id waits and goes with the third's."""
    gw = GatewayUnderTest()
    replies = _answers(
        gw,
        {"r": {"ids": ["a"], "includeFinished": True}},
        {"r": {"ids": ["b"], "includeFinished": True}},
        {"r": {"ids": ["c"], "includeFinished": True}},
        path=GET_JOBS,
    )
    assert [r.status for r in replies] == [200, 200, 200]
    sent = [list(call.request.r.ids) for call in gw.upstream.calls_to(GET_JOBS)]
    assert sent == [["a"], ["b", "c"]]


def test_mutations_are_never_shared() -> None:
    """Three identical Kill calls arriving together are three Cuebot calls."""
    gw = GatewayUnderTest()
    body = {"job": {"id": "j1"}, "reason": "x"}
    replies = _answers(gw, body, body, body, path=KILL)
    assert [r.status for r in replies] == [200, 200, 200]
    assert len(gw.upstream.calls_to(KILL)) == 3


def test_shared_error_reaches_every_waiter_and_is_not_cached() -> None:
    """A NOT_FOUND is given to all who waited, and the next read asks Cuebot again."""
    gw = GatewayUnderTest(read_cache_ms=5000.0)
    body = {"r": {"ids": ["gone"]}}
    pending = [gw.send("POST", GET_JOBS, body) for _ in range(2)]
    [call] = gw.upstream.calls
    call.fail(5, "Job not found")
    assert [p.answer().status for p in pending] == [404, 404]
    again = gw.send("POST", GET_JOBS, body)
    assert len(gw.upstream.calls_to(GET_JOBS)) == 2
    gw.upstream.last.fail(5, "Job not found")
    assert again.answer().status == 404


def test_read_cache_shares_answers_for_its_lifetime() -> None:
    """With a 300 ms cache, polls inside the window share an answer; after it, Cuebot is asked."""
    gw = GatewayUnderTest(FakeUpstream({GET_JOBS: _jobs}, answer_all=True), read_cache_ms=300.0)
    body = {"r": {"ids": ["j1"]}}
    first = gw.post(GET_JOBS, body)
    gw.clock.advance(0.299)
    second = gw.post(GET_JOBS, body)
    assert first.body == second.body
    assert len(gw.upstream.calls_to(GET_JOBS)) == 1
    assert gw.metrics.cached_reads._value.get() == 1
    gw.clock.advance(0.001)
    gw.post(GET_JOBS, body)
    assert len(gw.upstream.calls_to(GET_JOBS)) == 2
    gw.post(KILL, {"job": {"id": "j1"}})
    gw.post(KILL, {"job": {"id": "j1"}})
    assert len(gw.upstream.calls_to(KILL)) == 2


def test_follower_with_shorter_deadline_times_out_alone() -> None:
    """A caller joining a slow shared read with Grpc-Timeout 100m gets 504; the other gets 200."""
    gw = GatewayUnderTest()
    body = {"r": {"ids": ["slow"]}}
    slow = gw.send("POST", GET_JOBS, body)
    gw.clock.advance(0.1)
    hasty = gw.send("POST", GET_JOBS, body, headers={"Grpc-Timeout": "100m"})
    gw.clock.advance(0.1)
    assert hasty.answer().status == 504
    assert not slow.answered
    [call] = gw.upstream.calls
    assert not call.cancelled
    call.succeed(_jobs(call.request))
    assert slow.answer().status == 200


def _large_jobs(count: int = 700) -> job_pb2.JobGetJobsResponse:
    """
    An answer above the 256 KiB the gateway encodes inline, and below the 1 MiB of JSON
    above which it streams the body (StubTreq's transport does not pull a streamed body).
    """
    jobs = [
        job_pb2.Job(id=f"job-{i:05d}", name=f"testing-sh{i:04d}-" + "x" * 400) for i in range(count)
    ]
    answer = job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=jobs))
    assert answer.ByteSize() > INLINE_ENCODE_LIMIT
    return answer


def test_coalesced_large_answer_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four waiters on one large read, encoded on a pool that runs later: one encode."""
    encoded: list[Message] = []

    def counting_encode(message: Message) -> bytes:
        encoded.append(message)
        return encode(message)

    patch_encode(monkeypatch, counting_encode)
    pool = InlineThreadPool(hold=True)
    gw = GatewayUnderTest(pool=pool)
    pending = [gw.send("POST", GET_JOBS, {"r": {}}) for _ in range(4)]
    [call] = gw.upstream.calls
    call.succeed(_large_jobs())
    pool.run_queued()
    replies = [p.answer() for p in pending]
    assert [r.status for r in replies] == [200] * 4
    assert len({r.body for r in replies}) == 1
    assert len(encoded) == 1
