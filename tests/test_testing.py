# -*- test-case-name: tests.test_testing -*-
"""
Tests for L{opencue_gw.testing}: the fakes must behave as the real parts do where the
gateway can tell, or the handler tests built on them prove nothing.
"""

from __future__ import annotations

from opencue_proto import show_pb2
from twisted.internet.defer import CancelledError
from twisted.internet.threads import deferToThreadPool
from twisted.trial.unittest import SynchronousTestCase

from opencue_gw.errors import GatewayError
from opencue_gw.testing import (
    EPOCH,
    FakeReactor,
    FakeUpstream,
    GatewayUnderTest,
    InlineThreadPool,
    result_of,
)
from opencue_gw.upstream.cuebot import UpstreamReply
from opencue_gw.upstream.rpcs import load_rpcs

SHOWS = load_rpcs()["/show.ShowInterface/GetShows"]
FIND = load_rpcs()["/show.ShowInterface/FindShow"]


class FakeUpstreamTests(SynchronousTestCase):
    """Calls are recorded and answered by hand, automatically, or cancelled."""

    def test_records_and_answers_by_hand(self) -> None:
        """A call waits; succeed() with no message answers the RPC's empty response."""
        upstream = FakeUpstream()
        d = upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=3.0, metadata=[("a", "1")])
        self.assertNoResult(d)
        call = upstream.last
        self.assertEqual(
            (call.path, call.timeout, call.metadata_dict), (SHOWS.path, 3.0, {"a": "1"})
        )
        call.succeed(headers=[("x-node", "c1")], wire_size=7)
        reply = self.successResultOf(d)
        self.assertIsInstance(reply, UpstreamReply)
        self.assertEqual(reply.message, show_pb2.ShowGetShowsResponse())
        self.assertEqual((reply.headers, reply.wire_size), ((("x-node", "c1"),), 7))
        self.assertRaises(AssertionError, call.succeed)

    def test_fail_is_an_upstream_gateway_error(self) -> None:
        """fail() gives the GatewayError the real client gives for a Cuebot status."""
        upstream = FakeUpstream()
        d = upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=None)
        upstream.last.fail(5, "gone")
        error = self.failureResultOf(d, GatewayError).value
        self.assertEqual((error.code, error.message, error.upstream), (5, "gone", True))

    def test_cancel_is_recorded_and_late_answers_dropped(self) -> None:
        """Cancelling marks the call cancelled; answering it afterwards does nothing."""
        upstream = FakeUpstream()
        d = upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=None)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(upstream.last.cancelled)
        upstream.last.succeed()
        self.assertEqual(upstream.pending(), [])

    def test_auto_answers(self) -> None:
        """auto answers its paths at once (a GatewayError raised fails the call); answer_all
        answers the rest with empty responses."""

        def find(request: show_pb2.ShowFindShowRequest) -> show_pb2.ShowFindShowResponse:
            if request.name == "nope":
                raise GatewayError(5, "no show")
            return show_pb2.ShowFindShowResponse(show=show_pb2.Show(name=request.name))

        upstream = FakeUpstream({FIND.path: find}, answer_all=True)  # type: ignore[dict-item]
        found = self.successResultOf(
            upstream.call(FIND, show_pb2.ShowFindShowRequest(name="a"), timeout=None)
        )
        self.assertEqual(found.message.show.name, "a")
        missing = upstream.call(FIND, show_pb2.ShowFindShowRequest(name="nope"), timeout=None)
        self.assertEqual(self.failureResultOf(missing, GatewayError).value.code, 5)
        self.successResultOf(upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=None))
        self.assertEqual(upstream.paths, [FIND.path, FIND.path, SHOWS.path])
        self.assertEqual(len(upstream.calls_to(FIND.path)), 2)

    def test_deadline_on_the_clock(self) -> None:
        """With a clock, an unanswered call fails DEADLINE_EXCEEDED at its timeout."""
        clock = FakeReactor()
        upstream = FakeUpstream(clock=clock)
        d = upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=2.0)
        answered = upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=2.0)
        upstream.calls[1].succeed()
        clock.advance(1.99)
        self.assertNoResult(d)
        clock.advance(0.01)
        error = self.failureResultOf(d, GatewayError).value
        self.assertEqual((error.code, error.upstream), (4, True))
        self.assertTrue(upstream.calls[0].deadline_exceeded)
        self.successResultOf(answered)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_raise_next(self) -> None:
        """raise_next is raised by the next call only, as a closed channel raises."""
        upstream = FakeUpstream()
        upstream.raise_next = GatewayError(14, "closed")
        self.assertRaises(
            GatewayError, upstream.call, SHOWS, show_pb2.ShowGetShowsRequest(), timeout=None
        )
        upstream.call(SHOWS, show_pb2.ShowGetShowsRequest(), timeout=None)
        self.assertEqual(len(upstream.calls), 1)


class InlinePoolTests(SynchronousTestCase):
    """deferToThreadPool over the fake reactor and the inline pool completes synchronously."""

    def test_inline(self) -> None:
        """Work runs at once, its result and its exception reach the Deferred."""
        reactor, pool = FakeReactor(), InlineThreadPool()
        self.assertEqual(self.successResultOf(deferToThreadPool(reactor, pool, len, "abc")), 3)
        failed = deferToThreadPool(reactor, pool, int, "x")
        self.failureResultOf(failed, ValueError)
        self.assertEqual(pool.ran, 2)

    def test_hold(self) -> None:
        """Holding, work waits until run_queued, like a busy pool."""
        reactor, pool = FakeReactor(), InlineThreadPool(hold=True)
        d = deferToThreadPool(reactor, pool, len, "abcd")
        self.assertNoResult(d)
        self.assertEqual(pool.run_queued(), 1)
        self.assertEqual(self.successResultOf(d), 4)

    def test_reactor_time_starts_at_epoch(self) -> None:
        """The fake reactor's time is a real date, so token times make sense."""
        self.assertEqual(FakeReactor().seconds(), EPOCH)


class GatewayUnderTestTests(SynchronousTestCase):
    """The harness answers once the upstream does, and says so when it has not."""

    def test_answer_waits_for_the_upstream(self) -> None:
        """Before the fake call is fired there is no answer; after, there is."""
        gateway = GatewayUnderTest()
        pending = gateway.send("POST", SHOWS.path, b"{}")
        self.assertFalse(pending.answered)
        self.assertRaises(AssertionError, pending.answer)
        gateway.upstream.last.succeed()
        self.assertEqual(pending.answer().json(), {"shows": None})

    def test_result_of(self) -> None:
        """result_of gives a fired Deferred's result and refuses an unfired one."""
        reactor, pool = FakeReactor(), InlineThreadPool(hold=True)
        d = deferToThreadPool(reactor, pool, len, "ab")
        self.assertRaises(AssertionError, result_of, d)
        pool.run_queued()
        self.assertEqual(result_of(d), 2)
