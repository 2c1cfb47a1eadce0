"""
L{opencue_gw.upstream.stale}: a read that fails because Cuebot is away is answered with its last
good answer, within the configured age, from a memory bounded by a byte budget; never
for mutations nor for reads never answered before. Synchronous: a fake upstream whose
calls the test settles, and a C{Clock}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf.message import Message
from opencue_proto import job_pb2
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, load_rpcs
from opencue_gw.upstream.stale import StaleIfError, StaleReply

RPCS = load_rpcs()
GET_JOBS = RPCS["/job.JobInterface/GetJobs"]
KILL = RPCS["/job.JobInterface/Kill"]


class FakeUpstream:
    """Records calls; each returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[Any]]] = []

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((rpc.path, d))
        return d


def _jobs_request(job_id: str) -> job_pb2.JobGetJobsRequest:
    return job_pb2.JobGetJobsRequest(r=job_pb2.JobSearchCriteria(ids=[job_id]))


def _jobs_reply(job_id: str, size: int) -> UpstreamReply:
    message = job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=job_id)]))
    return UpstreamReply(message, (("x-cuebot", "1"),), size)


def _outcome(d: Deferred[Any]) -> Any:
    found: list[Any] = []
    d.addBoth(found.append)
    assert found, "the call has not settled"
    return found[0]


class Harness:
    """A stale layer over a fake upstream, with a clock and a metrics registry."""

    def __init__(self, max_age: float = 60.0, max_bytes: int = 1000) -> None:
        self.clock = Clock()
        self.upstream = FakeUpstream()
        self.metrics = GatewayMetrics()
        self.registry = self.metrics.registry
        self.stale = StaleIfError(
            self.upstream,
            self.clock,
            max_age=max_age,
            max_bytes=max_bytes,
            on_stale=lambda rpc, age: self.metrics.stale_reads.inc(),
        )

    def read(self, job_id: str, metadata: Sequence[tuple[str, str]] = ()) -> Deferred[Any]:
        return self.stale.call(GET_JOBS, _jobs_request(job_id), timeout=5.0, metadata=metadata)

    def answer(self, job_id: str, size: int = 100) -> Any:
        d = self.read(job_id)
        self.upstream.calls[-1][1].callback(_jobs_reply(job_id, size))
        return _outcome(d)

    def fail(self, d: Deferred[Any], code: int) -> Any:
        self.upstream.calls[-1][1].errback(GatewayError(code, "Cuebot is away", upstream=True))
        return _outcome(d)

    def stale_count(self) -> float:
        return self.registry.get_sample_value("opencue_gateway_stale_reads_total") or 0.0


@pytest.mark.parametrize("code", [14, 4])
def test_read_failing_within_the_age_gets_the_last_good_answer(code: int) -> None:
    """UNAVAILABLE and DEADLINE_EXCEEDED within the age: the earlier answer, with its age."""
    h = Harness(max_age=60.0)
    good = h.answer("j1")
    h.clock.advance(12.5)
    outcome = h.fail(h.read("j1"), code)
    assert isinstance(outcome, StaleReply)
    assert outcome.message == good.message
    assert tuple(outcome.headers) == (("x-cuebot", "1"),)
    assert outcome.wire_size == 100
    assert outcome.stale_age == 12.5
    assert h.stale_count() == 1


def test_fresh_answers_are_not_marked_stale() -> None:
    """A good answer passes through untouched."""
    h = Harness()
    assert getattr(h.answer("j1"), "stale_age", None) is None
    assert h.stale_count() == 0


def test_too_old_an_answer_is_not_given() -> None:
    """Past the age, the failure reaches the client and the old answer is forgotten."""
    h = Harness(max_age=60.0)
    h.answer("j1", size=100)
    h.clock.advance(60.5)
    outcome = h.fail(h.read("j1"), 14)
    assert isinstance(outcome, Failure) and outcome.value.code == 14
    assert h.stale.kept_bytes == 0
    assert h.stale_count() == 0


def test_other_errors_are_not_covered() -> None:
    """A definite answer from Cuebot (NOT_FOUND, PERMISSION_DENIED) is never hidden."""
    h = Harness()
    h.answer("j1")
    for code in (5, 7, 13):
        outcome = h.fail(h.read("j1"), code)
        assert isinstance(outcome, Failure) and outcome.value.code == code
    assert h.stale_count() == 0


def test_reads_never_answered_get_the_error() -> None:
    """A read with no earlier good answer (another job id) still fails."""
    h = Harness()
    h.answer("j1")
    outcome = h.fail(h.read("j2"), 14)
    assert isinstance(outcome, Failure) and outcome.value.code == 14


def test_caller_metadata_makes_a_different_read_but_request_ids_do_not() -> None:
    """The key is the coalescing key: a request id does not split it, other metadata does."""
    h = Harness()
    h.answer("j1")
    same = h.fail(h.read("j1", metadata=[("x-request-id", "abc")]), 14)
    assert isinstance(same, StaleReply)
    other = h.fail(h.read("j1", metadata=[("x-tenant", "b")]), 14)
    assert isinstance(other, Failure)


def test_mutations_are_never_answered_stale() -> None:
    """A mutation's failure always reaches the client, and mutations are not remembered."""
    h = Harness()
    request = job_pb2.JobKillRequest(job=job_pb2.Job(id="j1"))
    first = h.stale.call(KILL, request, timeout=5.0)
    h.upstream.calls[-1][1].callback(UpstreamReply(job_pb2.JobKillResponse(), (), 0))
    _outcome(first)
    assert h.stale.kept_bytes == 0
    outcome = h.fail(h.stale.call(KILL, request, timeout=5.0), 14)
    assert isinstance(outcome, Failure) and outcome.value.code == 14
    assert h.stale_count() == 0


def test_memory_is_bounded_least_recently_used_out_first() -> None:
    """With a 1,000-byte budget, the least recently used answers go first."""
    h = Harness(max_bytes=1000)
    h.answer("j1", size=400)
    h.answer("j2", size=400)
    h.clock.advance(1)
    # j1 is used (answered stale), so j2 is now the least recently used.
    assert isinstance(h.fail(h.read("j1"), 14), StaleReply)
    h.answer("j3", size=400)
    assert h.stale.kept_bytes == 800
    assert isinstance(h.fail(h.read("j2"), 14), Failure)
    assert isinstance(h.fail(h.read("j1"), 14), StaleReply)
    assert isinstance(h.fail(h.read("j3"), 14), StaleReply)


def test_an_answer_larger_than_the_budget_is_not_kept() -> None:
    """One answer over the whole budget is passed on but not remembered."""
    h = Harness(max_bytes=1000)
    h.answer("j1", size=300)
    h.answer("big", size=1001)
    assert h.stale.kept_bytes == 300
    assert isinstance(h.fail(h.read("big"), 14), Failure)


def test_a_newer_answer_replaces_the_older_one() -> None:
    """Each good answer restarts the age and replaces the bytes kept."""
    h = Harness(max_age=10.0)
    h.answer("j1", size=300)
    h.clock.advance(8)
    h.answer("j1", size=200)
    assert h.stale.kept_bytes == 200
    h.clock.advance(8)
    outcome = h.fail(h.read("j1"), 14)
    assert isinstance(outcome, StaleReply) and outcome.stale_age == 8


def test_each_stale_answer_is_logged_with_rpc_and_age() -> None:
    """One log event per stale answer, naming the RPC and the age."""
    h = Harness()
    events: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if event.get("stale"):
            events.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        h.answer("j1")
        h.clock.advance(3)
        h.fail(h.read("j1"), 14)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [(e["rpc"], e["age"]) for e in events] == [(GET_JOBS.path, 3.0)]
