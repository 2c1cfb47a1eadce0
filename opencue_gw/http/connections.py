# -*- test-case-name: tests.integration.test_process -*-
"""
Knowing which HTTP connections are open, so shutdown can close them politely.

When the reactor stops it drops every connection at once, throwing away answers still
in the kernel-bound write buffer. After the drain, the gateway instead asks each
connection to close, which flushes what was written first, and waits for them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from opencue_gw.ops.waiting import UntilNone

__all__ = ["ConnectionTracker"]


class ConnectionTracker(WrappingFactory):
    """Wraps the site's factory; counts its connections and closes them on request."""

    noisy = False

    def __init__(self, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self._empty = UntilNone()

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """A connection ended; wake whoever waits for the last one."""
        super().unregisterProtocol(p)
        if not self.protocols:
            self._empty.none_left()

    def close_all(self, timeout: float, clock: IReactorTime) -> Deferred[bool]:
        """
        Close every connection after its buffered output is sent.

        Fires C{True} when all are gone, C{False} if C{timeout} passes first.
        """
        if not self.protocols:
            return succeed(True)
        d = self._empty.wait(timeout, clock)
        for wrapper in list(self.protocols):
            wrapper.loseConnection()
        return d
