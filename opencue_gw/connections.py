# -*- test-case-name: tests.test_process -*-
"""
Knowing which HTTP connections are open, so shutdown can close them politely.

When the reactor stops it drops every connection at once, throwing away answers still
in the kernel-bound write buffer. After the drain, the gateway instead asks each
connection to close, which flushes what was written first, and waits for them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

__all__ = ["ConnectionTracker"]


class ConnectionTracker(WrappingFactory):
    """Wraps the site's factory; counts its connections and closes them on request."""

    noisy = False

    def __init__(self, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self._empty: list[Deferred[bool]] = []

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """A connection ended; wake whoever waits for the last one."""
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._empty = self._empty, []
            for d in waiting:
                d.callback(True)

    def close_all(self, timeout: float, clock: IReactorTime) -> Deferred[bool]:
        """
        Close every connection after its buffered output is sent.

        Fires C{True} when all are gone, C{False} if C{timeout} passes first.
        """
        if not self.protocols:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        self._empty.append(d)
        for wrapper in list(self.protocols):
            wrapper.loseConnection()
        timer: IDelayedCall = clock.callLater(timeout, self._give_up, d)

        def stop_timer(result: bool) -> bool:
            if timer.active():
                timer.cancel()
            return result

        return d.addCallback(stop_timer)

    def _give_up(self, d: Deferred[bool]) -> None:
        if d in self._empty:
            self._empty.remove(d)
            d.callback(False)
