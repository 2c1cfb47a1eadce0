# -*- test-case-name: tests.test_httpwire -*-
"""
The connection's timers and shutdown answers, on a L{Clock} and an in-memory transport:
the head deadline (issue 12 §1) and the 503 at the end of the grace period (§2).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from opencue_gw.http.wire import GatewaySite, body_limited_request
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics

HEAD_TIMEOUT = 60.0


class _Transport(StringTransport):
    """A StringTransport that also half-closes, as TCP and TLS transports do."""

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class _Answers(Resource):
    """Answers at once, or (C{hold}) keeps every request open, like a slow upstream."""

    isLeaf = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.held: list[Request] = []

    def render(self, request: Request) -> Any:
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return b"{}"


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


class ConnectionTimerTests(SynchronousTestCase):
    """No timer of a connection outlives it, and the deadline fires only when it should."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.in_flight = InFlight()
        self.resource = _Answers()
        self.site = GatewaySite(self.resource, reactor=self.clock, timeout=HEAD_TIMEOUT)
        self.site.requestFactory = body_limited_request(
            1024, metrics=GatewayMetrics(), in_flight=self.in_flight
        )
        self.site.head_timeout = HEAD_TIMEOUT
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def connect(self) -> tuple[Any, _Transport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = _Transport()
        channel.makeConnection(transport)
        return channel, transport

    def dropped(self) -> list[LogEvent]:
        return [e for e in self.events if "no complete request head" in e.get("log_format", "")]

    def test_closed_after_its_answer_leaves_no_timer_and_no_log(self) -> None:
        """Answered with Connection: close, then gone: nothing pending, nothing logged."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        self.assertEqual(_status(transport.value()), 200)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(HEAD_TIMEOUT * 2)
        self.assertEqual(self.dropped(), [])
        self.assertEqual(self.in_flight.count, 0)

    def test_kept_alive_then_closed_by_the_client_leaves_no_timer(self) -> None:
        """Two answers on a kept-alive connection the client then closes: no timer left."""
        channel, transport = self.connect()
        for _ in range(2):
            channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 2)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(HEAD_TIMEOUT * 2)
        self.assertEqual(self.dropped(), [])

    def test_incomplete_head_is_dropped_at_the_deadline(self) -> None:
        """A connection that never completes its head is dropped and logged, once."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: g")
        self.clock.advance(HEAD_TIMEOUT - 1)
        channel.dataReceived(b"w")  # bytes keep the idle timer alive, not the deadline
        self.clock.advance(1)
        self.assertTrue(transport.aborted)
        self.assertEqual(len(self.dropped()), 1)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_request_being_served_is_not_dropped(self) -> None:
        """A request with a complete head waiting on its answer is not the deadline's."""
        self.resource.hold = True
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.clock.advance(HEAD_TIMEOUT * 3)
        self.assertFalse(transport.aborted)
        self.assertEqual(self.dropped(), [])
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusal_linger_ends_with_the_connection(self) -> None:
        """A refused connection's linger timer is cancelled when the connection goes."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\n\r\n")
        self.assertEqual(_status(transport.value()), 400)
        self.assertTrue(transport.write_closed)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class GraceEndTests(SynchronousTestCase):
    """When the grace period ends, what is still in flight is answered 503 JSON."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.in_flight = InFlight()
        self.resource = _Answers(hold=True)
        self.site = GatewaySite(self.resource, reactor=self.clock)
        self.site.requestFactory = body_limited_request(
            1024, metrics=GatewayMetrics(), in_flight=self.in_flight
        )
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def connect(self) -> tuple[Any, _Transport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = _Transport()
        channel.makeConnection(transport)
        return channel, transport

    def assert_shutting_down(self, data: bytes) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"http/1.1 503 "), data[:200])
        self.assertIn(b"connection: close", lines)
        self.assertEqual(
            json.loads(body),
            {"code": 14, "message": "the gateway is shutting down", "details": []},
        )

    def test_request_waiting_on_upstream_gets_503(self) -> None:
        """A request rendered but unanswered at the end of the grace period gets 503."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual(self.in_flight.count, 1)
        d = self.in_flight.drain(5, self.clock)
        self.clock.advance(5)
        self.assertIs(self.successResultOf(d), False)
        self.assert_shutting_down(transport.value())
        self.assertEqual(self.in_flight.count, 0)
        # The upstream answering late changes nothing on the wire.
        (late,) = self.resource.held
        before = transport.value()
        late.write(b"{}")
        late.finish()
        self.assertEqual(transport.value(), before)

    def test_request_still_uploading_gets_503_and_is_logged(self) -> None:
        """A request whose head came but whose body is still arriving counts, and gets 503."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{")
        self.assertEqual(self.in_flight.count, 1)
        self.assertEqual(self.resource.held, [])
        d = self.in_flight.drain(5, self.clock)
        self.clock.advance(5)
        self.assertIs(self.successResultOf(d), False)
        self.assert_shutting_down(transport.value())
        access = [e for e in self.events if "status" in e and "request_id" in e]
        self.assertEqual([e["status"] for e in access], [503])
        self.assertEqual(access[0]["grpc_code"], "UNAVAILABLE")
        # The rest of the body is read and dropped; it is never rendered.
        channel.dataReceived(b" " * 99)
        self.assertEqual(self.resource.held, [])
        self.assertEqual(self.in_flight.count, 0)

    def test_head_arriving_while_draining_is_refused_before_its_body(self) -> None:
        """A request whose head completes after the drain began is answered 503 at once."""
        self.in_flight.drain(5, self.clock)
        channel, transport = self.connect()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(self.in_flight.count, 0)
        self.assert_shutting_down(transport.value())
        channel.dataReceived(b"{}")
        self.assertEqual(self.resource.held, [])
