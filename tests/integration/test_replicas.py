"""
Cuebot replicas and facilities on the real wire: simulators (and plain gRPC servers) on
loopback as the replicas, the gateway's resource tree and its real Cuebot clients in
front of them, one replica stopped and started again on its port during a load of reads.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import pytest_twisted
from opencue_proto import job_pb2
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from opencue_gw.config import resolve_config
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.tap import build_root_resource, cuebot_client_for, upstream_chain
from opencue_gw.testing import TEST_SECRET
from opencue_gw.upstream.cuebot import CuebotClient
from opencue_gw.upstream.rpcs import load_rpcs
from opencue_sandbox import SandboxConfig, start_sandbox
from opencue_sandbox.server import Sandbox

from gwtest import GatewayHarness, Reply, token

JOBS = "/job.JobInterface/GetJobs"
CREATE_SHOW = load_rpcs()["/show.ShowInterface/CreateShow"]


class Counted(grpc.ServerInterceptor):
    """Counts the calls a simulator is sent."""

    def __init__(self) -> None:
        self.calls = 0

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.calls += 1
        return continuation(details)


def _sandbox(jobs: int | None = None, port: int = 0) -> tuple[Sandbox, Counted]:
    """A frozen simulator; C{jobs} gives it other data than the default farm's."""
    counter = Counted()
    config = SandboxConfig(port=port, speed=0, jobs=jobs)
    return start_sandbox(config, interceptors=[counter]), counter


class FacilitiesHarness(GatewayHarness):
    """L{GatewayHarness} with every facility of C{options}, each on its real client."""

    def __init__(self, options: dict[str, Any]) -> None:
        config = resolve_config(options, {"JWT_SECRET": TEST_SECRET.decode()})
        self.config = config
        self.metrics = GatewayMetrics()
        self.in_flight = InFlight()
        self.clients: dict[str, CuebotClient] = {}
        chains = {}
        for spec in config.facilities:
            client = self.clients[spec.name] = cuebot_client_for(config, reactor, spec.target)
            client.open()
            chains[spec.name] = upstream_chain(config, client, reactor, self.metrics)
        default = config.default_facility
        self.client = self.clients[default]
        self.resource = build_root_resource(
            config,
            reactor,
            chains[default],
            self.in_flight,
            None,
            metrics=self.metrics,
            facilities={n: (chain, None) for n, chain in chains.items() if n != default},
        )
        self.stub = StubTreq(self.resource)

    def close(self) -> None:
        """Close every facility's channels."""
        for client in self.clients.values():
            client.close()


def _names(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return sorted(job["name"] for job in json.loads(reply.body)["jobs"]["jobs"])


async def _load(harness: GatewayHarness, paths: list[str], seconds: float) -> list[Reply]:
    """Reads on C{paths}, four at a time, for C{seconds}."""
    replies: list[Reply] = []
    stop = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < stop:
            replies.append(await harness.post(paths[n % len(paths)], {"r": {}}))
            n += 1

    await gatherResults([Deferred.fromCoroutine(worker(i)) for i in range(4)])
    return replies


async def _restart_during_load(
    harness: GatewayHarness, paths: list[str], victim: Sandbox
) -> tuple[list[Reply], Counted]:
    """Stop C{victim} 0.3 s into a 1.2 s load and start it again on its port at 0.7 s."""
    port = victim.port
    restarted: list[tuple[Sandbox, Counted]] = []

    def stop() -> None:
        victim.stop(grace=0)

    def start() -> None:
        restarted.append(_sandbox(victim.config.jobs, port))

    reactor.callLater(0.3, stop)
    reactor.callLater(0.7, start)
    replies = await _load(harness, paths, 1.2)
    assert restarted, "the replica was not restarted"
    return replies, restarted[0][1]


@pytest_twisted.ensureDeferred
async def test_two_facilities_keep_serving_while_a_replica_restarts() -> None:
    """
    The default facility has two replicas (literal addresses: one round_robin channel),
    "cloud" a simulator of other data. While one default replica is stopped and started
    again, every read under both prefixes succeeds with its own facility's data, and the
    restarted replica is sent calls again.
    """
    first, first_count = _sandbox()
    second, _ = _sandbox()
    cloud, _ = _sandbox(jobs=3)
    sandboxes = [first, second, cloud]
    harness = FacilitiesHarness(
        {
            "cuebot": f"127.0.0.1:{first.port},127.0.0.1:{second.port}",
            "facility": [f"cloud=127.0.0.1:{cloud.port}"],
        }
    )
    try:
        local_jobs = _names(await harness.post(JOBS, {"r": {}}))
        cloud_jobs = _names(await harness.post("/cloud" + JOBS, {"r": {}}))
        assert local_jobs != cloud_jobs
        assert _names(await harness.post("/default" + JOBS, {"r": {}})) == local_jobs
        replies, back = await _restart_during_load(harness, [JOBS, "/cloud" + JOBS], first)
        sandboxes.append(first)
        assert len(replies) > 20
        assert {r.status for r in replies} == {200}, [r.body for r in replies if r.status != 200]
        assert {tuple(_names(r)) for r in replies} == {tuple(local_jobs), tuple(cloud_jobs)}
        assert back.calls > 0, "the restarted replica was never sent a call"
        assert first_count.calls > 0
    finally:
        harness.close()
        for sandbox in sandboxes:
            sandbox.stop(grace=0)


@pytest_twisted.ensureDeferred
async def test_a_replica_named_by_dns_leaves_and_rejoins_the_rotation() -> None:
    """
    A DNS name and a literal address are two channels the client goes round itself: the
    named replica's restart costs no read, and it is sent calls again once it is back.
    """
    named, _ = _sandbox()
    literal, literal_count = _sandbox()
    sandboxes = [named, literal]
    harness = GatewayHarness(f"localhost:{named.port},127.0.0.1:{literal.port}")
    try:
        assert (await harness.post(JOBS, {"r": {}})).status == 200
        replies, back = await _restart_during_load(harness, [JOBS], named)
        sandboxes.append(named)
        assert len(replies) > 20
        assert {r.status for r in replies} == {200}, [r.body for r in replies if r.status != 200]
        deadline = time.monotonic() + 2
        while back.calls == 0 and time.monotonic() < deadline:
            assert (await harness.post(JOBS, {"r": {}})).status == 200
            await deferLater(reactor, 0.01)
        assert back.calls > 0, "the restarted replica never rejoined"
        assert literal_count.calls > 0
    finally:
        harness.close()
        for sandbox in sandboxes:
            sandbox.stop(grace=0)


class MutationCuebot:
    """A plain gRPC server answering CreateShow; with C{hold}, it waits before answering."""

    def __init__(self, hold: bool) -> None:
        self.seen = 0
        self.arrived = threading.Event()
        self.release = threading.Event()

        def create(request: Any, context: Any) -> Any:
            self.seen += 1
            self.arrived.set()
            if hold:
                self.release.wait(5)
            return CREATE_SHOW.response_class()

        handler = grpc.unary_unary_rpc_method_handler(
            create,
            request_deserializer=CREATE_SHOW.request_class.FromString,
            response_serializer=CREATE_SHOW.response_class.SerializeToString,
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("show.ShowInterface", {"CreateShow": handler})]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        """Stop at once, as a crash would: calls in flight fail UNAVAILABLE."""
        self.server.stop(0).wait(5)
        self.release.set()


@pytest_twisted.ensureDeferred
async def test_a_mutation_on_a_failing_replica_is_a_clear_503_and_never_retried() -> None:
    """
    A CreateShow in flight on the replica that goes away fails with 503 (UNAVAILABLE),
    and is not sent to the other replica, which had answered every earlier one.
    """
    steady, failing = MutationCuebot(hold=False), MutationCuebot(hold=True)
    harness = GatewayHarness(f"127.0.0.1:{steady.port},127.0.0.1:{failing.port}")
    headers = {"Authorization": f"Bearer {token()}"}
    try:
        pending: Deferred[Any] | None = None
        answered_elsewhere = 0
        for attempt in range(6):
            pending = harness.stub.post(
                "http://gateway.test/show.ShowInterface/CreateShow",
                data=json.dumps({"name": f"show{attempt}"}).encode(),
                headers=headers,
            )
            deadline = time.monotonic() + 5
            while not failing.arrived.is_set() and steady.seen == answered_elsewhere:
                assert time.monotonic() < deadline, "no replica was sent the mutation"
                harness.stub.flush()
                await deferLater(reactor, 0.005)
            if failing.arrived.is_set():
                break
            answered_elsewhere += 1
            assert (await harness._settle(pending)).code == 200
        assert failing.arrived.is_set() and pending is not None
        failing.stop()
        response = await harness._settle(pending)
        body = json.loads(await harness._settle(harness.stub.content(response)))
        assert response.code == 503
        assert body["code"] == 14 and body["details"] == []
        assert steady.seen == answered_elsewhere
    finally:
        harness.close()
        steady.stop()
        failing.stop()


@pytest_twisted.ensureDeferred
async def test_cueweb_style_facility_urls_reach_their_simulators() -> None:
    """Each CueWeb facility URL is the gateway plus /<facility>; each sees its own farm."""
    local, _ = _sandbox()
    cloud, _ = _sandbox(jobs=3)
    harness = FacilitiesHarness(
        {
            "cuebot": f"127.0.0.1:{local.port}",
            "default-facility": "local",
            "facility": [f"cloud=127.0.0.1:{cloud.port}"],
        }
    )
    try:
        direct = {}
        for name, sandbox in (("local", local), ("cloud", cloud)):
            with grpc.insecure_channel(f"127.0.0.1:{sandbox.port}") as channel:
                get_jobs = channel.unary_unary(
                    JOBS,
                    request_serializer=job_pb2.JobGetJobsRequest.SerializeToString,
                    response_deserializer=job_pb2.JobGetJobsResponse.FromString,
                )
                answer = get_jobs(job_pb2.JobGetJobsRequest(), timeout=5)
                direct[name] = sorted(job.name for job in answer.jobs.jobs)
        assert direct["local"] != direct["cloud"]
        for name in ("local", "cloud"):
            assert _names(await harness.post(f"/{name}{JOBS}", {"r": {}})) == direct[name]
        assert _names(await harness.post(JOBS, {"r": {}})) == direct["local"]
        missing = await harness.post("/elsewhere" + JOBS, {"r": {}})
        assert missing.status == 404 and json.loads(missing.body)["code"] == 5
    finally:
        harness.close()
        local.stop(grace=0)
        cloud.stop(grace=0)
