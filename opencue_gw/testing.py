# -*- test-case-name: tests.test_testing -*-
"""
Test doubles for the gateway, shipped with it as C{treq.testing} ships StubTreq.

Handler-level behaviour (routing, JSON, error answers, coalescing, rate limits, CORS,
health) needs neither a socket nor a gRPC server: L{GatewayUnderTest} puts the whole
resource tree behind StubTreq, in front of a L{FakeUpstream} whose answers the test
fires by hand, on a L{FakeReactor} whose time only moves when the test advances it.
Everything runs synchronously, so a test never waits and never uses the global reactor.

    gateway = GatewayUnderTest()
    pending = gateway.send("POST", "/show.ShowInterface/GetShows")
    gateway.upstream.last.succeed(show_pb2.ShowGetShowsResponse())
    assert pending.answer().status == 200
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from google.protobuf.message import Message
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFromThreads,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from zope.interface import implementer

from opencue_gw.auth.audit import AuditLog
from opencue_gw.auth.tokens import mint_token
from opencue_gw.config import GatewayConfig, resolve_config
from opencue_gw.errors import GatewayError
from opencue_gw.ops.health import PROBE_PATH, ReadinessProbe
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import Rpc, load_rpcs

if TYPE_CHECKING:
    from opencue_gw.api import IUpstream

__all__ = [
    "EPOCH",
    "TEST_SECRET",
    "FakeCall",
    "FakeReactor",
    "FakeUpstream",
    "GatewayUnderTest",
    "HTTPReply",
    "InlineThreadPool",
    "PendingRequest",
    "ReplyFunction",
    "mint_test_token",
    "result_of",
]

TEST_SECRET = b"test-secret-that-is-long-enough-for-hs512-0123456789abcdef"
"""The HMAC secret L{GatewayUnderTest} verifies tokens with."""

EPOCH = 1_767_225_600.0
"""Where a L{FakeReactor}'s time starts (2026-01-01T00:00:00Z): token times are real dates."""

ReplyFunction = Callable[[Message], "Message | UpstreamReply"]
"""
An automatic answer: given the request message, a response message or a whole
L{UpstreamReply}. Raising L{GatewayError} makes the call fail with it.
"""

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")


def mint_test_token(
    sub: str = "tester",
    role: str | None = "admin",
    *,
    ttl: float = 600.0,
    now: float = EPOCH,
    secret: bytes = TEST_SECRET,
) -> str:
    """A token for L{TEST_SECRET}, issued at C{now} (a fresh L{FakeReactor}'s time)."""
    return mint_token(secret, sub=sub, role=role, now=now, ttl=ttl)


def result_of(d: Deferred[_T]) -> _T:
    """
    The result of a Deferred that has already fired, as
    C{SynchronousTestCase.successResultOf} gives it, for tests that are plain functions.

    Raises C{AssertionError} if it has not fired, and re-raises its failure if it failed.
    """
    outcome: list[Any] = []

    def keep(result: Any) -> Any:
        outcome.append(result)
        return result

    d.addBoth(keep)
    if not outcome:
        raise AssertionError(f"{d!r} has not fired: is an upstream call still unanswered?")
    result = outcome[0]
    if isinstance(result, Failure):
        d.addErrback(lambda _: None)
        result.raiseException()
    return result  # type: ignore[no-any-return]


@dataclass(eq=False)
class FakeCall:
    """
    One call the gateway made to the upstream, waiting for the test to answer it.

    C{metadata} is the list the gateway sent (order and repeats kept); L{metadata_dict}
    is the same as a dict. C{deferred} is what the gateway holds.
    """

    rpc: Rpc
    request: Message
    timeout: float | None
    metadata: list[tuple[str, str | bytes]]
    deferred: Deferred[UpstreamReply] = field(repr=False)
    cancelled: bool = False
    """Whether the gateway cancelled the call (its client went away, or a deadline)."""
    deadline_exceeded: bool = False
    """Whether the call ran past its C{timeout} on the upstream's clock and failed so."""

    @property
    def path(self) -> str:
        """The gRPC method path, C{/<package>.<Service>/<Method>}."""
        return self.rpc.path

    @property
    def metadata_dict(self) -> dict[str, str | bytes]:
        """The metadata as a dict (the last value of a repeated key wins)."""
        return dict(self.metadata)

    @property
    def answered(self) -> bool:
        """Whether the call has an outcome (an answer, a failure, or a cancellation)."""
        return self.deferred.called

    def succeed(
        self,
        message: Message | None = None,
        headers: Iterable[tuple[str, str | bytes]] = (),
        wire_size: int = -1,
    ) -> None:
        """
        Answer the call: C{message} (default: the RPC's empty response) with Cuebot's
        response C{headers}. Answering a call that was cancelled or ran out of time
        does nothing, as with the real client, whose late answers are dropped.
        """
        if self._settled_by_cancel():
            return
        if message is None:
            message = self.rpc.response_class()
        self.deferred.callback(UpstreamReply(message, tuple(headers), wire_size))

    def fail(self, code: int, message: str = "") -> None:
        """Fail the call with Cuebot's status C{code}, as the real client reports it."""
        if self._settled_by_cancel():
            return
        self.deferred.errback(GatewayError(code, message or f"code {code}", upstream=True))

    def _settled_by_cancel(self) -> bool:
        if self.cancelled or self.deadline_exceeded:
            return True
        if self.deferred.called:
            raise AssertionError(f"the call to {self.path} was already answered")
        return False


class FakeUpstream:
    """
    An upstream (the interface the API calls Cuebot through) that records every call.

    Calls wait until the test fires them (L{FakeCall.succeed}, L{FakeCall.fail}),
    unless C{auto} has a L{ReplyFunction} for the call's path, in which case they are
    answered at once; with C{answer_all}, calls to other paths are answered at once
    with their empty response. C{raise_next} is raised by the next call instead of
    recording it, as a client whose channel is unusable raises.

    Given a C{clock}, a call still unanswered after its C{timeout} fails with
    DEADLINE_EXCEEDED, as the real client's gRPC deadline makes it.
    """

    def __init__(
        self,
        auto: Mapping[str, ReplyFunction] | None = None,
        *,
        answer_all: bool = False,
        clock: IReactorTime | None = None,
    ) -> None:
        self.auto: dict[str, ReplyFunction] = dict(auto or {})
        self.answer_all = answer_all
        self.clock = clock
        self.calls: list[FakeCall] = []
        self.raise_next: Exception | None = None

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[UpstreamReply]:
        """Record the call; answer it now if an automatic answer applies."""
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error
        recorded: list[FakeCall] = []

        def cancel(d: Deferred[UpstreamReply]) -> None:
            recorded[0].cancelled = True

        d: Deferred[UpstreamReply] = Deferred(cancel)
        fake = FakeCall(rpc, request, timeout, list(metadata), d)
        recorded.append(fake)
        self.calls.append(fake)
        answer = self.auto.get(rpc.path)
        if answer is not None:
            _answer_with(fake, answer)
        elif self.answer_all:
            fake.succeed()
        elif self.clock is not None and timeout is not None:
            timer = self.clock.callLater(timeout, _expire, fake)
            d.addBoth(_stop_timer, timer)
        return d

    @property
    def last(self) -> FakeCall:
        """The most recent call."""
        if not self.calls:
            raise AssertionError("the upstream was never called")
        return self.calls[-1]

    def calls_to(self, path: str) -> list[FakeCall]:
        """The calls made to one gRPC method path."""
        return [c for c in self.calls if c.path == path]

    def pending(self) -> list[FakeCall]:
        """The calls still waiting for an answer."""
        return [c for c in self.calls if not c.answered]

    @property
    def paths(self) -> list[str]:
        """The method path of every call, in order."""
        return [c.path for c in self.calls]


def _expire(fake: FakeCall) -> None:
    if not fake.deferred.called:
        fake.deadline_exceeded = True
        fake.deferred.errback(GatewayError(4, "Deadline Exceeded", upstream=True))


def _stop_timer(result: _T, timer: IDelayedCall) -> _T:
    if timer.active():
        timer.cancel()
    return result


def _answer_with(fake: FakeCall, answer: ReplyFunction) -> None:
    try:
        result = answer(fake.request)
    except GatewayError as error:
        fake.fail(error.code, error.message)
        return
    if isinstance(result, UpstreamReply):
        fake.succeed(result.message, result.headers, result.wire_size)
    else:
        fake.succeed(result)


class InlineThreadPool(ThreadPool):
    """
    A thread pool that runs its work at once, in the caller's thread.

    With C{hold=True} work waits in L{queued} until L{run_queued}, which models the real
    pool's asynchrony (several jobs submitted before any finishes). L{ran} counts jobs.
    """

    def __init__(self, *, hold: bool = False) -> None:
        super().__init__(minthreads=0, maxthreads=1, name="inline")
        self.hold = hold
        self.ran = 0
        self.queued: list[Callable[[], None]] = []

    def start(self) -> None:
        """Nothing to start: there are no threads."""
        self.started = True

    def stop(self) -> None:
        """Nothing to stop: there are no threads."""
        self.started = False

    def callInThread(self, func: Callable[_P, object], *args: _P.args, **kw: _P.kwargs) -> None:
        """Run C{func} now (or queue it when holding)."""
        self.callInThreadWithCallback(None, func, *args, **kw)

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, _R], object] | None,
        func: Callable[_P, _R],
        *args: _P.args,
        **kw: _P.kwargs,
    ) -> None:
        """Run C{func} now (or queue it when holding) and report to C{onResult}."""

        def job() -> None:
            self.ran += 1
            try:
                result = func(*args, **kw)
            except BaseException:
                if onResult is not None:
                    onResult(False, Failure())  # type: ignore[arg-type]
                return
            if onResult is not None:
                onResult(True, result)

        if self.hold:
            self.queued.append(job)
        else:
            job()

    def run_queued(self) -> int:
        """Run every queued job (and any they queue); answers how many ran."""
        count = 0
        while self.queued:
            self.queued.pop(0)()
            count += 1
        return count


@implementer(IReactorFromThreads, IReactorThreads)
class FakeReactor(Clock):
    """
    A L{Clock} that also takes calls "from threads", running them at once, so work
    handed to a thread pool and back (C{deferToThreadPool}) completes synchronously.

    Its time starts at C{start} (default L{EPOCH}).
    """

    def __init__(self, start: float = EPOCH) -> None:
        super().__init__()
        self.rightNow = start
        self._pool = InlineThreadPool()

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        """Run C{callable} now: there is only one thread."""
        callable(*args, **kwargs)

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        """Run C{callable} now, on the reactor's inline pool."""
        self._pool.callInThread(callable, *args, **kwargs)

    def getThreadPool(self) -> ThreadPool:
        """The reactor's pool, which runs work inline."""
        return self._pool

    def suggestThreadPoolSize(self, size: int) -> None:
        """Ignored: the inline pool has no threads."""


@dataclass
class HTTPReply:
    """What a test needs of an HTTP answer."""

    status: int
    headers: Headers
    body: bytes
    length: int | None = None
    """The Content-Length the server declared (None: chunked); the client drops the header."""

    def json(self) -> Any:
        """The body parsed as JSON (fails the test if it is not JSON)."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """One response header, or None."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class PendingRequest:
    """A request sent through StubTreq whose answer may still depend on the upstream."""

    def __init__(self, stub: Any, response: Deferred[Any]) -> None:
        self._stub = stub
        self._response = response
        self._outcome: list[Any] = []
        response.addBoth(self._arrived)

    def _arrived(self, result: Any) -> None:
        self._outcome.append(result)

    @property
    def answered(self) -> bool:
        """Whether the response head has reached the client."""
        self._stub.flush()
        return bool(self._outcome)

    def answer(self) -> HTTPReply:
        """The whole answer; fails the test if it is not complete yet."""
        self._stub.flush()
        if not self._outcome:
            raise AssertionError("no answer yet: is an upstream call still unanswered?")
        response = self._outcome[0]
        if isinstance(response, Failure):
            response.raiseException()
        content = self._stub.content(response)
        self._stub.flush()
        length = response.length if isinstance(response.length, int) else None
        return HTTPReply(response.code, response.headers, result_of(content), length)

    def disconnect(self) -> None:
        """The client goes away before the answer: its connection is aborted."""
        self._response.cancel()
        self._stub.flush()


class GatewayUnderTest:
    """
    The gateway's whole HTTP tree (C{build_root_resource}) behind StubTreq.

    In front of L{upstream} (a L{FakeUpstream} keeping deadlines on L{clock}, unless
    one is given), on L{clock} (a
    L{FakeReactor}), with large answers encoded on L{pool} (an L{InlineThreadPool}).
    C{options} and C{env} are resolved as twistd options and environment; C{settings}
    then replace fields of the resolved L{GatewayConfig}.
    """

    def __init__(
        self,
        upstream: FakeUpstream | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: FakeReactor | None = None,
        pool: InlineThreadPool | None = None,
        secret: bytes = TEST_SECRET,
        **settings: Any,
    ) -> None:
        self.secret = secret
        self.clock = clock if clock is not None else FakeReactor()
        self.upstream = upstream if upstream is not None else FakeUpstream(clock=self.clock)
        self.pool = pool if pool is not None else InlineThreadPool()
        resolved = resolve_config(
            {"cuebot": "cuebot.invalid:8443", **(options or {})},
            {"JWT_SECRET": secret.decode("utf-8"), **(env or {})},
        )
        self.config: GatewayConfig = replace(resolved, **settings)
        self.metrics = GatewayMetrics()
        self.in_flight = InFlight()
        self.audit = AuditLog(self.config.audit_log, self.clock) if self.config.audit_log else None
        self.probe = ReadinessProbe(self.upstream, load_rpcs()[PROBE_PATH], self.clock)
        from opencue_gw.tap import build_root_resource, upstream_chain

        fake: IUpstream = self.upstream
        # The daemon's own chain of upstream layers, over the fake.
        self.shared = upstream_chain(self.config, fake, self.clock, self.metrics)
        self.resource: IResource = build_root_resource(
            self.config,
            self.clock,
            self.shared,
            self.in_flight,
            self.pool,
            metrics=self.metrics,
            probe=self.probe,
            audit=self.audit,
        )
        # StubTreq's methods are made at run time, so its type is Any here.
        self.stub: Any = StubTreq(self.resource)

    def close(self) -> None:
        """Close what the gateway opened (the audit log, if the settings name one)."""
        if self.audit is not None:
            self.audit.close()

    def token(self, sub: str = "tester", role: str | None = "admin", ttl: float = 600.0) -> str:
        """A token the gateway accepts, issued now (by the fake clock)."""
        return mint_token(self.secret, sub=sub, role=role, now=self.clock.seconds(), ttl=ttl)

    def send(
        self,
        method: str,
        path: str,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        auth: str | None = "default",
        headers: Mapping[str, str] | None = None,
    ) -> PendingRequest:
        """
        Start a request; the upstream calls it makes are in C{upstream.calls}.

        C{auth="default"} sends a fresh admin token; C{None} sends no Authorization;
        any other text is sent as the Authorization header.
        """
        sent = dict(headers or {})
        if auth == "default":
            sent["Authorization"] = f"Bearer {self.token()}"
        elif auth is not None:
            sent["Authorization"] = auth
        data: bytes | None
        if isinstance(body, Mapping):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        response = self.stub.request(method, "http://gateway.test" + path, data=data, headers=sent)
        pending = PendingRequest(self.stub, response)
        self.stub.flush()
        return pending

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        auth: str | None = "default",
        headers: Mapping[str, str] | None = None,
    ) -> HTTPReply:
        """Send a request and return its whole answer (the upstream must answer at once)."""
        return self.send(method, path, body, auth=auth, headers=headers).answer()

    def post(
        self, path: str, body: bytes | str | Mapping[str, Any] | None = None, **kw: Any
    ) -> HTTPReply:
        """POST, the only method an RPC route takes (an empty object by default)."""
        return self.request("POST", path, body if body is not None else b"{}", **kw)
