# -*- test-case-name: tests.test_service -*-
"""
The service tree twistd runs, and the order things start and stop in.

Start: the (optional) demo farm, the codec thread pool, the Cuebot channel, then the
listeners. Stop, on SIGTERM: stop listening, let requests in flight finish within the
grace period (what is left then is answered 503, see L{InFlight.cut_off}), flush and
close the connections, then close the channel and the pool. Twisted's C{MultiService} would stop
all children at once and swallow their errors; this one keeps the order and passes
failures up.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from opencue_gw.http.connections import ConnectionTracker
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.ops.inflight import InFlight
from opencue_gw.upstream.cuebot import CuebotClient

__all__ = ["CuebotService", "GatewayService", "ThreadPoolService"]

# How long idle connections get to flush their last answer once requests have drained.
CONNECTION_CLOSE_TIMEOUT = 5.0


class ThreadPoolService(Service):
    """Owns a thread pool's life: started with the gateway, joined at the end."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        """Start the worker threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        """Join the worker threads; only idle ones remain once requests have drained."""
        super().stopService()
        self.pool.stop()


class CuebotService(Service):
    """Opens the Cuebot channel at start (after any fork) and closes it at the end."""

    def __init__(self, client: CuebotClient, target: Callable[[], str] | None = None) -> None:
        self.client = client
        self._target = target

    def startService(self) -> None:
        """Open the channel, to a target known only now in demo mode."""
        super().startService()
        if self._target is not None:
            self.client.target = self._target()
        self.client.open()

    def stopService(self) -> None:
        """Close the channel."""
        super().stopService()
        self.client.close()


class GatewayService(MultiService):
    """
    The root of the tree: listeners named C{http-N}, everything else by role.

    The drain between "stop listening" and "close the channel" is what makes a SIGTERM
    safe for requests already accepted.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        in_flight: InFlight,
        clock: IReactorTime,
        grace_period: float,
        connections: ConnectionTracker | None = None,
    ) -> None:
        super().__init__()
        self.in_flight = in_flight
        self._clock = clock
        self._grace = grace_period
        self.connections = connections

    def startService(self) -> None:
        """
        Start the children; a SIGHUP (log rotation) must not kill the gateway.

        Its default action is to terminate. The audit log's service, if any, replaces
        this with a reopen when it starts; without one the signal is ignored.
        """
        if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Listeners first, then the drain, then the rest in reverse start order."""
        Service.stopService(self)
        children = list(self)
        listeners = [s for s in children if (s.name or "").startswith("http")]
        others = [s for s in reversed(children) if s not in listeners]
        listener_errors: list[Failure] = []

        def keep(failure: Failure) -> None:
            # A listener that fails to stop must not keep the channel and pool alive.
            listener_errors.append(failure)
            self.log.failure("A listener failed to stop", failure)

        stops = [maybeDeferred(s.stopService).addErrback(keep) for s in listeners]
        d = gatherResults(stops)
        d.addCallback(lambda _: self._drain())
        d.addCallback(lambda _: self._close_connections())
        d.addCallback(lambda _: _stop_in_order(others))

        def report(result: object) -> object:
            return listener_errors[0] if listener_errors else result

        d.addBoth(self._requested_stop_is_success)
        return d.addCallback(report).addCallback(lambda _: None)

    def _requested_stop_is_success(self, result: object) -> object:
        """
        Exit 0 after a SIGTERM/SIGINT the gateway has honoured.

        twistd re-raises the stopping signal at exit (status 143 for SIGTERM); for a
        graceful stop the operator asked for, the gateway reports success instead, as
        its documentation promises.
        """
        clear = _ClearExitSignal(self._clock)
        clear()
        add_trigger = getattr(self._clock, "addSystemEventTrigger", None)
        if add_trigger is not None:
            # A second SIGTERM while draining would set it again; clear it at the end.
            add_trigger("after", "shutdown", clear)
        return result

    def _close_connections(self) -> Deferred[bool] | None:
        # Answers are finished but may still sit in write buffers; flush, then close.
        if self.connections is None:
            return None
        return self.connections.close_all(CONNECTION_CLOSE_TIMEOUT, self._clock)

    def _drain(self) -> Deferred[bool]:
        self.log.info(
            "Stopped listening; waiting up to {grace}s for {count} requests in flight",
            grace=self._grace,
            count=self.in_flight.count,
        )
        return self.in_flight.drain(self._grace, self._clock)


def _stop_in_order(services: list[IService]) -> Deferred[None]:
    """Stop each service after the previous one finished; the first error wins."""
    d: Deferred[None] = Deferred()
    errors: list[BaseException] = []

    def stop_next(_: object = None) -> None:
        while services:
            service = services.pop(0)
            result = maybeDeferred(service.stopService)
            if not result.called:
                result.addErrback(lambda f: errors.append(f.value))
                result.addBoth(stop_next)
                return
            result.addErrback(lambda f: errors.append(f.value))
        if errors:
            d.errback(errors[0])
        else:
            d.callback(None)

    stop_next()
    return d


class _ClearExitSignal:
    """Forget a stopping SIGTERM/SIGINT so twistd exits 0 instead of re-raising it."""

    def __init__(self, reactor: object) -> None:
        self._reactor = reactor

    def __call__(self) -> None:
        if getattr(self._reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
            self._reactor._exitSignal = None  # type: ignore[attr-defined]
