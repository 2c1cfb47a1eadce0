# -*- test-case-name: tests.test_coalesce,tests.test_api -*-
"""
Turning Cuebot's answers into JSON bodies, for every route.

Small answers are encoded on the reactor thread: a thread hop costs more than the work.
Large ones (thousands of jobs or frames) go to the codec thread pool, so one huge
GetFrames does not stall every other request. An answer that several requests share
(coalesced or cached reads) is encoded once, however many requests wait for it and
whichever path it takes: the first request starts the encoding and the others wait for
the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from opencue_gw.codec import encode
from opencue_gw.upstream.cuebot import wire_size

__all__ = ["INLINE_ENCODE_LIMIT", "AnswerEncoder", "JsonMemo"]

# Answers whose protobuf encoding is larger than this are turned into JSON on the
# codec thread pool.
INLINE_ENCODE_LIMIT = 256 * 1024


class JsonMemo:
    """
    The JSON of one shared answer: encoded at most once, handed to every waiter.

    Each waiter gets a Deferred of its own, so one client going away (which cancels its
    Deferred) does not cancel the encoding the others wait for.
    """

    __slots__ = ("_body", "_waiters")

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._waiters: list[Deferred[bytes]] | None = None

    def body(self, start: Callable[[], Deferred[bytes]]) -> Deferred[bytes]:
        """The body, encoding it with C{start} if nobody has started yet."""
        if self._body is not None:
            return succeed(self._body)
        mine: Deferred[bytes] = Deferred()
        if self._waiters is not None:
            self._waiters.append(mine)
            return mine
        self._waiters = [mine]
        start().addBoth(self._done)
        return mine

    def _done(self, result: bytes | Failure) -> None:
        waiters, self._waiters = self._waiters or [], None
        if not isinstance(result, Failure):
            self._body = result
        for waiter in waiters:
            if waiter.called:
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


class AnswerEncoder:
    """
    Encodes replies (anything with C{.message} and, optionally, C{.wire_size} and a
    C{.shared_json} slot) inline or on C{pool}, by size.

    C{pool} of C{None} encodes everything inline (tests; tools).
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        pool: ThreadPool | None,
        *,
        inline_limit: int = INLINE_ENCODE_LIMIT,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._inline_limit = inline_limit

    def body(self, reply: Any) -> Deferred[bytes]:
        """
        The JSON of C{reply.message}. A reply that several requests share (it has a
        C{shared_json} slot) keeps a L{JsonMemo} there, so it is encoded once.
        """
        if not hasattr(reply, "shared_json"):
            return self.run(wire_size(reply), encode, reply.message)
        memo = reply.shared_json
        if memo is None:
            memo = reply.shared_json = JsonMemo()
        return memo.body(lambda: self.run(wire_size(reply), encode, reply.message))

    def run(self, size: int, work: Callable[..., bytes], *args: Any) -> Deferred[bytes]:
        """
        Run C{work(*args)} where an answer of C{size} protobuf bytes belongs: the reactor
        thread when small, the pool when large. Routes that shape an answer (the paged
        lists of C{/api/v1}) encode through here too.
        """
        if self._pool is not None and size > self._inline_limit:
            return deferToThreadPool(self._reactor, self._pool, work, *args)  # type: ignore[arg-type]
        try:
            return succeed(work(*args))
        except Exception:
            d: Deferred[bytes] = Deferred()
            d.errback(Failure())
            return d
