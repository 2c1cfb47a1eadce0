# -*- test-case-name: tests.test_service -*-
"""
Waiting, with a time limit, for something to run out: requests in flight, open
connections. Shutdown waits for both the same way.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

__all__ = ["UntilNone"]


class UntilNone:
    """Deferreds that fire C{True} when told nothing is left, or C{False} on time-out."""

    def __init__(self) -> None:
        self._waiting: list[Deferred[bool]] = []

    def wait(self, timeout: float, clock: IReactorTime) -> Deferred[bool]:
        """A Deferred for L{none_left}, giving up with C{False} after C{timeout} seconds."""
        d: Deferred[bool] = Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d.addTimeout(timeout, clock, onTimeoutCancel=_gave_up)

    def none_left(self) -> None:
        """Nothing is left: wake every waiter."""
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(True)


def _gave_up(result: Any, timeout: float) -> bool:
    return False
