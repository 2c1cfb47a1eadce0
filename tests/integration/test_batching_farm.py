# -*- test-case-name: tests.test_batching_farm -*-
"""
Batching against the Cuebot simulator over real gRPC: concurrent GetJobs by id become
one call per round, and every caller's JSON is byte for byte the JSON of the same
request sent alone, for id lists with unknown ids, finished jobs, repeats, and none known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import pytest_twisted
from google.protobuf.message import Message
from opencue_proto import host_pb2, job_pb2
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from opencue_gw.codec import encode
from opencue_gw.upstream.batching import BatchingUpstream
from opencue_gw.upstream.cuebot import CuebotClient
from opencue_gw.upstream.rpcs import Rpc, load_rpcs

RPCS = load_rpcs()
GET_JOBS = RPCS["/job.JobInterface/GetJobs"]
GET_HOSTS = RPCS["/host.HostInterface/GetHosts"]
REACTOR: Any = reactor


class Counting:
    """The real client, with a record of the calls that reach it."""

    def __init__(self, client: CuebotClient) -> None:
        self.client = client
        self.sent: list[tuple[str, Message]] = []

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Record the call, then make it."""
        self.sent.append((rpc.path, request))
        return self.client.call(rpc, request, timeout=timeout, metadata=metadata)


@pytest.fixture
def client(farm: Any) -> Iterator[CuebotClient]:
    """A Cuebot client for the shared, frozen simulator."""
    cuebot = CuebotClient(REACTOR, farm.address)
    cuebot.open()
    yield cuebot
    cuebot.close()


def jobs_request(ids: Sequence[str], include_finished: bool = True) -> Message:
    """GetJobs by id, as CueWeb's job table asks."""
    return job_pb2.JobGetJobsRequest(
        r=job_pb2.JobSearchCriteria(ids=list(ids), include_finished=include_finished)
    )


async def alone(client: CuebotClient, rpc: Rpc, request: Message) -> bytes:
    """The JSON of Cuebot's answer to C{request} sent on its own."""
    reply = await client.call(rpc, request, timeout=10.0)
    return encode(reply.message)


@pytest_twisted.ensureDeferred
async def test_batched_answers_are_the_answers_alone(client: CuebotClient) -> None:
    """Each caller's JSON from a batched call equals its request's JSON alone."""
    everything = await client.call(GET_JOBS, jobs_request([]), timeout=10.0)
    jobs = list(everything.message.jobs.jobs)
    finished = [j.id for j in jobs if j.state == job_pb2.FINISHED]
    active = [j.id for j in jobs if j.state != job_pb2.FINISHED]
    assert len(finished) >= 2 and len(active) >= 6, "the demo farm has changed"
    subsets = [
        [active[0]],
        [active[5], finished[0], active[1]],
        ["00000000-0000-0000-0000-000000000000"],
        [active[2], "not-a-job", finished[1], active[2], active[0]],
        [finished[1]],
        [active[3], active[4], finished[0], finished[1]],
    ]
    counting = Counting(client)
    batching = BatchingUpstream(counting, REACTOR)
    for include_finished in (True, False):
        counting.sent.clear()
        requests = [jobs_request(ids, include_finished) for ids in subsets]
        replies = await gatherResults(
            [batching.call(GET_JOBS, r, timeout=10.0) for r in requests], consumeErrors=True
        )
        # The first went alone, at once; all the others waited for it and went together.
        assert len(counting.sent) == 2
        assert counting.sent[0][1] is requests[0]
        union = list(dict.fromkeys(i for ids in subsets[1:] for i in ids))
        assert list(counting.sent[1][1].r.ids) == union  # type: ignore[attr-defined]
        for request, reply in zip(requests, replies, strict=True):
            expected = await alone(client, GET_JOBS, request)
            assert encode(reply.message) == expected
            assert reply.wire_size == len(reply.message.SerializeToString())
        none_known = encode(replies[2].message)
        assert none_known == b'{"jobs":{"jobs":[]}}'
    assert batching._lanes == {}


@pytest_twisted.ensureDeferred
async def test_single_host_reads_are_batched(client: CuebotClient) -> None:
    """GetHosts by one id each: one call for the waiters, each answer as if alone."""
    everything = await client.call(GET_HOSTS, host_pb2.HostGetHostsRequest(), timeout=10.0)
    ids = [*(h.id for h in everything.message.hosts.hosts[:4]), "no-such-host"]
    requests = [host_pb2.HostGetHostsRequest(r=host_pb2.HostSearchCriteria(ids=[i])) for i in ids]
    counting = Counting(client)
    batching = BatchingUpstream(counting, REACTOR)
    replies = await gatherResults(
        [batching.call(GET_HOSTS, r, timeout=10.0) for r in requests], consumeErrors=True
    )
    assert len(counting.sent) == 2
    for request, reply in zip(requests, replies, strict=True):
        assert encode(reply.message) == await alone(client, GET_HOSTS, request)
