# -*- test-case-name: tests.test_batching -*-
"""
Batching of by-id reads, synchronously: a fake upstream whose calls the test answers, on
a fake clock. A small in-memory "Cuebot" answers GetJobs the way Cuebot and the
simulator do (the ids ANDed with the other criteria, sorted by job name), so every
caller's share of a batched answer is checked against that Cuebot's answer to the
caller's own request.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from opencue_proto import host_pb2, job_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.testing import FakeCall, FakeUpstream
from opencue_gw.upstream.batching import BatchingUpstream
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import load_rpcs

RPCS = load_rpcs()
GET_JOBS = RPCS["/job.JobInterface/GetJobs"]
GET_HOSTS = RPCS["/host.HostInterface/GetHosts"]
GET_JOB = RPCS["/job.JobInterface/GetJob"]
HEADERS = (("x-cuebot", "1"),)

# id -> (name, finished). j5 and j6 share a name: a finished job and its relaunch.
JOBS = {
    "j1": ("show-sh01-ann_comp", False),
    "j2": ("show-sh01-bob_light", False),
    "j3": ("show-sh02-ann_fx", True),
    "j4": ("show-sh00-zed_anim", False),
    "j5": ("show-sh03-eve_comp", True),
    "j6": ("show-sh03-eve_comp", False),
}


def cuebot_jobs(request: Any) -> job_pb2.JobGetJobsResponse:
    """GetJobs as Cuebot answers it: the ids ANDed with the rest, sorted by name (stable)."""
    r = request.r
    chosen = [i for i in dict.fromkeys(r.ids) if i in JOBS]
    if not r.include_finished:
        chosen = [i for i in chosen if not JOBS[i][1]]
    if r.users:
        chosen = [i for i in chosen if JOBS[i][0].split("-")[2].split("_")[0] in r.users]
    chosen.sort(key=lambda i: JOBS[i][0])
    jobs = [job_pb2.Job(id=i, name=JOBS[i][0], is_paused=JOBS[i][1]) for i in chosen]
    return job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=jobs))


def jobs_request(*ids: str, include_finished: bool = True, **more: Any) -> Message:
    """A GetJobs request, as CueWeb's job table sends it by default."""
    return job_pb2.JobGetJobsRequest(
        r=job_pb2.JobSearchCriteria(ids=list(ids), include_finished=include_finished, **more)
    )


def answer(call: FakeCall) -> None:
    """Answer a GetJobs call as Cuebot would, with a response header and its wire size."""
    message = cuebot_jobs(call.request)
    call.succeed(message, HEADERS, message.ByteSize())


def result(d: Deferred[Any]) -> Any:
    """The outcome of a fired Deferred (its Failure, if it failed)."""
    outcome: list[Any] = []

    def keep(value: Any) -> Any:
        outcome.append(value)
        # A failure is handled here; an answer stays for the next look.
        return None if isinstance(value, Failure) else value

    d.addBoth(keep)
    assert outcome, "the Deferred has not fired"
    return outcome[0]


def error_of(d: Deferred[Any]) -> BaseException:
    """The exception a fired, failed Deferred carries."""
    failure = result(d)
    assert isinstance(failure, Failure), f"expected a failure, got {failure!r}"
    return failure.value


def assert_answers(reply: Any, request: Message) -> None:
    """C{reply} is exactly what Cuebot answers to C{request} alone, size included."""
    expected = cuebot_jobs(request)
    assert reply.message == expected
    assert reply.message.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    assert reply.message.HasField("jobs")
    assert tuple(reply.headers) == HEADERS
    assert reply.wire_size == expected.ByteSize()


def setup(**kw: Any) -> tuple[BatchingUpstream, FakeUpstream, Clock]:
    """A batching layer over a fake upstream, on a fake clock."""
    upstream = FakeUpstream()
    clock = Clock()
    return BatchingUpstream(upstream, clock, **kw), upstream, clock


def send(batching: BatchingUpstream, request: Message, timeout: float | None = 30.0, **kw: Any):  # type: ignore[no-untyped-def]
    """One GetJobs through the batching layer."""
    return batching.call(GET_JOBS, request, timeout=timeout, **kw)


def test_lone_request_goes_at_once_untouched() -> None:
    """A request with nothing in flight is sent at once, as it came, with no timer."""
    batching, upstream, clock = setup()
    request = jobs_request("j1")
    d = send(batching, request, timeout=12.0, metadata=[("x-request-id", "r1")])
    assert len(upstream.calls) == 1
    call = upstream.last
    assert call.request is request
    assert call.timeout == 12.0
    assert call.metadata == [("x-request-id", "r1")]
    assert clock.getDelayedCalls() == []
    reply = UpstreamReply(cuebot_jobs(request), HEADERS, 123)
    call.deferred.callback(reply)
    assert result(d) is reply
    assert batching._lanes == {}


def test_waiters_join_the_next_call_with_the_union() -> None:
    """One call in flight and two waiting: two calls in all, the second with the union."""
    batching, upstream, clock = setup()
    first = jobs_request("j1")
    second = jobs_request("j4", "j2", "j2", "nope")
    third = jobs_request("j2", "j6", "j5")
    d1 = send(batching, first)
    d2 = send(batching, second)
    d3 = send(batching, third)
    assert len(upstream.calls) == 1
    answer(upstream.calls[0])
    assert_answers(result(d1), first)
    assert len(upstream.calls) == 2
    batched = upstream.calls[1]
    assert list(batched.request.r.ids) == ["j4", "j2", "nope", "j6", "j5"]
    assert batched.request.r.include_finished
    assert not d2.called and not d3.called
    answer(batched)
    assert_answers(result(d2), second)
    assert_answers(result(d3), third)
    assert [j.id for j in result(d2).message.jobs.jobs] == ["j4", "j2"]  # by name
    assert len(upstream.calls) == 2
    assert batching._lanes == {}
    assert clock.getDelayedCalls() == []


def test_unknown_and_finished_ids_and_empty_answers() -> None:
    """Unknown ids are not in a caller's list; none known gives an empty but present list."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1", include_finished=False))
    asks = [
        jobs_request("j3", "j2", include_finished=False),
        jobs_request("nope", include_finished=False),
        jobs_request("j3", include_finished=False),
        jobs_request("j6", "nope2", "j5", include_finished=False),
    ]
    pending = [send(batching, a) for a in asks]
    answer(upstream.calls[0])
    answer(upstream.calls[1])
    for d, asked in zip(pending, asks, strict=True):
        assert_answers(result(d), asked)
    assert [len(result(d).message.jobs.jobs) for d in pending] == [1, 0, 0, 1]


def test_equal_names_keep_each_callers_id_order() -> None:
    """Jobs of one name (a finished job and its relaunch) come in each caller's id order."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    a = jobs_request("j6", "j5", "j1")
    b = jobs_request("j5", "j6")
    da, db = send(batching, a), send(batching, b)
    answer(upstream.calls[0])
    answer(upstream.calls[1])
    assert [j.id for j in result(da).message.jobs.jobs] == ["j1", "j6", "j5"]
    assert [j.id for j in result(db).message.jobs.jobs] == ["j5", "j6"]
    assert_answers(result(da), a)
    assert_answers(result(db), b)


def test_union_order_is_cuebots_not_a_local_sort() -> None:
    """Cuebot's collation decides the order of names; a caller's share keeps it."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("x"))
    d = send(batching, jobs_request("a", "B"))
    send(batching, jobs_request("c"))
    upstream.calls[0].succeed(job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq()))
    # Case-insensitive collation, as a Postgres en_US database sorts: a, B, c.
    union = job_pb2.JobGetJobsResponse(
        jobs=job_pb2.JobSeq(jobs=[job_pb2.Job(id=i, name=i) for i in ("a", "B", "c")])
    )
    upstream.calls[1].succeed(union)
    assert [j.id for j in result(d).message.jobs.jobs] == ["a", "B"]


@pytest.mark.parametrize(
    "other",
    [
        jobs_request("j2", include_finished=False),
        jobs_request("j2", users=["ann"]),
        jobs_request("j2", shows=["show"]),
    ],
)
def test_requests_differing_in_other_fields_are_not_batched(other: Message) -> None:
    """A request that differs in any field but the ids has its own call, sent at once."""
    batching, upstream, _ = setup()
    d1 = send(batching, jobs_request("j1"))
    d2 = send(batching, other)
    assert len(upstream.calls) == 2
    assert upstream.calls[1].request is other
    answer(upstream.calls[1])
    answer(upstream.calls[0])
    assert_answers(result(d1), jobs_request("j1"))
    assert_answers(result(d2), other)


def test_different_metadata_is_not_batched_but_request_ids_are() -> None:
    """Forwarded metadata splits batches; the per-request keys the gateway adds do not."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"), metadata=[("x-request-id", "a"), ("x-site", "1")])
    send(batching, jobs_request("j2"), metadata=[("x-request-id", "b"), ("x-site", "2")])
    assert len(upstream.calls) == 2
    d = send(
        batching,
        jobs_request("j4"),
        metadata=[("x-request-id", "c"), ("x-forwarded-for", "10.0.0.9"), ("x-site", "1")],
    )
    e = send(batching, jobs_request("j6"), metadata=[("x-request-id", "d"), ("x-site", "1")])
    assert len(upstream.calls) == 2
    answer(upstream.calls[0])
    batched = upstream.calls[2]
    assert list(batched.request.r.ids) == ["j4", "j6"]
    assert batched.metadata_dict["x-site"] == "1"
    answer(batched)
    assert_answers(result(d), jobs_request("j4"))
    assert_answers(result(e), jobs_request("j6"))


def test_requests_without_ids_and_other_rpcs_pass_through() -> None:
    """GetJobs with no ids means all jobs and is never batched; other RPCs go through."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    everything = jobs_request()
    send(batching, everything)
    one = job_pb2.JobGetJobRequest(id="j1")
    batching.call(GET_JOB, one, timeout=None)
    assert [c.request for c in upstream.calls[1:]] == [everything, one]


def test_failure_reaches_every_caller_in_the_batch() -> None:
    """A batched call that fails fails each of its callers with the same error."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    waiting = [send(batching, jobs_request(i)) for i in ("j2", "j4", "j6")]
    answer(upstream.calls[0])
    upstream.calls[1].fail(14, "Cuebot is away")
    errors = [error_of(d) for d in waiting]
    assert all(isinstance(e, GatewayError) and e.code == 14 and e.upstream for e in errors)
    assert errors[0] is errors[1] is errors[2]
    assert batching._lanes == {}


def test_upstream_raising_fails_the_callers() -> None:
    """A client that raises (no channel) fails the batch's callers instead of losing them."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    d = send(batching, jobs_request("j2"))
    upstream.raise_next = GatewayError(14, "the gateway is not connected to Cuebot")
    answer(upstream.calls[0])
    assert error_of(d).code == 14  # type: ignore[attr-defined]
    assert batching._lanes == {}


def test_a_waiters_deadline_is_its_own() -> None:
    """A waiter whose deadline passes gets DEADLINE_EXCEEDED; the others carry on."""
    batching, upstream, clock = setup()
    send(batching, jobs_request("j1"), timeout=30.0)
    short = send(batching, jobs_request("j2"), timeout=1.0)
    longer = send(batching, jobs_request("j4"), timeout=10.0)
    clock.advance(1.0)
    error = error_of(short)
    assert isinstance(error, GatewayError) and error.code == 4
    assert not longer.called
    clock.advance(2.0)
    answer(upstream.calls[0])
    batched = upstream.calls[1]
    assert list(batched.request.r.ids) == ["j4"]
    assert batched.timeout == pytest.approx(7.0)
    answer(batched)
    assert_answers(result(longer), jobs_request("j4"))


def test_batched_call_takes_the_latest_deadline() -> None:
    """The call carries its latest member's deadline; a sooner member times out alone."""
    batching, upstream, clock = setup()
    send(batching, jobs_request("j1"), timeout=30.0)
    soon = send(batching, jobs_request("j2"), timeout=2.0)
    late = send(batching, jobs_request("j4"), timeout=10.0)
    answer(upstream.calls[0])
    batched = upstream.calls[1]
    assert batched.timeout == pytest.approx(10.0)
    assert len(clock.getDelayedCalls()) == 1  # only the sooner member needs a timer
    clock.advance(2.0)
    assert error_of(soon).code == 4  # type: ignore[attr-defined]
    assert not batched.cancelled
    answer(batched)
    assert_answers(result(late), jobs_request("j4"))
    assert clock.getDelayedCalls() == []


def test_no_deadline_in_the_batch_means_none_for_the_call() -> None:
    """If any member has no deadline the call has none; members with one keep a timer."""
    batching, upstream, clock = setup()
    send(batching, jobs_request("j1"))
    send(batching, jobs_request("j2"), timeout=None)
    timed = send(batching, jobs_request("j4"), timeout=5.0)
    answer(upstream.calls[0])
    assert upstream.calls[1].timeout is None
    clock.advance(5.0)
    assert error_of(timed).code == 4  # type: ignore[attr-defined]
    assert not upstream.calls[1].cancelled


def test_cancelling_one_caller_leaves_the_call_for_the_others() -> None:
    """A caller going away leaves the batch; the call is cancelled with the last one."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    gone_early = send(batching, jobs_request("j6"))
    gone_early.cancel()
    b, c = send(batching, jobs_request("j2")), send(batching, jobs_request("j4"))
    answer(upstream.calls[0])
    batched = upstream.calls[1]
    assert list(batched.request.r.ids) == ["j2", "j4"]
    assert isinstance(error_of(gone_early), CancelledError)
    b.cancel()
    assert isinstance(error_of(b), CancelledError)
    assert not batched.cancelled
    answer(batched)
    assert_answers(result(c), jobs_request("j4"))

    d = send(batching, jobs_request("j1"))
    e = send(batching, jobs_request("j2"))
    f = send(batching, jobs_request("j2", "j4"))
    lone = upstream.last
    d.cancel()
    assert lone.cancelled  # nobody was left in it...
    assert len(upstream.calls) == 4  # ...and the waiters went out at once, together
    assert list(upstream.last.request.r.ids) == ["j2", "j4"]
    answer(upstream.last)
    assert_answers(result(e), jobs_request("j2"))
    assert_answers(result(f), jobs_request("j2", "j4"))
    assert batching._lanes == {}


def test_max_batch_splits_the_waiters_into_several_calls() -> None:
    """More waiting ids than max_batch go out as several calls, none over the limit."""
    batching, upstream, _ = setup(max_batch=3)
    send(batching, jobs_request("j1"))
    asks = [
        jobs_request("j1", "j2"),
        jobs_request("j3", "j4"),
        jobs_request("j5"),
        jobs_request("j2"),
    ]
    pending = [send(batching, a) for a in asks]
    too_many = jobs_request("j1", "j2", "j3", "j4")
    alone = send(batching, too_many)
    assert upstream.calls[1].request is too_many  # more ids than a batch holds: alone
    answer(upstream.calls[0])
    # First fit: j5 and j2 fit in the first group, j3 and j4 do not. Two calls, not three.
    assert [list(c.request.r.ids) for c in upstream.calls[2:]] == [
        ["j1", "j2", "j5"],
        ["j3", "j4"],
    ]
    assert all(len(c.request.r.ids) <= 3 for c in upstream.calls[2:])
    for call in upstream.pending():
        answer(call)
    for d, asked in zip(pending, asks, strict=True):
        assert_answers(result(d), asked)
    assert_answers(result(alone), too_many)


def test_a_request_inside_the_call_in_flight_takes_its_answer() -> None:
    """Ids all in the call in flight, deadline no later than it: no call of its own."""
    batching, upstream, _ = setup()
    first = jobs_request("j2", "j4", "j1")
    send(batching, first, timeout=30.0)
    inside = send(batching, jobs_request("j4", "j2"), timeout=20.0)
    later = send(batching, jobs_request("j4"), timeout=40.0)
    assert len(upstream.calls) == 1
    answer(upstream.calls[0])
    assert_answers(result(inside), jobs_request("j4", "j2"))
    assert list(upstream.calls[1].request.r.ids) == ["j4"]  # it could outlive that call
    answer(upstream.calls[1])
    assert_answers(result(later), jobs_request("j4"))


def test_asking_again_from_a_callback_waits_for_the_next_call() -> None:
    """A caller that asks again as soon as it is answered joins the call after the waiters."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    again: list[Deferred[Any]] = []
    waiter = send(batching, jobs_request("j2"))
    waiter.addCallback(lambda reply: again.append(send(batching, jobs_request("j4"))))
    send(batching, jobs_request("j6"))
    answer(upstream.calls[0])
    answer(upstream.calls[1])
    assert len(upstream.calls) == 3 and not again[0].called
    assert list(upstream.calls[2].request.r.ids) == ["j4"]


def test_hosts_are_batched_only_one_id_at_a_time() -> None:
    """GetHosts has no defined order: single-id requests batch, several ids go alone."""
    batching, upstream, _ = setup()

    def hosts(*ids: str) -> Message:
        return host_pb2.HostGetHostsRequest(r=host_pb2.HostSearchCriteria(ids=list(ids)))

    def answer_hosts(call: FakeCall) -> None:
        known = [i for i in call.request.r.ids if i.startswith("h")]
        found = [host_pb2.Host(id=i, name=f"render-{i}") for i in sorted(known)]
        call.succeed(host_pb2.HostGetHostsResponse(hosts=host_pb2.HostSeq(hosts=found)))

    batching.call(GET_HOSTS, hosts("h1"), timeout=None)
    several = hosts("h2", "h3")
    batching.call(GET_HOSTS, several, timeout=None)
    assert upstream.calls[1].request is several
    one = batching.call(GET_HOSTS, hosts("h3"), timeout=None)
    unknown = batching.call(GET_HOSTS, hosts("zz"), timeout=None)
    assert len(upstream.calls) == 2
    answer_hosts(upstream.calls[0])
    assert list(upstream.calls[2].request.r.ids) == ["h3", "zz"]
    answer_hosts(upstream.calls[2])
    assert [h.id for h in result(one).message.hosts.hosts] == ["h3"]
    assert list(result(unknown).message.hosts.hosts) == []
    assert result(unknown).message.HasField("hosts")


class BatchMetrics:
    """The three metrics the gateway's registry carries, as the lead adds them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batch_calls = Counter(
            "opencue_gateway_batch_calls", "calls", ["rpc"], registry=self.registry
        )
        self.batched_reads = Counter(
            "opencue_gateway_batched_reads", "reads", ["rpc"], registry=self.registry
        )
        self.batch_size = Histogram(
            "opencue_gateway_batch_size", "size", ["rpc"], registry=self.registry
        )


def test_metrics_count_calls_shared_reads_and_sizes() -> None:
    """Calls sent, reads answered by a shared call, and requests per call are counted."""
    metrics = BatchMetrics()
    batching, upstream, _ = setup(metrics=metrics)
    send(batching, jobs_request("j1"))
    for i in ("j2", "j4", "j6"):
        send(batching, jobs_request(i))
    answer(upstream.calls[0])
    answer(upstream.calls[1])
    value = metrics.registry.get_sample_value
    rpc = {"rpc": "job.JobInterface/GetJobs"}
    assert value("opencue_gateway_batch_calls_total", rpc) == 2
    assert value("opencue_gateway_batched_reads_total", rpc) == 3
    assert value("opencue_gateway_batch_size_count", rpc) == 2
    assert value("opencue_gateway_batch_size_sum", rpc) == 4


def test_max_batch_must_be_positive() -> None:
    """A batch of no ids is a configuration error, said at once."""
    with pytest.raises(ValueError):
        BatchingUpstream(FakeUpstream(), Clock(), max_batch=0)


def test_an_answer_that_cannot_be_split_fails_cleanly() -> None:
    """An answer without the expected list fails the callers with INTERNAL, none hangs."""
    batching, upstream, _ = setup()
    send(batching, jobs_request("j1"))
    waiting = [send(batching, jobs_request(i)) for i in ("j2", "j4")]
    answer(upstream.calls[0])
    upstream.calls[1].succeed(host_pb2.HostGetHostsResponse())
    assert [error_of(d).code for d in waiting] == [13, 13]  # type: ignore[attr-defined]
