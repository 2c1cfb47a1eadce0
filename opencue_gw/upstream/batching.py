# -*- test-case-name: tests.test_batching,tests.integration.test_batching_farm -*-
"""
Batching by-id reads: concurrent reads that differ only in their list of ids become one
Cuebot call carrying the union of the ids, and each caller gets its own share of the
answer.

CueWeb's job table polls C{GetJobs {r:{ids:[id], include_finished:true}}} once per row
every five seconds, all rows at once; ten tabs of 200 jobs are 400 Cuebot queries a
second where one query per round would do. Read sharing (L{opencue_gw.upstream.coalesce}) only
helps when two requests are byte-identical; these differ in their one id.

How a batch forms. Nothing waits for company: a request for which no call with the same
key is in flight is sent at once, as it came, with no timer. Requests that arrive while
such a call is in flight wait, and when it completes they all go out together as the
next call (natural batching: the busier Cuebot is, the bigger the batches, and an idle
gateway adds no delay). A batch carries at most C{max_batch} distinct ids; more waiters
make several calls. A request whose ids are all in a call already in flight, and whose
deadline is no later than that call's, takes its answer from that call instead of
waiting. The key is the RPC, the request with its ids cleared (deterministic bytes) and
the forwarded metadata except the per-request keys, as in read sharing; authorization
was decided before this layer, so every caller in a batch was allowed its own request.
The batched call carries the first member's metadata.

Why each caller gets exactly Cuebot's answer to its own request:

  - Which items. Cuebot's criteria (C{dao/criteria/postgres/JobSearch} and
    C{HostSearch}) turn the ids into C{(pk=? OR pk=? ...)} ANDed with every other
    criterion, so an item is in the answer if and only if its own id was asked for and
    it passes the other criteria, which every member shares. The answer to the union,
    restricted to a caller's ids, is the answer to the caller. An unknown id matches
    nothing, in the union as alone. A request with no ids means "no id filter" and is
    never batched.
  - Which order. C{WhiteboardDaoJdbc.getJobs} sorts by C{job.str_name ASC}, a property
    of the jobs, so restricting the union's answer keeps Cuebot's order (its database
    collation included, which is why the union's own order is the reference, not a sort
    done here). Job names repeat only across finished jobs; SQL leaves the order of
    equal names open, and the simulator keeps the order of the ids in the request, so
    jobs of equal name are put in the caller's id order. C{getHosts} has no ORDER BY at
    all: the order of several hosts is whatever plan Postgres picks for that id list,
    which need not be the union's. Those reads are batched only when the caller asks
    for one id (CueWeb's case), where an answer of at most one item has only one order.
  - The rest. Each caller's reply is a new response message with only its items (the
    other fields, and the presence of the list's container, copied from Cuebot's
    answer, since grpc-gateway writes an empty but present message as C{{}}), its own
    wire size, and Cuebot's response headers. A request that went out alone, as it came,
    gets Cuebot's reply untouched.

Which reads (L{BY_ID_READS}). Of the Cuebot-side RPCs, these requests carry a list of
ids: C{job.JobInterface/GetJobs}, C{host.HostInterface/GetHosts} and
C{facility.AllocationInterface/FindHosts} (batched: their items are jobs and hosts,
which carry their id); C{job.JobInterface/GetJobNames} (not: its answer is bare names,
which cannot be traced back to ids); the three C{GetFrames} (not: the page and limit
apply to the union, so one caller's frames can fall on a page it did not ask for, and
the frame order's tie-break is the layer's dispatch order, which a Frame does not
carry); C{limit.LimitInterface/GetBindings} (not: several bindings per id, and no
documented order); and frame mutations (never: not reads).

Errors and time. A failed batched call fails every member with the same error. Each
member keeps its own deadline: the batched call gets the latest deadline of its members
(none if any member has none), and a member whose deadline comes sooner has its own
timer and gets DEADLINE_EXCEEDED when it fires. A caller going away leaves its batch;
the Cuebot call is cancelled only when no caller is left in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, read_key

__all__ = ["BY_ID_READS", "DEFAULT_MAX_BATCH", "BatchingUpstream", "ByIdRead"]

# Cuebot binds one parameter per id; 500 keeps a query far below PostgreSQL's 65,535
# and a batched answer of full Job messages around a megabyte.
DEFAULT_MAX_BATCH = 500
# Metadata the gateway adds per request; it does not make two reads different.


@dataclass(frozen=True)
class ByIdRead:
    """Where one by-id read keeps its ids, and how its answer splits per caller."""

    ids: tuple[str, ...]
    """Field path, in the request, to the repeated string field of ids."""
    items: tuple[str, ...]
    """Field path, in the response, to the repeated field of items."""
    order_by: Callable[[Any], Any] | None
    """
    The item's key Cuebot sorts the answer by, or C{None} if Cuebot's order is not
    defined (then only single-id requests are batched).
    """
    item_id: str = "id"
    """The item's field holding its id."""


def _job_name(job: Any) -> Any:
    return job.name


BY_ID_READS: Mapping[str, ByIdRead] = {
    # WhiteboardDaoJdbc.getJobs: JobSearch ... ORDER BY job.str_name ASC.
    "/job.JobInterface/GetJobs": ByIdRead(("r", "ids"), ("jobs", "jobs"), _job_name),
    # WhiteboardDaoJdbc.getHosts: HostSearch, no ORDER BY.
    "/host.HostInterface/GetHosts": ByIdRead(("r", "ids"), ("hosts", "hosts"), None),
    # ManageAllocation.findHosts: the request's HostSearch plus the allocation, same getHosts.
    "/facility.AllocationInterface/FindHosts": ByIdRead(("r", "ids"), ("hosts", "hosts"), None),
}


class _Member:
    """One caller's request, waiting for a batch or in one."""

    __slots__ = ("batch", "deadline", "ids", "lane", "metadata", "request", "result", "timer")

    def __init__(
        self,
        request: Message,
        ids: list[str],
        metadata: Sequence[tuple[str, str | bytes]],
        deadline: float | None,
        leave: Callable[[_Member], None],
    ) -> None:
        self.request = request
        self.ids = ids
        self.metadata = metadata
        self.deadline = deadline
        self.batch: _Batch | None = None
        self.lane: _Lane | None = None
        """The lane whose next call this member waits for, while it waits."""
        self.timer: IDelayedCall | None = None
        self.result: Deferred[Any] = Deferred(lambda _: leave(self))


class _Batch:
    """One Cuebot call and the callers it answers."""

    __slots__ = ("call", "deadline", "id_set", "members", "request")

    def __init__(self, request: Message, ids: list[str], deadline: float | None) -> None:
        self.request = request
        self.id_set = frozenset(ids)
        self.deadline = deadline
        self.members: list[_Member] = []
        self.call: Deferred[Any] | None = None


class _Lane:
    """The calls in flight for one key, and the callers waiting for the next one."""

    __slots__ = ("in_flight", "waiting")

    def __init__(self) -> None:
        self.in_flight: list[_Batch] = []
        self.waiting: list[_Member] = []


class BatchingUpstream:
    """
    Wraps the Cuebot client: by-id reads are batched, everything else passes through.

    C{metrics} is optional; it is used if it has C{batch_calls}, C{batched_reads}
    (counters) and C{batch_size} (a histogram), each labelled by RPC route (the path
    without its slash, as the request metrics are).
    """

    def __init__(
        self,
        upstream: Any,
        clock: IReactorTime,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        metrics: Any = None,
        reads: Mapping[str, ByIdRead] = BY_ID_READS,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._upstream = upstream
        self._clock = clock
        self._max_batch = max_batch
        self._metrics = metrics
        self._reads = reads
        self._lanes: dict[tuple[Any, ...], _Lane] = {}

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]:
        """Send a by-id read now, or join or wait for a batch; pass anything else on."""
        read = self._reads.get(rpc.path)
        ids = _ids_of(request, read.ids) if read is not None else []
        if (
            read is None
            or not ids
            or len(ids) > self._max_batch
            or (read.order_by is None and len(ids) != 1)
        ):
            return self._upstream.call(rpc, request, timeout=timeout, metadata=metadata)
        deadline = None if timeout is None else self._clock.seconds() + timeout
        member = _Member(request, ids, metadata, deadline, self._leave)
        key = _key(rpc, request, read, metadata)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if not lane.in_flight:
            self._send(rpc, read, key, lane, [member])
            return member.result
        for batch in lane.in_flight:
            if _covers(batch, member):
                self._join(batch, member)
                return member.result
        lane.waiting.append(member)
        member.lane = lane
        self._arm(member)
        return member.result

    def _send(
        self, rpc: Rpc, read: ByIdRead, key: tuple[Any, ...], lane: _Lane, members: list[_Member]
    ) -> None:
        ids = list(dict.fromkeys(i for m in members for i in m.ids))
        request = (
            members[0].request if len(members) == 1 else _with_ids(members[0].request, read, ids)
        )
        deadlines = [m.deadline for m in members]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        batch = _Batch(request, ids, deadline)
        lane.in_flight.append(batch)
        # The lane may have been let go by a call that failed at once, inside _settled.
        self._lanes.setdefault(key, lane)
        for member in members:
            self._join(batch, member)
        self._count("batch_calls", rpc)
        timeout = None if deadline is None else max(0.0, deadline - self._clock.seconds())
        call = maybeDeferred(
            self._upstream.call, rpc, request, timeout=timeout, metadata=members[0].metadata
        )
        batch.call = call
        call.addBoth(self._settled, rpc, read, key, lane, batch)

    def _join(self, batch: _Batch, member: _Member) -> None:
        batch.members.append(member)
        member.batch = batch
        member.lane = None
        # A member whose deadline is the call's needs no timer: the call carries it.
        if member.deadline is not None and (
            batch.deadline is None or member.deadline < batch.deadline
        ):
            self._arm(member)
        else:
            _stop(member)

    def _arm(self, member: _Member) -> None:
        if member.timer is not None or member.deadline is None:
            return
        delay = max(0.0, member.deadline - self._clock.seconds())
        member.timer = self._clock.callLater(delay, self._expire, member)

    def _expire(self, member: _Member) -> None:
        member.timer = None
        if member.result.called:
            return
        self._remove(member)
        member.result.errback(GatewayError(4, "Deadline Exceeded"))

    def _leave(self, member: _Member) -> None:
        # The caller went away; Deferred.cancel fails its Deferred with CancelledError.
        _stop(member)
        self._remove(member)

    def _remove(self, member: _Member) -> None:
        lane, member.lane = member.lane, None
        if lane is not None and member in lane.waiting:
            lane.waiting.remove(member)
        batch, member.batch = member.batch, None
        if batch is None:
            return
        if member in batch.members:
            batch.members.remove(member)
        if not batch.members and batch.call is not None and not batch.call.called:
            batch.call.cancel()

    def _settled(
        self,
        result: Any,
        rpc: Rpc,
        read: ByIdRead,
        key: tuple[Any, ...],
        lane: _Lane,
        batch: _Batch,
    ) -> None:
        if batch in lane.in_flight:
            lane.in_flight.remove(batch)
        members, batch.members = batch.members, []
        for member in members:
            _stop(member)
            member.batch = None
        # Those who waited for this call go out before anyone is answered, so that a
        # caller asking again from its callback waits for the next call too.
        waiting, lane.waiting = lane.waiting, []
        for group in _groups(waiting, self._max_batch):
            self._send(rpc, read, key, lane, group)
        if not lane.in_flight and not lane.waiting and self._lanes.get(key) is lane:
            del self._lanes[key]
        if members:
            self._observe(rpc, len(members))
        if isinstance(result, Failure):
            # After a cancellation no member is left (the last one leaving cancels).
            for member in members:
                member.result.errback(result)
            return None
        split: _Split | None = None
        for member in members:
            if member.request is batch.request:
                member.result.callback(result)
                continue
            try:
                if split is None:
                    split = _Split(read, result)
                answer = split.answer(member.ids)
            except Exception as error:  # an answer without the expected list
                member.result.errback(GatewayError(13, f"bad answer from Cuebot: {error}"))
            else:
                member.result.callback(answer)
        return None

    def _count(self, name: str, rpc: Rpc, amount: int = 1) -> None:
        metric = getattr(self._metrics, name, None)
        if metric is not None:
            metric.labels(rpc.path[1:]).inc(amount)

    def _observe(self, rpc: Rpc, size: int) -> None:
        histogram = getattr(self._metrics, "batch_size", None)
        if histogram is not None:
            histogram.labels(rpc.path[1:]).observe(size)
        if size > 1:
            self._count("batched_reads", rpc, size)


class _Split:
    """One batched answer, indexed once, cut into each caller's answer."""

    __slots__ = ("_by_id", "_rank", "_read", "_reply")

    def __init__(self, read: ByIdRead, reply: Any) -> None:
        self._read = read
        self._reply = reply
        items = _field(reply.message, read.items)
        self._by_id: dict[str, Any] = {}
        self._rank: dict[Any, int] = {}
        for position, item in enumerate(items):
            self._by_id.setdefault(getattr(item, read.item_id), item)
            if read.order_by is not None:
                self._rank.setdefault(read.order_by(item), position)

    def answer(self, ids: list[str]) -> UpstreamReply:
        """Cuebot's answer to a request for C{ids} (distinct), from the batched answer."""
        items = [self._by_id[i] for i in ids if i in self._by_id]
        order_by = self._read.order_by
        if order_by is not None and len(items) > 1:
            # Stable: items of equal key stay in the caller's id order.
            items.sort(key=lambda item: self._rank[order_by(item)])
        message = _with_items(self._reply.message, self._read.items, items)
        return UpstreamReply(message, tuple(self._reply.headers), message.ByteSize())


def _groups(members: list[_Member], max_ids: int) -> list[list[_Member]]:
    """
    Waiting members, in arrival order, in groups of at most C{max_ids} distinct ids: each
    joins the first group it fits in (first fit), so few calls go out.
    """
    groups: list[tuple[list[_Member], set[str]]] = []
    for member in members:
        for group, ids in groups:
            if len(ids) + sum(1 for i in member.ids if i not in ids) <= max_ids:
                group.append(member)
                ids.update(member.ids)
                break
        else:
            groups.append(([member], set(member.ids)))
    return [group for group, _ in groups]


def _covers(batch: _Batch, member: _Member) -> bool:
    """Whether the call in flight answers C{member} in time: its ids, and no later."""
    if batch.deadline is not None and (member.deadline is None or member.deadline > batch.deadline):
        return False
    return batch.id_set.issuperset(member.ids)


def _stop(member: _Member) -> None:
    timer, member.timer = member.timer, None
    if timer is not None and timer.active():
        timer.cancel()


def _field(message: Message, path: tuple[str, ...]) -> Any:
    for name in path:
        message = getattr(message, name)
    return message


def _ids_of(request: Message, path: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(_field(request, path)))


def _with_ids(request: Message, read: ByIdRead, ids: list[str]) -> Message:
    copy = type(request)()
    copy.CopyFrom(request)
    field = _field(copy, read.ids)
    del field[:]
    field.extend(ids)
    return copy


def _with_items(template: Message, path: tuple[str, ...], items: list[Any]) -> Message:
    """A new message like C{template} whose list at C{path} holds C{items}."""
    out = type(template)()
    _fill(out, template, path, items)
    return out


def _fill(out: Message, template: Message, path: tuple[str, ...], items: list[Any]) -> None:
    head = path[0]
    for descriptor, value in template.ListFields():
        name = descriptor.name
        if name == head:
            continue
        if _is_repeated(descriptor):
            getattr(out, name).extend(value)
        elif descriptor.message_type is not None:
            getattr(out, name).CopyFrom(value)
        else:
            setattr(out, name, value)
    if len(path) == 1:
        getattr(out, head).extend(items)
    elif template.HasField(head):
        inner = getattr(out, head)
        inner.SetInParent()
        _fill(inner, getattr(template, head), path[1:], items)


def _is_repeated(descriptor: Any) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(descriptor.label == descriptor.LABEL_REPEATED)


def _key(
    rpc: Rpc, request: Message, read: ByIdRead, metadata: Sequence[tuple[str, str | bytes]]
) -> tuple[Any, ...]:
    return read_key(rpc, _with_ids(request, read, []), metadata)
