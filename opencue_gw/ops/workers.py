# -*- test-case-name: tests.integration.test_workers -*-
"""
Several gateway processes on one port: C{--workers N}.

One Python process serves one core. The parent opens the listening socket, then starts
N worker processes that inherit it and accept from it; the kernel spreads connections
among them. Each worker is a complete gateway (its own gRPC channel, created after it
starts, never shared across a fork). The parent only supervises: it restarts a worker
that dies, and on SIGTERM passes the signal on and waits for every worker's graceful
stop.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.config import ConfigError
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = [
    "LISTEN_BACKLOG",
    "AdoptedPortService",
    "ParentWatchService",
    "WorkerPoolService",
    "check_can_listen",
    "listening_socket",
    "with_backlog",
    "worker_argv",
]

# The listening socket's number in every worker.
WORKER_FD = 3
_RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)


def shareable(description: str) -> tuple[str, int, int]:
    """
    (interface, port, backlog) from a C{tcp:PORT[:interface=ADDR][:backlog=N]}
    description or a bare port number; other endpoint types cannot be shared.
    """
    parts = description.split(":")
    if parts[0].isdigit():
        parts = ["tcp", *parts]
    if parts[0] != "tcp" or len(parts) < 2 or not parts[1].isdigit():
        raise ConfigError(
            f"--workers: can only share tcp:PORT listeners, not {description!r} "
            "(terminate TLS in front of the workers, or run one process)"
        )
    options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    try:
        return (
            options.get("interface", "").strip("[]"),
            int(parts[1]),
            int(options.get("backlog", LISTEN_BACKLOG)),
        )
    except ValueError:
        raise ConfigError(f"--port: bad backlog in {description!r}") from None


# Queued connections a listening socket holds before the kernel refuses more. Twisted's
# default is 50; CueWeb opens one connection per job row at each refresh (200 at once
# for a table of 200 jobs), and a refused connect is retried only after a second.
LISTEN_BACKLOG = 1024


def with_backlog(description: str) -> str:
    """A tcp/ssl endpoint description with L{LISTEN_BACKLOG} unless it names one."""
    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "ssl") or "backlog=" in description:
        return description
    return f"{description}:backlog={LISTEN_BACKLOG}"


def listening_socket(description: str) -> socket.socket:
    """Open (bind and listen) the socket the workers share."""
    interface, port, backlog = shareable(description)
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((interface, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"--port: cannot listen on {description!r}: {error.strerror}") from None
    sock.listen(backlog)
    # Twisted accepts in a loop until EAGAIN: a blocking socket would hang the worker.
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def check_can_listen(endpoint: Any, description: str) -> None:
    """
    Raise L{ConfigError} naming C{description} if its TCP port cannot be bound now (in
    use, or privileged), so that a busy port is one line and exit status 2 before twistd
    daemonizes, like every other bad setting, instead of a traceback at start.

    Binds and closes a socket as Twisted's own listen would (C{SO_REUSEADDR}); the real
    listen follows moments later. A process that takes the port in between still meets
    twistd's own report (a traceback): reporting that one as a line too would hide it
    from the terminal once twistd has daemonized. Endpoints other than tcp/tcp6/ssl
    (systemd socket activation, unix sockets) bind nothing of their own here and are not
    checked.
    """
    if not isinstance(endpoint, (TCP4ServerEndpoint, SSL4ServerEndpoint)):
        return
    # Twisted keeps these as private attributes; they have not changed since 2011.
    port = int(getattr(endpoint, "_port", 0))
    interface = str(getattr(endpoint, "_interface", ""))
    if not port:
        return
    ipv6 = isinstance(endpoint, TCP6ServerEndpoint) or ":" in interface
    with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
        except OSError as error:
            reason = error.strerror or str(error)
            raise ConfigError(f"--port: cannot listen on {description!r}: {reason}") from None


def _twistd_options(before: Sequence[str], index: int) -> list[str]:
    """
    The parent's twistd options a worker needs too: the reactor and where logs go
    (a log file gets a per-worker name, since processes must not share a rotating file).
    """
    kept: list[str] = []
    args = list(before)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        takes_value = name in ("--logger", "--reactor", "-r", "--logfile", "-l", "--prefix")
        if takes_value and not eq and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        if name in ("--logfile", "-l") and value not in ("", "-"):
            kept.append(f"--logfile={value}.worker{index}")
        elif name in ("--logger", "--reactor", "-r", "--prefix", "--logfile", "-l"):
            kept.append(f"{name}={value}")
        elif name == "--syslog":
            kept.append(name)
        i += 1
    return kept


def worker_argv(argv: Sequence[str], extra: Sequence[str], index: int = 0) -> list[str]:
    """
    A worker's twistd command line: the parent's logging and reactor options, and its
    subcommand options without the ones only the parent acts on (workers, demo,
    listeners), plus C{extra}.
    """
    try:
        start = list(argv).index("opencue-gateway") + 1
    except ValueError:
        start = len(argv)
    dropped_with_value = {"--workers", "--port", "-p", "--demo-token-file"}
    dropped_flags = {"--demo"}
    kept: list[str] = []
    skip = False
    for arg in argv[start:]:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in dropped_with_value:
            skip = "=" not in arg
            continue
        if name in dropped_flags:
            continue
        kept.append(arg)
    return [
        sys.executable,
        "-c",
        # SIGHUP is ignored from the first instruction: the parent forwards it for log
        # rotation, possibly before the worker has installed a handler of its own.
        "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "from twisted.scripts.twistd import run; run()",
        "--nodaemon",
        "--pidfile=",
        *_twistd_options(argv[1 : max(start - 1, 1)], index),
        "opencue-gateway",
        *kept,
        *extra,
    ]


class AdoptedPortService(Service):
    """A worker's listener: the socket inherited from the parent."""

    def __init__(self, reactor: Any, fd: int, factory: Any) -> None:
        self._reactor = reactor
        self._fd = fd
        self._factory = factory
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Start accepting on the inherited socket."""
        super().privilegedStartService()
        probe = socket.socket(fileno=os.dup(self._fd))
        family = probe.family
        probe.close()
        self.port = self._reactor.adoptStreamPort(self._fd, family, self._factory)

    def stopService(self) -> Deferred[None] | None:
        """Stop accepting; the parent still holds the socket for the other workers."""
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


class _Worker(ProcessProtocol):
    def __init__(self, index: int, ended: Callable[[_Worker, Failure], None]) -> None:
        self.index = index
        self._ended = ended

    def processEnded(self, reason: Failure) -> None:
        self._ended(self, reason)


class WorkerPoolService(Service):
    """Starts, restarts and stops the worker processes."""

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        reactor: Any,
        count: int,
        description: str,
        argv: Callable[[int], list[str]],
        env: Callable[[], dict[str, str]],
        grace_period: float,
    ) -> None:
        self._reactor = reactor
        self.count = count
        self._description = description
        self._sock: socket.socket | None = None
        self._argv = argv
        self._env = env
        self._grace = grace_period
        self._workers: dict[int, Any] = {}
        self._exits: dict[int, Deferred[None]] = {}
        self._failures: dict[int, int] = {}
        self._stopping = False
        self._previous_hup: Any = None

    def privilegedStartService(self) -> None:
        """Bind the shared socket now, before twistd drops privileges."""
        super().privilegedStartService()
        self._sock = listening_socket(self._description)
        self.log.info("Listening on {description} for the workers", description=self._description)

    def startService(self) -> None:
        """Start every worker; from now on SIGHUP (log rotation) is passed on to them."""
        super().startService()
        self._previous_hup = signal.signal(signal.SIGHUP, self._on_hup)
        for index in range(self.count):
            self._spawn(index)

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reactor.callFromThread(self._signal_all, "HUP")

    def _signal_all(self, name: str) -> None:
        for process in list(self._workers.values()):
            try:
                process.signalProcess(name)
            except OSError:
                continue

    def _spawn(self, index: int) -> None:
        if self._stopping or self._sock is None:
            return
        protocol = _Worker(index, self._ended)
        env = {**self._env(), "OPENCUE_GW_WORKER": str(index)}
        self._workers[index] = self._reactor.spawnProcess(
            protocol,
            sys.executable,
            self._argv(index),
            env=env,
            childFDs={0: "w", 1: 1, 2: 2, WORKER_FD: self._sock.fileno()},
        )
        self._exits[index] = Deferred()
        self.log.info(
            "Started worker {index} (pid {pid})", index=index, pid=self._workers[index].pid
        )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        index = worker.index
        self._workers.pop(index, None)
        exited = self._exits.pop(index, None)
        if exited is not None:
            exited.callback(None)
        if self._stopping:
            return
        failures = self._failures.get(index, 0)
        self._failures[index] = failures + 1
        delay = _RESTART_DELAYS[min(failures, len(_RESTART_DELAYS) - 1)]
        self.log.warn(
            "Worker {index} ended ({reason}); restarting in {delay}s",
            index=index,
            reason="exit 0" if reason.check(ProcessDone) else str(reason.value),
            delay=delay,
        )
        self._reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[Any]:
        """SIGTERM every worker, wait for their graceful stop, then close the socket."""
        super().stopService()
        self._stopping = True
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        waits = list(self._exits.values())
        for process in list(self._workers.values()):
            try:
                process.signalProcess("TERM")
            except OSError:
                continue
        kill_later = self._reactor.callLater(self._grace + 10.0, self._kill_all)
        d: Deferred[Any] = DeferredList(waits)

        def done(result: object) -> object:
            if kill_later.active():
                kill_later.cancel()
            if self._sock is not None:
                self._sock.close()
            return result

        return d.addBoth(done)

    def _kill_all(self) -> None:
        for process in list(self._workers.values()):
            try:
                process.signalProcess("KILL")
            except OSError:
                continue


class ParentWatchService(Service):
    """
    In a worker: stop gracefully, as on SIGTERM, when the supervising parent is gone,
    instead of serving on as an orphan that keeps the port.

    The parent is gone when this process is re-parented (its parent pid changes); a
    poll every second costs nothing and needs no pipe or signal set-up.
    """

    def __init__(self, reactor: Any, interval: float = 1.0) -> None:
        self._reactor = reactor
        self._interval = interval
        self._parent = os.getppid()
        self._call: Any = None

    def startService(self) -> None:
        """Start polling."""
        super().startService()
        self._parent = os.getppid()
        self._call = self._reactor.callLater(self._interval, self._check)

    def _check(self) -> None:
        self._call = None
        if os.getppid() != self._parent:
            WorkerPoolService.log.warn("The supervising process is gone; stopping this worker")
            self._reactor.stop()
            return
        self._call = self._reactor.callLater(self._interval, self._check)

    def stopService(self) -> None:
        """Stop polling."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
