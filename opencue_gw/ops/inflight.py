# -*- test-case-name: tests.test_service -*-
"""
The requests the gateway has started and not yet answered, so shutdown can wait for them.

A request counts from the moment its head is complete (the connection's request class
enters it), not from when a resource renders it: a client still uploading its body at
SIGTERM has started too. While draining, nothing new is admitted, so the set can only
shrink; when the grace period ends, what is left is answered 503 rather than cut off.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.ops.waiting import UntilNone

__all__ = ["SHUTTING_DOWN", "InFlight"]

SHUTTING_DOWN = "the gateway is shutting down"


class InFlight:
    """
    The requests being served, and a drain that waits for them.

    C{enter}/C{leave} take the request itself, so both the connection (when the head is
    complete) and the edge (when it renders) may enter the same request: the second
    entry is a no-op. Callers that do not hand over the request are counted by number.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self) -> None:
        self.draining = False
        self._requests: set[Any] = set()
        self._anonymous = 0
        self._idle = UntilNone()

    @property
    def count(self) -> int:
        """How many requests are in flight."""
        return len(self._requests) + self._anonymous

    def __contains__(self, request: object) -> bool:
        return request in self._requests

    def enter(self, request: object | None = None) -> bool:
        """
        A request started. Answers whether it is admitted: a request already in flight
        stays admitted, a new one is refused while draining.
        """
        if request is None:
            self._anonymous += 1
            return not self.draining
        if request in self._requests:
            return True
        if self.draining:
            return False
        self._requests.add(request)
        return True

    def leave(self, request: object | None = None) -> None:
        """A request was answered (or its client went away); leaving twice is harmless."""
        if request is None:
            self._anonymous = max(0, self._anonymous - 1)
        else:
            self._requests.discard(request)
        if self.count == 0:
            self._idle.none_left()

    def drain(self, grace: float, clock: IReactorTime) -> Deferred[bool]:
        """
        Stop admitting requests and wait for the ones in flight.

        Fires C{True} once none are left, or C{False} when C{grace} seconds pass first;
        the stragglers are then answered 503 (L{cut_off}).
        """
        self.draining = True
        if self.count == 0:
            return succeed(True)
        return self._idle.wait(grace, clock).addCallback(self._report)

    def cut_off(self) -> None:
        """
        Answer every request still in flight 503 (code 14) with C{Connection: close}.

        Each request answers for itself (L{opencue_gw.http.wire.GatewayRequest}): one still
        uploading its body gets the answer on the raw connection, one waiting on Cuebot
        gets it through the resource tree's error path, so both are logged.
        """
        for request in list(self._requests):
            answer = getattr(request, "answer_shutting_down", None)
            if answer is not None:
                answer(SHUTTING_DOWN)

    def _report(self, drained: bool) -> bool:
        if not drained:
            self.log.warn(
                "Grace period over with {count} requests still in flight; answering 503",
                count=self.count,
            )
            self.cut_off()
        return drained
