"""The event hub, its diffs and its routes' rules, on a fake clock with a fake upstream."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import treq
from opencue_proto import host_pb2, job_pb2
from treq.testing import StubTreq
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, succeed

from opencue_gw.api import GatewayAPI
from opencue_gw.auth.bearer import GatewayRealm, Identity, JWTChecker, JWTVerifier
from opencue_gw.auth.policy import parse_policy
from opencue_gw.errors import GatewayError
from opencue_gw.events import (
    EventFilter,
    EventHub,
    EventMetrics,
    EventSettings,
    install_event_routes,
)
from opencue_gw.events.diff import job_item as diff_job_item
from opencue_gw.events.model import Event, ScopeKey
from opencue_gw.events.routes import EventRoutes, EventsService
from opencue_gw.events.sinks import EventStream
from opencue_gw.http.access import AccessLog
from opencue_gw.http.encoder import AnswerEncoder
from opencue_gw.http.guard import GatewayGuard
from opencue_gw.http.router import Router
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.testing import (
    TEST_SECRET,
    FakeReactor,
    FakeUpstream,
    InlineThreadPool,
    mint_test_token,
    result_of,
)
from opencue_gw.ui import ui_page
from opencue_gw.upstream.rpcs import load_rpcs

RPCS = load_rpcs()
INTERVAL = 2.0


class Farm:
    """A mutable farm the fake upstream answers from."""

    def __init__(self) -> None:
        self.jobs: dict[str, job_pb2.Job] = {}
        self.frames: dict[str, list[job_pb2.Frame]] = {}
        self.hosts: list[host_pb2.Host] = []

    def add_job(self, job_id: str, show: str = "testing", **stats: int) -> job_pb2.Job:
        job = job_pb2.Job(id=job_id, name=f"{show}-{job_id}", show=show, user="ann")
        job.job_stats.total_frames = stats.pop("total", 4)
        for name, value in stats.items():
            setattr(job.job_stats, name, value)
        self.jobs[job_id] = job
        return job

    def upstream(self, clock: FakeReactor) -> FakeUpstream:
        def get_jobs(request: Any) -> Any:
            shows = set(request.r.shows)
            jobs = [
                j
                for j in self.jobs.values()
                if j.state != job_pb2.FINISHED and (not shows or j.show in shows)
            ]
            return job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=jobs))

        def get_job(request: Any) -> Any:
            if request.id not in self.jobs:
                raise GatewayError(5, "no such job")
            return job_pb2.JobGetJobResponse(job=self.jobs[request.id])

        def get_frames(request: Any) -> Any:
            frames = self.frames.get(request.job.id, [])
            return job_pb2.JobGetFramesResponse(frames=job_pb2.FrameSeq(frames=frames))

        def get_hosts(request: Any) -> Any:
            return host_pb2.HostGetHostsResponse(hosts=host_pb2.HostSeq(hosts=self.hosts))

        return FakeUpstream(
            {
                "/job.JobInterface/GetJobs": get_jobs,
                "/job.JobInterface/GetJob": get_job,
                "/job.JobInterface/GetFrames": get_frames,
                "/host.HostInterface/GetHosts": get_hosts,
            },
            answer_all=True,
            clock=clock,
        )


class Recorder:
    """A sink that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, bytes]] = []
        self.errors: list[tuple[ScopeKey, GatewayError]] = []
        self.pings = 0
        self.closed: list[tuple[str, Mapping[str, Any]]] = []

    def deliver(self, events: Sequence[Event], wire: bytes) -> None:
        assert wire == b"".join(event.wire() for event in events)
        self.events.extend((event, event.wire()) for event in events)

    def failed(self, key: ScopeKey, error: GatewayError) -> None:
        self.errors.append((key, error))

    def ping(self) -> None:
        self.pings += 1

    def close(self, name: str, payload: Mapping[str, Any]) -> None:
        self.closed.append((name, payload))

    def changes(self, kind: str = "job") -> list[tuple[str, tuple[str, ...]]]:
        return [(e.item.id, e.changes) for e, _ in self.events if e.type == kind]

    def take(self) -> list[tuple[str, tuple[str, ...]]]:
        found = [(e.item.id, e.changes) for e, _ in self.events]
        self.events.clear()
        return found


def _hub(farm: Farm, **settings: Any) -> tuple[EventHub, FakeReactor, FakeUpstream]:
    clock = FakeReactor()
    upstream = farm.upstream(clock)
    hub = EventHub(upstream, RPCS, clock, settings=EventSettings(interval=INTERVAL, **settings))
    return hub, clock, upstream


def test_job_appears_progresses_pauses_and_finishes() -> None:
    """Snapshot first, then appear, progress, pause/resume and finish as separate changes."""
    farm = Farm()
    farm.add_job("a", waiting_frames=4)
    hub, clock, _ = _hub(farm)
    sink = Recorder()
    hub.subscribe(sink, EventFilter(), "ann")
    assert sink.take() == [("a", ("snapshot",))]

    farm.add_job("b")
    farm.jobs["a"].job_stats.waiting_frames = 3
    farm.jobs["a"].job_stats.running_frames = 1
    clock.advance(INTERVAL)
    assert sorted(sink.take()) == [("a", ("progress",)), ("b", ("appeared",))]

    farm.jobs["a"].is_paused = True
    clock.advance(INTERVAL)
    assert sink.take() == [("a", ("paused",))]
    farm.jobs["a"].is_paused = False
    clock.advance(INTERVAL)
    assert sink.take() == [("a", ("resumed",))]

    farm.jobs["a"].state = job_pb2.FINISHED
    farm.jobs["a"].job_stats.running_frames = 0
    farm.jobs["a"].job_stats.succeeded_frames = 4
    clock.advance(INTERVAL)
    events = sink.events
    assert [(e.item.id, e.changes) for e, _ in events] == [("a", ("state", "finished", "progress"))]
    event, wire = events[0]
    assert wire.startswith(b"id: %d\nevent: job\ndata: {" % event.id)
    assert b'"changes":["state","finished","progress"]' in wire
    assert b'"job":{"id":"a","state":"FINISHED"' in wire
    assert b'"succeededFrames":4' in wire


def test_event_ids_increase_and_a_vanished_unknown_job_is_removed() -> None:
    """Ids are monotonic; a job Cuebot no longer knows is reported removed."""
    farm = Farm()
    farm.add_job("a")
    farm.add_job("b")
    hub, clock, _ = _hub(farm)
    sink = Recorder()
    hub.subscribe(sink, EventFilter(), "ann")
    sink.take()
    del farm.jobs["a"]
    farm.jobs["b"].job_stats.waiting_frames = 2
    clock.advance(INTERVAL)
    farm.jobs["b"].job_stats.waiting_frames = 1
    clock.advance(INTERVAL)
    ids = [e.id for e, _ in sink.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 3
    assert sink.changes()[0] in (("a", ("removed",)), ("b", ("progress",)))
    assert ("a", ("removed",)) in sink.changes()


def test_frame_state_change_carries_exit_status_host_and_retries() -> None:
    """A watched job's frames are polled; a change says which fields moved."""
    farm = Farm()
    farm.add_job("a")
    frame = job_pb2.Frame(id="f1", name="0001-render", state=job_pb2.RUNNING)
    farm.frames["a"] = [frame]
    hub, clock, upstream = _hub(farm)
    sink = Recorder()
    hub.subscribe(sink, EventFilter.parse({"job": ["a"], "types": ["frame"]}), "ann")
    assert sink.take() == [("f1", ("snapshot",))]
    frame.state = job_pb2.DEAD
    frame.exit_status = 1
    frame.retry_count = 1
    frame.last_resource = "host-3/1.0/0"
    clock.advance(INTERVAL)
    event, wire = sink.events[-1]
    assert event.changes == ("state", "retry", "exitStatus", "host")
    assert b'"jobId":"a"' in wire and b'"exitStatus":1' in wire and b'"retryCount":1' in wire
    assert b'"lastResource":"host-3/1.0/0"' in wire
    assert "/job.JobInterface/GetJobs" not in upstream.paths


def test_host_lock_and_state() -> None:
    """Hosts are polled only for a stream that asks; lock and up/down are named."""
    farm = Farm()
    host = host_pb2.Host(id="h1", name="host-1", state=host_pb2.UP, lock_state=host_pb2.OPEN)
    farm.hosts = [host]
    hub, clock, upstream = _hub(farm)
    hub.subscribe(Recorder(), EventFilter(), "ann")
    assert "/host.HostInterface/GetHosts" not in upstream.paths
    sink = Recorder()
    hub.subscribe(sink, EventFilter.parse({"types": ["host"]}), "bob")
    sink.take()
    host.lock_state = host_pb2.LOCKED
    clock.advance(INTERVAL)
    assert sink.take() == [("h1", ("locked",))]
    host.lock_state = host_pb2.OPEN
    host.state = host_pb2.DOWN
    clock.advance(INTERVAL)
    assert sink.take() == [("h1", ("state", "down", "unlocked"))]


def test_states_filter() -> None:
    """states= keeps only events whose object is in one of the named states."""
    farm = Farm()
    farm.add_job("a")
    farm.add_job("b")
    farm.jobs["b"].is_paused = True
    hub, _, _ = _hub(farm)
    sink = Recorder()
    hub.subscribe(sink, EventFilter.parse({"states": ["paused"]}), "ann")
    assert sink.take() == [("b", ("snapshot",))]


def test_resume_with_last_event_id_replays_what_was_missed() -> None:
    """A client reconnecting with its last id gets exactly the events after it."""
    farm = Farm()
    farm.add_job("a")
    hub, clock, _ = _hub(farm)
    first = Recorder()
    sub = hub.subscribe(first, EventFilter(), "ann")
    farm.jobs["a"].job_stats.waiting_frames = 1
    clock.advance(INTERVAL)
    seen = first.events[-1][0].id
    hub.unsubscribe(sub)
    assert hub.scope_keys == []
    farm.jobs["a"].job_stats.waiting_frames = 2
    farm.add_job("b")
    again = Recorder()
    hub.subscribe(again, EventFilter(), "ann", last_event_id=seen)
    # The scope restarts from its last view: its first poll tells the changes since.
    assert sorted(again.take()) == [("a", ("progress",)), ("b", ("appeared",))]

    late = Recorder()
    hub.subscribe(late, EventFilter(), "ann", last_event_id=seen)
    assert sorted(late.take()) == [("a", ("progress",)), ("b", ("appeared",))]

    unknown = Recorder()
    hub.subscribe(unknown, EventFilter(), "ann", last_event_id=1)
    assert sorted(unknown.take()) == [("a", ("snapshot",)), ("b", ("snapshot",))]


def test_one_poll_per_scope_for_many_subscribers() -> None:
    """Fifty subscribers of one show cost one GetJobs per interval."""
    farm = Farm()
    farm.add_job("a")
    hub, clock, upstream = _hub(farm, max_per_caller=100)
    sinks = [Recorder() for _ in range(50)]
    for sink in sinks:
        hub.subscribe(sink, EventFilter.parse({"show": ["testing"]}), "ann")
    farm.jobs["a"].job_stats.running_frames = 1
    for _ in range(3):
        clock.advance(INTERVAL)
    assert len(upstream.calls_to("/job.JobInterface/GetJobs")) == 4
    assert all(s.changes()[-1] == ("a", ("progress",)) for s in sinks)
    assert hub.metrics.polls.labels("jobs")._value.get() == 4


def test_polls_start_an_interval_apart_however_long_a_poll_takes() -> None:
    """
    Fixed rate: the next poll starts an interval after the last one started, so a change
    never waits more than an interval for the poll that sees it (a poll's own time is
    not added to the spacing).
    """
    clock = FakeReactor()
    upstream = FakeUpstream(clock=clock)
    hub = EventHub(upstream, RPCS, clock, settings=EventSettings(interval=INTERVAL))
    hub.subscribe(Recorder(), EventFilter(), "ann")
    assert len(upstream.calls) == 1
    clock.advance(INTERVAL * 0.4)
    upstream.calls[0].succeed()
    clock.advance(INTERVAL * 0.6 - 0.01)
    assert len(upstream.calls) == 1
    clock.advance(0.01)
    assert len(upstream.calls) == 2
    # A poll slower than the interval is followed at once, never overlapped.
    clock.advance(INTERVAL * 1.5)
    assert len(upstream.calls) == 2
    upstream.calls[1].succeed()
    clock.advance(0)
    assert len(upstream.calls) == 3


def test_no_polling_without_subscribers() -> None:
    """Nothing is asked before the first subscriber or after the last one leaves."""
    farm = Farm()
    hub, clock, upstream = _hub(farm)
    clock.advance(60)
    assert upstream.calls == []
    subs = [hub.subscribe(Recorder(), EventFilter(), "ann") for _ in range(2)]
    hub.unsubscribe(subs[0])
    clock.advance(INTERVAL)
    assert len(upstream.calls) == 2
    hub.unsubscribe(subs[1])
    clock.advance(60)
    assert len(upstream.calls) == 2
    assert clock.getDelayedCalls() == []


def test_limits_per_caller_and_in_total() -> None:
    """Beyond the caller's limit 429, beyond the total 503; leaving frees a place."""
    hub, _, _ = _hub(Farm(), max_per_caller=2, max_subscribers=3)
    first = hub.subscribe(Recorder(), EventFilter(), "ann")
    hub.subscribe(Recorder(), EventFilter(), "ann")
    with pytest.raises(GatewayError) as refused:
        hub.subscribe(Recorder(), EventFilter(), "ann")
    assert refused.value.http_status == 429 and refused.value.headers["Retry-After"]
    hub.subscribe(Recorder(), EventFilter(), "bob")
    with pytest.raises(GatewayError) as full:
        hub.subscribe(Recorder(), EventFilter(), "carl")
    assert full.value.http_status == 503
    hub.unsubscribe(first)
    hub.subscribe(Recorder(), EventFilter(), "carl")


def test_poll_error_is_told_once_and_heartbeats_flow() -> None:
    """A failing poll is reported once per distinct error; pings every heartbeat."""
    farm = Farm()
    hub, clock, _ = _hub(farm, heartbeat=15.0)
    sink = Recorder()
    hub.subscribe(sink, EventFilter.parse({"job": ["nope"]}), "ann")
    clock.advance(INTERVAL)
    assert [(key, e.code) for key, e in sink.errors] == [(("job", "nope"), 5)]
    clock.advance(15.0 - INTERVAL)
    assert sink.pings == 1


def test_shutdown_ends_every_stream() -> None:
    """Stopping the events service sends shutdown to each subscriber and stops polling."""
    farm = Farm()
    hub, clock, _ = _hub(farm)
    sink = Recorder()
    hub.subscribe(sink, EventFilter(), "ann")
    service = EventsService(hub, clock)
    service.startService()
    service.stopService()
    assert sink.closed and sink.closed[0][0] == "shutdown"
    assert hub.scope_keys == [] and hub.subscriber_count == 0
    with pytest.raises(GatewayError) as refused:
        hub.subscribe(Recorder(), EventFilter(), "ann")
    assert refused.value.http_status == 503


class FakeRequest:
    """What an EventStream needs of a request, recording what it is given."""

    def __init__(self) -> None:
        self.code = 0
        self.headers: dict[bytes, bytes] = {}
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_stream_headers_and_slow_subscriber_is_dropped() -> None:
    """While the transport is paused events queue up to the bound, then dropped ends it."""
    farm = Farm()
    farm.add_job("a")
    hub, clock, _ = _hub(farm, max_buffer_bytes=4096)
    request = FakeRequest()
    ended: list[bool] = []
    stream = EventStream(request, max_buffer=4096, retry_ms=2000, on_end=ended.append)  # type: ignore[arg-type]
    assert request.headers[b"content-type"].startswith(b"text/event-stream")
    assert request.headers[b"cache-control"] == b"no-cache"
    assert request.headers[b"x-accel-buffering"] == b"no"
    assert request.written == [b"retry: 2000\n\n"]
    sub = hub.subscribe(stream, EventFilter(), "ann")
    assert b"event: job" in request.written[-1]
    request.producer.pauseProducing()
    written = len(request.written)
    for n in range(40):
        farm.jobs["a"].job_stats.running_frames = n + 1
        clock.advance(INTERVAL)
        if ended:
            break
    assert ended == [True]
    assert request.written[written:][-1].startswith(b"event: dropped\n")
    assert len(request.written) == written + 1
    assert stream.ended.called and request.producer is None
    hub.unsubscribe(sub)
    assert hub.subscriber_count == 0


def test_stream_resumes_writing_queued_events() -> None:
    """A short pause loses nothing: the queue is written when the transport resumes."""
    farm = Farm()
    farm.add_job("a")
    hub, clock, _ = _hub(farm)
    request = FakeRequest()
    stream = EventStream(request, max_buffer=1 << 20, retry_ms=2000, on_end=lambda slow: None)  # type: ignore[arg-type]
    hub.subscribe(stream, EventFilter(), "ann")
    request.producer.pauseProducing()
    farm.jobs["a"].job_stats.running_frames = 1
    clock.advance(INTERVAL)
    before = len(request.written)
    request.producer.resumeProducing()
    assert len(request.written) == before + 1 and b"progress" in request.written[-1]


POLICY = b"""
[roles.viewer]
allow = ["job.JobInterface.Get*", "job.JobInterface.Find*"]
[roles.admin]
allow = ["*"]
"""


def test_policy_filters_types_and_answers_whoami_actions() -> None:
    """A viewer may stream jobs but not hosts; asking for hosts by name is 403."""
    policy = parse_policy(POLICY, [f"{r.service}.{r.method}" for r in RPCS.values()])
    hub, _, _ = _hub(Farm())
    routes = EventRoutes(hub, policy=policy)
    viewer = Identity("v", "viewer", {"role": "viewer"})
    asked = EventFilter.parse({"types": ["job", "host"]})
    with pytest.raises(GatewayError) as denied:
        routes.permitted(viewer, asked)
    assert denied.value.http_status == 403 and "host" in denied.value.message
    assert routes.permitted(viewer, EventFilter()).types == {"job"}
    assert routes.permitted(Identity("a", "admin", {"role": "admin"}), asked) is asked
    assert not routes.may(viewer, "/job.JobInterface/Kill")
    assert routes.may(Identity("a", "admin", {"role": "admin"}), "/job.JobInterface/Kill")


def test_filter_rejects_bad_parameters() -> None:
    """Unknown parameters, types and states are the client's error; frames need job=."""
    for args in (
        {"color": ["red"]},
        {"types": ["jobs"]},
        {"states": ["ASLEEP"]},
        {"types": ["frame"]},
    ):
        with pytest.raises(GatewayError) as bad:
            EventFilter.parse(args)
        assert bad.value.http_status == 400, args


def test_wait_answers_when_the_job_finishes_and_times_out_with_408() -> None:
    """The wait route rides the job's scope: finished answers, a timeout is 408/code 4."""
    farm = Farm()
    farm.add_job("a", total=2)
    hub, clock, _ = _hub(farm)
    routes = EventRoutes(hub)
    request = FakeRequest()
    request.args = {b"timeout": [b"10"]}  # type: ignore[attr-defined]
    answer: Deferred[bytes] = routes.wait(request, "a")  # type: ignore[arg-type]
    assert not answer.called
    farm.jobs["a"].state = job_pb2.FINISHED
    farm.jobs["a"].job_stats.succeeded_frames = 2
    clock.advance(INTERVAL)
    body: list[bytes] = []
    answer.addCallback(body.append)
    assert b'"frameCounts":{"total":2' in body[0] and b'"state":"FINISHED"' in body[0]
    assert hub.subscriber_count == 0

    farm.add_job("b")
    slow = FakeRequest()
    slow.args = {b"timeout": [b"5s"]}  # type: ignore[attr-defined]
    failed: list[Any] = []
    routes.wait(slow, "b").addErrback(failed.append)  # type: ignore[arg-type]
    clock.advance(5)
    error = failed[0].value
    assert (error.http_status, error.code) == (408, 4) and "within 5s" in error.message
    assert hub.subscriber_count == 0 and hub.scope_keys == []


def _stack(farm: Farm, **settings: Any) -> tuple[Any, EventHub, FakeReactor, InFlight]:
    """The event routes behind the real guard, through StubTreq, on the fake clock."""
    clock = FakeReactor()
    upstream = farm.upstream(clock)
    metrics = GatewayMetrics()
    in_flight = InFlight()
    api = GatewayAPI(RPCS, upstream, AnswerEncoder(clock, InlineThreadPool()))
    router = Router()
    api.install(router)
    hub = EventHub(
        upstream,
        RPCS,
        clock,
        settings=EventSettings(interval=INTERVAL, **settings),
        metrics=EventMetrics(metrics.registry),
    )
    install_event_routes(router, hub, in_flight=in_flight)
    portal = Portal(GatewayRealm(), [JWTChecker(JWTVerifier(TEST_SECRET, clock))])
    guard = GatewayGuard(
        portal, router, clock, in_flight, AccessLog(clock, metrics), metrics=metrics
    )
    return StubTreq(guard), hub, clock, in_flight


def _auth(sub: str = "ann") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_test_token(sub)}"}


def test_stream_over_http_leaves_in_flight_and_ends_when_the_client_goes() -> None:
    """The route streams SSE behind the guard; it is not counted in flight; leaving ends it."""
    farm = Farm()
    farm.add_job("a")
    stub, hub, clock, in_flight = _stack(farm)
    opening = stub.get("http://gw.test/api/v1/events?show=testing", headers=_auth())
    stub.flush()
    response = result_of(opening)
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/event-stream; charset=utf-8"]
    chunks: list[bytes] = []
    done = treq.collect(response, chunks.append)
    stub.flush()
    body = b"".join(chunks)
    assert body.startswith(b"retry: 2000\n\n") and b'"changes":["snapshot"]' in body
    assert in_flight.count == 0 and hub.subscriber_count == 1
    farm.jobs["a"].job_stats.running_frames = 2
    clock.advance(INTERVAL)
    stub.flush()
    assert b'"changes":["progress"]' in chunks[-1]
    clock.advance(15)
    stub.flush()
    assert chunks[-1] == b": ping\n\n"
    # Well past the 30 s gRPC deadline: still open, still beating, still polling.
    for _ in range(30):
        clock.advance(INTERVAL)
    stub.flush()
    assert not done.called and b"".join(chunks).count(b": ping\n\n") >= 4
    assert clock.getDelayedCalls()  # the poll, the heartbeat and the token's expiry
    # The connection drops (the client went away).
    stream = hub.subscriptions[0].sink
    assert isinstance(stream, EventStream)
    stream.request.channel.transport.loseConnection()  # type: ignore[attr-defined]
    stub.flush()
    assert hub.subscriber_count == 0 and hub.scope_keys == []
    done.addErrback(lambda _: None)


def test_limits_and_errors_are_json_over_http() -> None:
    """No token 401; over the caller's limit 429 with Retry-After; bad filter 400."""
    farm = Farm()
    stub, hub, _, _ = _stack(farm, max_per_caller=1)
    unauthenticated = stub.get("http://gw.test/api/v1/events")
    stub.flush()
    assert result_of(unauthenticated).code == 401
    first = stub.get("http://gw.test/api/v1/events", headers=_auth())
    stub.flush()
    assert result_of(first).code == 200
    second = stub.get("http://gw.test/api/v1/events", headers=_auth())
    stub.flush()
    refused = result_of(second)
    assert refused.code == 429 and refused.headers.getRawHeaders("retry-after")
    body = json.loads(result_of(treq.content(refused)))
    assert body["code"] == 8 and "per caller" in body["message"]
    head = stub.head("http://gw.test/api/v1/events", headers=_auth("bob"))
    stub.flush()
    assert result_of(head).code == 200
    bad = stub.get("http://gw.test/api/v1/events?types=frame", headers=_auth("bob"))
    stub.flush()
    answer = result_of(bad)
    assert answer.code == 400
    assert json.loads(result_of(treq.content(answer)))["code"] == 3
    assert hub.subscriber_count == 1


def test_stream_ends_when_its_token_expires() -> None:
    """A stream does not outlive its token: it ends with an expired event."""
    farm = Farm()
    stub, hub, clock, _ = _stack(farm)
    token = mint_test_token("ann", ttl=30)
    opening = stub.get("http://gw.test/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    stub.flush()
    chunks: list[bytes] = []
    done = treq.collect(result_of(opening), chunks.append)
    clock.advance(30)
    stub.flush()
    assert chunks[-1].startswith(b"event: expired\n")
    assert done.called and hub.subscriber_count == 0


def test_ui_routes_serve_only_the_page_files() -> None:
    """/ui and its three files are public with a strict CSP; nothing else under /ui/."""
    router = Router()
    ui_page().install(router, public=True)
    portal = Portal(GatewayRealm(), [JWTChecker(JWTVerifier(TEST_SECRET, FakeReactor()))])
    metrics = GatewayMetrics()
    clock = FakeReactor()
    stub = StubTreq(GatewayGuard(portal, router, clock, InFlight(), AccessLog(clock, metrics)))
    for path, kind in (
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/sse.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ):
        answer = stub.get("http://gw.test" + path)
        stub.flush()
        response = result_of(answer)
        assert response.code == 200, path
        assert response.headers.getRawHeaders("content-type")[0].startswith(kind)
        policy = response.headers.getRawHeaders("content-security-policy")[0]
        assert "connect-src 'self'" in policy and "script-src 'self'" in policy
    for path, status in (("/ui/policy.toml", 404), ("/ui/index.html", 404), ("/ui/", 301)):
        answer = stub.get("http://gw.test" + path, allow_redirects=False)
        stub.flush()
        assert result_of(answer).code == status, path


class FakeShared:
    """The Redis side of a hub's sharing: a lease answer, and what was published."""

    def __init__(self, held: bool) -> None:
        self.held = held
        self.store = type("Store", (), {"up": True})()
        self.owner = "me"
        self.handler: Any = None
        self.error_handler: Any = None
        self.published: list[tuple[list[Event], list[str]]] = []
        self.next_id = 10**13
        self.attempts = 0
        self.released: list[ScopeKey] = []

    def attempt(self, key: ScopeKey, floor: int, ttl: float) -> Deferred[bool]:
        assert ttl == pytest.approx(INTERVAL * 2 / 3)
        self.attempts += 1
        return succeed(self.held)

    def publish(
        self, key: ScopeKey, events: Sequence[Event], gone: Sequence[str], floor: int, ttl: float
    ) -> Deferred[int | None]:
        self.published.append((list(events), list(gone)))
        first, self.next_id = self.next_id, self.next_id + len(events)
        return succeed(first)

    def listening(self, key: ScopeKey) -> bool:
        return True

    def watch(self, key: ScopeKey) -> None:
        pass

    def unwatch(self, key: ScopeKey) -> None:
        pass

    def release(self, key: ScopeKey) -> Deferred[None]:
        self.released.append(key)
        return succeed(None)

    def publish_error(self, key: ScopeKey, error: GatewayError | None) -> None:
        pass

    def stop(self) -> None:
        pass


def _shared_hub(farm: Farm, held: bool) -> tuple[EventHub, FakeReactor, FakeUpstream, FakeShared]:
    clock = FakeReactor()
    upstream = farm.upstream(clock)
    shared = FakeShared(held)
    hub = EventHub(
        upstream,
        RPCS,
        clock,
        settings=EventSettings(interval=INTERVAL),
        shared=shared,  # type: ignore[arg-type]
    )
    return hub, clock, upstream, shared


def test_shared_follower_polls_once_and_follows_the_published_batches() -> None:
    """
    Without the lease a hub polls once (its snapshot), then only hears batches: they
    reach its subscribers with the publisher's ids, keep its snapshot current for
    later subscribers, and are numbered after its own ids if those are ahead.
    """
    farm = Farm()
    farm.add_job("a")
    farm.add_job("b")
    hub, clock, upstream, _ = _shared_hub(farm, held=False)
    sink = Recorder()
    hub.subscribe(sink, EventFilter(), "ann")
    assert sorted(sink.take()) == [("a", ("snapshot",)), ("b", ("snapshot",))]
    clock.advance(INTERVAL * 5)
    assert len(upstream.calls) == 1 and sink.take() == []

    changed = job_pb2.Job(id="a", show="testing", state=job_pb2.FINISHED)
    ahead = hub.last_id + 100
    heard = [Event(diff_job_item(changed), ("state", "finished"), ahead)]
    hub._heard(("jobs", ""), "other", heard, ["a", "b"])
    assert [(e.id, e.item.id) for e, _ in sink.events] == [(ahead, "a")]
    late = Recorder()
    hub.subscribe(late, EventFilter(), "bob")
    assert late.take() == []  # a and b are gone from the holder's snapshot

    behind = [Event(diff_job_item(job_pb2.Job(id="c", show="testing")), ("appeared",), 5)]
    hub._heard(("jobs", ""), "other", behind, [])
    assert sink.events[-1][0].id == ahead + 1 and late.take() == [("c", ("appeared",))]


def test_shared_leader_publishes_and_delivers_what_comes_back() -> None:
    """
    The lease holder polls every interval and publishes its diff; its own subscribers
    get the batch as it comes back from Redis (same ids as everywhere). Without Redis
    it numbers and delivers its events itself.
    """
    farm = Farm()
    farm.add_job("a")
    hub, clock, upstream, shared = _shared_hub(farm, held=True)
    sink = Recorder()
    hub.subscribe(sink, EventFilter(), "ann")
    sink.take()
    farm.jobs["a"].job_stats.running_frames = 1
    clock.advance(INTERVAL)
    assert len(upstream.calls) == 2 and sink.take() == []
    [(events, gone)] = shared.published
    assert [(e.item.id, e.changes) for e in events] == [("a", ("progress",))] and gone == []
    hub._heard(("jobs", ""), "me", events, gone, 10**13)
    assert [(e.id, e.item.id) for e, _ in sink.events] == [(10**13, "a")]

    shared.store.up = False
    farm.jobs["a"].job_stats.running_frames = 2
    clock.advance(INTERVAL)
    assert sink.events[-1][0].id == 10**13 + 1 and len(shared.published) == 1


def _ticks(clock: FakeReactor, count: int) -> None:
    """Advance C{count} thirds of an interval, one at a time (each a lease attempt)."""
    for _ in range(count):
        clock.advance(INTERVAL / 3 + 1e-9)


def test_shared_lease_is_renewed_while_a_poll_is_slow() -> None:
    """
    The lease is attempted three times an interval on its own timer, so a poll that
    takes longer than an interval does not lose it; the poll ticks ask no more of
    Redis, and the slow answer is still the holder's to publish.
    """
    farm = Farm()
    farm.add_job("a")
    hub, clock, upstream, shared = _shared_hub(farm, held=True)
    hub.subscribe(Recorder(), EventFilter(), "ann")
    scope = hub._scopes[("jobs", "")]
    assert (shared.attempts, len(upstream.calls), scope.role) == (1, 1, "leader")
    answer = upstream.auto.pop("/job.JobInterface/GetJobs")
    upstream.answer_all = False
    _ticks(clock, 9)  # three intervals; the second poll, asked at the first, unanswered
    assert shared.attempts == 10 and len(upstream.pending()) == 1
    assert scope.lease is not None and scope.lease.held and scope.role == "leader"
    farm.jobs["a"].job_stats.running_frames = 1
    slow = upstream.pending()[0]
    slow.succeed(answer(slow.request))
    [(events, _)] = shared.published
    assert [(e.item.id, e.changes) for e in events] == [("a", ("progress",))]


def test_shared_follower_that_takes_the_lease_polls_at_once() -> None:
    """
    A follower whose attempt takes the lease (its holder gone) polls at that moment,
    not at its next poll tick, diffing from the snapshot the batches kept current; a
    scope that stops gives the lease up and attempts no more.
    """
    farm = Farm()
    farm.add_job("a")
    hub, clock, upstream, shared = _shared_hub(farm, held=False)
    sink = Recorder()
    sub = hub.subscribe(sink, EventFilter(), "ann")
    scope = hub._scopes[("jobs", "")]
    _ticks(clock, 4)
    assert len(upstream.calls) == 1 and scope.role == "follower" and shared.attempts == 5
    heard = [Event(diff_job_item(farm.add_job("b")), ("appeared",), 7)]
    hub._heard(("jobs", ""), "other", heard, [])  # the holder's last batch, before it died
    farm.jobs["a"].job_stats.running_frames = 1
    shared.held = True
    _ticks(clock, 1)  # the next attempt takes it: a poll now, a third before the tick
    assert len(upstream.calls) == 2 and scope.role == "leader"
    [(events, gone)] = shared.published
    assert [(e.item.id, e.changes) for e in events] == [("a", ("progress",))] and gone == []
    _ticks(clock, 2)  # the poll tick that was due moved an interval after this poll
    assert len(upstream.calls) == 2
    hub.unsubscribe(sub)
    attempts = shared.attempts
    _ticks(clock, 6)
    assert shared.released == [("jobs", "")] and shared.attempts == attempts
