# -*- test-case-name: tests.integration.test_redis_store -*-
"""
The Redis connection that gateway instances share their state through, and what the
gateway does when Redis is away.

Shared state is an optimisation, never a dependency: every command has a bounded wait
(C{timeout}, 50 ms by default), and a Redis that is unreachable or slow switches the
gateway to its local state at once. While it is switched, requests do not touch Redis
at all (no per-request wait); a background PING every C{probe_interval} seconds finds
out when Redis answers promptly again and switches back. Each switch is logged once,
counted in /metrics, and reported in C{/readyz}'s details (the gateway stays ready).

The client is txredisapi: Twisted-native, so commands are Deferreds on the gateway's
own reactor (txredisapi takes the global one, which is the gateway's), with a pool that
reconnects by itself. A command is never cancelled once sent (see L{SharedStore._bounded}).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import provider

from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.address import RedisAddress

__all__ = [
    "Script",
    "SharedStateMetrics",
    "SharedStore",
    "SharedStoreService",
    "SharedStoreUnavailable",
]

DEFAULT_TIMEOUT = 0.05
DEFAULT_PROBE_INTERVAL = 0.5
# A command that has not been answered in this long closes its connection (txredisapi
# then reconnects); requests stopped waiting for it long before.
_REPLY_TIMEOUT = 2.0
_POOL_SIZE = 4
# At start-up, how long connecting may take before "unreachable" is logged.
_CONNECT_GRACE = 2.0
# Reconnection: first attempt soon, never more than one a second per pooled connection.
_RECONNECT_INITIAL = 0.1
_RECONNECT_MAX = 1.0


class SharedStoreUnavailable(Exception):
    """Redis is not usable right now; the caller uses its local state instead."""


@provider(ILogObserver)
def _as_debug(event: LogEvent) -> None:
    GATEWAY_OBSERVER({**event, "log_level": LogLevel.debug})


class _QuietClientService(ClientService):
    """
    The reconnecting connection txredisapi's pool uses, its "Scheduling retry" line (one
    per pooled connection per attempt) at debug level: the store says once that Redis
    is away, and once that it is back.
    """

    _log = Logger(namespace="opencue_gw.shared.redis", observer=_as_debug)


txredisapi.ClientService = _QuietClientService


def connect(address: RedisAddress) -> Any:
    """A lazy, self-reconnecting txredisapi pool for C{address}; answers are bytes."""
    options: dict[str, Any] = {
        "dbid": address.db or None,
        "poolsize": _POOL_SIZE,
        "charset": None,
        "convertNumbers": False,
        "password": address.password,
        "username": address.username,
        "replyTimeout": _REPLY_TIMEOUT,
        "connectTimeout": 2,
    }
    if address.scheme == "unix":
        pool = txredisapi.lazyUnixConnectionPool(address.path, **options)
    else:
        tls: Any = False
        if address.scheme == "rediss":
            trust = None
            if address.ca_file is not None:
                with open(address.ca_file, "rb") as pem:
                    trust = Certificate.loadPEM(pem.read())
            tls = optionsForClientTLS(address.host, trustRoot=trust)
        pool = txredisapi.lazyConnectionPool(
            address.host, address.port, ssl_context_factory=tls, **options
        )
    factory = pool._factory
    factory.initialDelay = _RECONNECT_INITIAL
    factory.maxDelay = _RECONNECT_MAX
    return pool


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded again when Redis has lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = sha1(source.encode("utf-8")).hexdigest()


class SharedStateMetrics:
    """The /metrics series of shared state (registered on the gateway's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.redis_up = Gauge(
            "opencue_gateway_redis_up",
            "1 while shared state is kept in Redis, 0 while the gateway uses local state.",
            registry=registry,
        )
        self.outages = Counter(
            "opencue_gateway_redis_outages",
            "Times the gateway switched to local state because Redis was unreachable or slow.",
            registry=registry,
        )
        self.fallbacks = Counter(
            "opencue_gateway_redis_fallbacks",
            "Operations answered from local state because Redis was unavailable, by use "
            "(rate_limit, read, stale).",
            ["use"],
            registry=registry,
        )
        self.shared_cache_hits = Counter(
            "opencue_gateway_shared_cache_hits",
            "Reads answered from the read cache in Redis.",
            registry=registry,
        )
        self.shared_flight_joins = Counter(
            "opencue_gateway_shared_flight_joins",
            "Reads answered by an identical call another gateway instance made.",
            registry=registry,
        )
        self.shared_flight_timeouts = Counter(
            "opencue_gateway_shared_flight_timeouts",
            "Reads that waited for another instance's call and then called Cuebot themselves.",
            registry=registry,
        )


class SharedStore:
    """
    One Redis, its health, and bounded commands.

    C{up} is whether requests use Redis now. L{command} and L{run} fail at once with
    L{SharedStoreUnavailable} while it is false, and within C{timeout} seconds when
    Redis does not answer in time (which switches to local state until a PING is
    answered within C{timeout} again).
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        address: RedisAddress,
        clock: IReactorTime,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        metrics: SharedStateMetrics | None = None,
        client: Any = None,
    ) -> None:
        self.address = address
        self._clock = clock
        self.timeout = timeout
        self._probe_interval = probe_interval
        self.metrics = metrics
        """The /metrics series, for this store and the parts that use it."""
        self._client = client if client is not None else connect(address)
        self.up = False
        self.reason = "not connected yet"
        self._since = clock.seconds()
        # The state last logged: None before the first answer or failure.
        self._announced: bool | None = None
        self._probing: Deferred[Any] | None = None
        self._loop = LoopingCall(self.probe)
        self._loop.clock = clock
        if metrics is not None:
            metrics.redis_up.set(0)

    # --- life cycle

    def start(self) -> None:
        """Start the health probe (the first PING goes out now)."""
        self._loop.start(self._probe_interval, now=True)

    def stop(self) -> Deferred[Any]:
        """Stop probing and close the connections."""
        if self._loop.running:
            self._loop.stop()
        self._set_down("stopped", quiet=True)
        d: Deferred[Any] = self._client.disconnect()
        return d

    # --- health

    def status(self) -> tuple[bool, str]:
        """For C{/readyz}'s details: whether Redis is in use, and in words."""
        if self.up:
            return True, f"shared state in Redis at {self.address}"
        since = self._clock.seconds() - self._since
        return False, f"Redis unavailable for {since:.0f}s ({self.reason}); using local state"

    def probe(self) -> Deferred[Any] | None:
        """
        PING Redis once (never overlapping): an answer within C{timeout} means up, no
        connection or a failure means down.
        """
        if self._probing is not None:
            return None
        if not self._connected():
            reason = self._why_not_connected()
            starting = self._clock.seconds() - self._since < _CONNECT_GRACE
            if reason == "unreachable" and self._announced is None and starting:
                # Still connecting at start-up: local state, nothing to say yet.
                return None
            self._set_down(reason)
            return None
        asked = self._clock.seconds()
        d = self._client.ping()
        self._probing = d

        def answered(_: object) -> None:
            # Back only when Redis answers promptly; while in use, the requests' own
            # bounded commands decide whether it has become slow.
            took = self._clock.seconds() - asked
            if took <= self.timeout:
                self._set_up()
            elif not self.up:
                self.reason = f"slow: PING took {took * 1000:.0f} ms"

        def failed(failure: Failure) -> None:
            self._set_down(_describe(failure))

        def done(_: object) -> None:
            self._probing = None

        d.addCallbacks(answered, failed).addBoth(done)
        return d

    def _why_not_connected(self) -> str:
        # txredisapi stops reconnecting for good when Redis refuses AUTH or SELECT.
        if getattr(self._client._factory, "stopped", False) and self._loop.running:
            return "refused: wrong password or database; not retrying"
        return "unreachable"

    def _connected(self) -> bool:
        return bool(getattr(self._client._factory, "size", 0))

    def _set_up(self) -> None:
        self.up = True
        self.reason = ""
        if self._announced is True:
            return
        self._announced = True
        self._since = self._clock.seconds()
        self.log.info("Shared state: using Redis at {redis}", redis=str(self.address))
        if self.metrics is not None:
            self.metrics.redis_up.set(1)

    def _set_down(self, reason: str, *, quiet: bool = False) -> None:
        self.up = False
        self.reason = reason
        if self._announced is False:
            # Once per change: what fails meanwhile is already on local state.
            return
        if self._announced is True:
            self._since = self._clock.seconds()
            if self.metrics is not None:
                self.metrics.outages.inc()
        self._announced = False
        if self.metrics is not None:
            self.metrics.redis_up.set(0)
        if quiet:
            return
        self.log.warn(
            "Shared state: Redis at {redis} unavailable ({reason}); using local state "
            "until it answers again",
            redis=str(self.address),
            reason=reason,
        )

    # --- commands

    def command(self, *args: Any) -> Deferred[Any]:
        """Run one Redis command, bounded by C{timeout}."""
        if not self.up or not self._connected():
            return fail(SharedStoreUnavailable(self.reason or "unreachable"))
        return self._bounded(self._client.execute_command(*args))

    def run(self, script: Script, keys: Sequence[bytes], args: Sequence[Any]) -> Deferred[Any]:
        """Run a Lua script (EVALSHA, or EVAL when Redis lost it), bounded by C{timeout}."""
        if not self.up or not self._connected():
            return fail(SharedStoreUnavailable(self.reason or "unreachable"))
        keys, args = list(keys), list(args)
        d = self._client.evalsha(script.sha, keys, args)

        def load(failure: Failure) -> Any:
            failure.trap(txredisapi.ScriptDoesNotExist)
            return self._client.eval(script.source, keys, args)

        d.addErrback(load)
        return self._bounded(d)

    def _bounded(self, d: Deferred[Any]) -> Deferred[Any]:
        # The command itself is never cancelled: txredisapi matches answers to commands
        # by order on the connection, so a cancelled one would shift every later answer.
        # The caller stops waiting instead, and the late answer is dropped.
        out: Deferred[Any] = Deferred()
        timer: IDelayedCall = self._clock.callLater(self.timeout, self._expired, out)

        def answered(result: Any) -> None:
            if out.called:
                return
            timer.cancel()
            if isinstance(result, Failure):
                if result.check(txredisapi.ResponseError):
                    # Redis answered (a script error, a wrong type): it is up.
                    out.errback(result)
                    return
                self._set_down(_describe(result))
                out.errback(SharedStoreUnavailable(self.reason))
                return
            out.callback(result)

        d.addBoth(answered)
        return out

    def _expired(self, out: Deferred[Any], turns: int = 0) -> None:
        if out.called:
            return
        if turns == 0:
            # Timers run before the reactor reads its sockets: an answer that arrived
            # while the process was busy elsewhere is read in the next turn. Only what is
            # still missing then is Redis's slowness.
            self._clock.callLater(0, self._expired, out, 1)
            return
        self._set_down(f"slow: no answer in {self.timeout * 1000:.0f} ms")
        out.errback(SharedStoreUnavailable(self.reason))


class SharedStoreService(Service):
    """The store as a service of the gateway: probing while it runs, closed when it stops."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store

    def startService(self) -> None:
        """Start probing; requests use local state until Redis answers."""
        super().startService()
        self.store.start()

    def stopService(self) -> Deferred[Any]:
        """Stop probing and close the connections."""
        super().stopService()
        return self.store.stop()


def _describe(failure: Failure) -> str:
    """A short reason for the log and /readyz: the error's kind, no addresses or secrets."""
    error = failure.value
    if isinstance(error, txredisapi.ResponseError):
        text = str(error).split(" ", 1)[0]
        return f"Redis refused: {text}"
    if isinstance(error, txredisapi.TimeoutError):
        return "no answer"
    return "unreachable"
