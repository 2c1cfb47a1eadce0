"""
Tests for shutdown ordering: L{opencue_gw.ops.inflight.InFlight}'s drain and
L{opencue_gw.ops.service.GatewayService}, plus the tree L{opencue_gw.tap.build_service}
wires. Time is a L{Clock}; child services are fakes that record when they stop.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from opencue_gw.config import resolve_config
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.service import CuebotService, GatewayService, ThreadPoolService

SECRET = "service-test-secret-0123456789abcdef-0123456789"


class Boom(Exception):
    """A stop failure raised by a fake child."""


class Recorder(Service):
    """A child that records the moment it is asked to stop and answers C{result}."""

    def __init__(self, name: str, order: list[str], result: Any = None) -> None:
        self.setName(name)
        self._order = order
        self.result = result

    def stopService(self) -> Any:
        super().stopService()
        self._order.append(self.name)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


class InFlightTests(SynchronousTestCase):
    """L{InFlight.drain} with a deterministic clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.in_flight = InFlight()
        self.events: list[LogEvent] = []
        self.in_flight.log = Logger(observer=self.events.append)

    def test_idle_drain_fires_true_at_once(self) -> None:
        """With nothing in flight the drain succeeds immediately and marks draining."""
        d = self.in_flight.drain(30, self.clock)
        self.assertIs(self.successResultOf(d), True)
        self.assertTrue(self.in_flight.draining)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_drain_waits_for_request(self) -> None:
        """The drain waits while a request is in flight and fires True when it leaves."""
        self.in_flight.enter()
        d = self.in_flight.drain(30, self.clock)
        self.assertTrue(self.in_flight.draining)
        self.clock.advance(29)
        self.assertNoResult(d)
        self.in_flight.leave()
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.clock.getDelayedCalls(), [], "grace timer left behind")
        self.assertEqual(self.events, [])

    def test_drain_waits_for_all_requests(self) -> None:
        """The drain fires only when the last of several requests leaves."""
        self.in_flight.enter()
        self.in_flight.enter()
        d = self.in_flight.drain(30, self.clock)
        self.in_flight.leave()
        self.assertNoResult(d)
        self.in_flight.leave()
        self.assertIs(self.successResultOf(d), True)

    def test_grace_expires(self) -> None:
        """After the grace period with requests still in flight it fires False and warns."""
        self.in_flight.enter()
        d = self.in_flight.drain(5, self.clock)
        self.clock.advance(4.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.events[0]["log_level"], LogLevel.warn)
        self.assertEqual(self.events[0]["count"], 1)
        self.in_flight.leave()  # a late straggler must not fire the Deferred again
        self.assertEqual(self.in_flight.count, 0)


class _Straggler:
    """A request that records the answer it is asked to give at the end of the grace."""

    def __init__(self) -> None:
        self.answered: list[str] = []

    def answer_shutting_down(self, message: str) -> None:
        self.answered.append(message)


class InFlightRequestTests(SynchronousTestCase):
    """L{InFlight} keyed by request: idempotent entry, admission and the grace-end answer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.in_flight = InFlight()
        self.in_flight.log = Logger(observer=lambda event: None)

    def test_same_request_entered_twice_counts_once(self) -> None:
        """The connection and the guard may both enter a request: it counts once."""
        request = _Straggler()
        self.assertTrue(self.in_flight.enter(request))
        self.assertTrue(self.in_flight.enter(request))
        self.assertEqual(self.in_flight.count, 1)
        self.assertIn(request, self.in_flight)
        self.in_flight.leave(request)
        self.in_flight.leave(request)
        self.assertEqual(self.in_flight.count, 0)

    def test_draining_admits_only_requests_already_started(self) -> None:
        """While draining a started request stays admitted; a new one is refused."""
        started, late = _Straggler(), _Straggler()
        self.in_flight.enter(started)
        self.in_flight.drain(30, self.clock)
        self.assertTrue(self.in_flight.enter(started))
        self.assertFalse(self.in_flight.enter(late))
        self.assertEqual(self.in_flight.count, 1)

    def test_stragglers_are_answered_at_grace_end(self) -> None:
        """Requests still in flight when the grace ends are asked to answer 503."""
        first, second = _Straggler(), _Straggler()
        self.in_flight.enter(first)
        self.in_flight.enter(second)
        d = self.in_flight.drain(5, self.clock)
        self.clock.advance(4.9)
        self.assertEqual(first.answered, [])
        self.clock.advance(0.1)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(first.answered, ["the gateway is shutting down"])
        self.assertEqual(second.answered, ["the gateway is shutting down"])

    def test_requests_done_in_time_are_not_answered(self) -> None:
        """A drain that succeeds answers nobody."""
        request = _Straggler()
        self.in_flight.enter(request)
        d = self.in_flight.drain(5, self.clock)
        self.in_flight.leave(request)
        self.assertIs(self.successResultOf(d), True)
        self.clock.advance(10)
        self.assertEqual(request.answered, [])


class GatewayServiceTests(SynchronousTestCase):
    """L{GatewayService.stopService}: listeners, drain, then the rest in reverse."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.in_flight = InFlight()
        self.order: list[str] = []
        self.root = GatewayService(self.in_flight, self.clock, grace_period=10)

    def add(self, name: str, result: Any = None) -> Recorder:
        child = Recorder(name, self.order, result)
        child.setServiceParent(self.root)
        return child

    def test_listeners_drain_then_reverse_order(self) -> None:
        """Listeners stop first, the drain holds the rest, which then stop in reverse."""
        self.add("demo-farm")
        self.add("codec-threads")
        self.add("cuebot")
        self.add("http-0")
        self.add("http-1")
        self.root.startService()
        self.in_flight.enter()
        d = self.root.stopService()
        self.assertEqual(self.order, ["http-0", "http-1"])
        self.assertTrue(self.in_flight.draining)
        self.assertNoResult(d)
        self.in_flight.leave()
        self.assertEqual(self.order, ["http-0", "http-1", "cuebot", "codec-threads", "demo-farm"])
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(self.root.running)

    def test_drain_waits_for_slow_listener(self) -> None:
        """The drain starts only once every listener has finished stopping."""
        listener_stopped: Deferred[None] = Deferred()
        self.add("cuebot")
        self.add("http-0", listener_stopped)
        d = self.root.stopService()
        self.assertFalse(self.in_flight.draining)
        self.assertEqual(self.order, ["http-0"])
        listener_stopped.callback(None)
        self.assertEqual(self.order, ["http-0", "cuebot"])
        self.assertIsNone(self.successResultOf(d))

    def test_grace_period_bounds_the_wait(self) -> None:
        """A request that never finishes delays the rest only for the grace period."""
        self.add("cuebot")
        self.add("http-0")
        self.in_flight.enter()
        d = self.root.stopService()
        self.clock.advance(9.9)
        self.assertNoResult(d)
        self.assertEqual(self.order, ["http-0"])
        self.clock.advance(0.1)
        self.assertEqual(self.order, ["http-0", "cuebot"])
        self.assertIsNone(self.successResultOf(d))

    def test_children_stop_one_after_another(self) -> None:
        """A child still stopping holds back the next one in line."""
        cuebot_stopped: Deferred[None] = Deferred()
        self.add("codec-threads")
        self.add("cuebot", cuebot_stopped)
        self.add("http-0")
        d = self.root.stopService()
        self.assertEqual(self.order, ["http-0", "cuebot"])
        self.assertNoResult(d)
        cuebot_stopped.callback(None)
        self.assertEqual(self.order, ["http-0", "cuebot", "codec-threads"])
        self.assertIsNone(self.successResultOf(d))

    def test_synchronous_child_failure_propagates(self) -> None:
        """A child whose stopService raises fails the stop, after the others still stopped."""
        self.add("codec-threads")
        self.add("cuebot", Boom("channel close failed"))
        self.add("http-0")
        d = self.root.stopService()
        failure = self.failureResultOf(d, Boom)
        self.assertEqual(str(failure.value), "channel close failed")
        self.assertEqual(self.order, ["http-0", "cuebot", "codec-threads"])

    def test_asynchronous_child_failure_propagates(self) -> None:
        """A child whose stop Deferred fails later fails the stop with that exception."""
        cuebot_stopped: Deferred[None] = Deferred()
        self.add("codec-threads")
        self.add("cuebot", cuebot_stopped)
        self.add("http-0")
        d = self.root.stopService()
        cuebot_stopped.errback(Boom("late"))
        self.assertEqual(self.order, ["http-0", "cuebot", "codec-threads"])
        self.assertEqual(str(self.failureResultOf(d, Boom).value), "late")

    def test_first_error_wins(self) -> None:
        """With several failing children the first one to stop gives the error."""
        self.add("codec-threads", fail(Boom("second")))
        self.add("cuebot", Boom("first"))
        self.add("http-0")
        d = self.root.stopService()
        self.assertEqual(str(self.failureResultOf(d, Boom).value), "first")
        self.assertEqual(self.order, ["http-0", "cuebot", "codec-threads"])

    def test_listener_failure_still_stops_the_rest(self) -> None:
        """A listener that fails to stop still lets the others stop, and its error is passed up."""
        self.add("codec-threads")
        self.add("cuebot")
        self.add("http-0", Boom("stopListening failed"))
        d = self.root.stopService()
        self.addCleanup(d.addErrback, lambda failure: None)  # no "Unhandled error" later
        self.assertEqual(self.order, ["http-0", "cuebot", "codec-threads"])
        self.failureResultOf(d, Boom)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)


class BuildServiceTests(SynchronousTestCase):
    """L{build_service} wires the tree without starting or listening."""

    def setUp(self) -> None:
        from opencue_gw.logs import set_log_level

        self.addCleanup(set_log_level, LogLevel.info)
        self.reactor = MemoryReactorClock()

    def build(self, **options: Any) -> GatewayService:
        from opencue_gw.tap import build_service

        config = resolve_config(options, {"JWT_SECRET": SECRET})
        return build_service(config, self.reactor)

    def test_named_children_and_no_listening(self) -> None:
        """The tree's children are named and in order, and nothing listens yet."""
        root = self.build()
        self.assertIsInstance(root, GatewayService)
        self.assertEqual(
            [s.name for s in root],
            ["codec-threads", "cuebot", "readiness-probe", "events", "http-0"],
        )
        self.assertIsInstance(root.getServiceNamed("codec-threads"), ThreadPoolService)
        self.assertIsInstance(root.getServiceNamed("cuebot"), CuebotService)
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertFalse(root.running)
        self.assertFalse(root.getServiceNamed("codec-threads").pool.started)

    def test_listens_on_privileged_start(self) -> None:
        """privilegedStartService binds each listener on its port, and only then."""
        root = self.build(port=["9001", "tcp:9002:interface=127.0.0.1"])
        self.assertEqual([s.name for s in root][-2:], ["http-0", "http-1"])
        self.assertEqual(self.reactor.tcpServers, [])
        root.privilegedStartService()
        ports = [(port, interface) for port, _, _, interface in self.reactor.tcpServers]
        self.assertEqual(ports, [(9001, ""), (9002, "127.0.0.1")])
        # CueWeb connects once per job row at each refresh: a deep listen queue.
        backlogs = [backlog for _, _, backlog, _ in self.reactor.tcpServers]
        self.assertEqual(backlogs, [1024, 1024])
        self.assertFalse(root.getServiceNamed("codec-threads").pool.started)
