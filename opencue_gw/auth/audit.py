# -*- test-case-name: tests.test_audit -*-
"""
The audit log: one JSON line per call that changes the farm, and per policy refusal.

It answers "who killed this job" (OpenCue #2462), which Cuebot cannot: it only ever sees
the gateway. It is a file of its own, apart from the operational log, so it can be kept
and shipped on its own terms. Writing it must never cost a client its answer: a failed
write is reported loudly in the gateway's log and the request goes on.

The file is opened in append mode and line-buffered. On C{SIGHUP} (which twistd leaves
alone; it rotates its own log on C{SIGUSR1}) it is reopened, so logrotate can move it
away and signal the gateway instead of copying and truncating it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import IO, Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from twisted.application.service import Service
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from opencue_gw.errors import GRPC_CODE_NAMES, Code, GatewayError
from opencue_gw.http.context import context_of
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["MAX_TARGETS", "AuditLog", "AuditLogService", "outcome_of", "targets_of"]

MAX_TARGETS = 50
# Messages whose "name" identifies what is acted on, as well as their "id".
NAMED_REFERENCES = frozenset(
    {"job.Job", "job.Layer", "job.Frame", "job.Group", "host.Host", "show.Show"}
)
_MAX_TEXT = 256


def targets_of(message: Message, limit: int = MAX_TARGETS) -> tuple[list[dict[str, str]], bool]:
    """
    The objects a request refers to, found by walking the whole message: every message
    with an C{id} field set, and the name of every job, layer, frame, group, host or show
    reference. Answers the list (at most C{limit}) and whether it was cut short.
    """
    found: list[dict[str, str]] = []
    for entry in _walk(message):
        if len(found) == limit:
            return found, True
        found.append(entry)
    return found, False


def _walk(message: Message) -> Iterator[dict[str, str]]:
    descriptor = message.DESCRIPTOR
    entry: dict[str, str] = {}
    fields = message.ListFields()
    for field, value in fields:
        if field.name == "id" and isinstance(value, str) and value:
            entry["id"] = value[:_MAX_TEXT]
        elif field.name == "name" and isinstance(value, str) and value:
            if descriptor.full_name in NAMED_REFERENCES:
                entry["name"] = value[:_MAX_TEXT]
    if entry:
        yield {"type": descriptor.full_name, **entry}
    for field, value in fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values() if _map_holds_messages(field) else ()
        elif field.is_repeated:
            values = value
        else:
            values = (value,)
        for child in values:
            yield from _walk(child)


def _map_holds_messages(field: FieldDescriptor) -> bool:
    return field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE


# A call that ended this way may or may not have been carried out by Cuebot: the
# channel closed under it (shutdown) or its deadline passed while Cuebot worked.
UNKNOWN_OUTCOME = "unknown"
_UNDECIDED = (Code.CANCELLED, Code.DEADLINE_EXCEEDED)


def outcome_of(result: object) -> str:
    """
    The gRPC code name a call ended with (a reply is OK), or L{UNKNOWN_OUTCOME} when
    nobody can tell whether Cuebot carried the change out.
    """
    if not isinstance(result, Failure):
        return "OK"
    if isinstance(result.value, GatewayError):
        if result.value.code in _UNDECIDED:
            return UNKNOWN_OUTCOME
        return result.value.code_name
    if isinstance(result.value, CancelledError):
        return UNKNOWN_OUTCOME
    return GRPC_CODE_NAMES[Code.UNKNOWN]


class AuditLog:
    """
    Appends audit records to one file.

    Opened lazily by the first record if the service did not open it, so a gateway
    built without the service tree (tests, tools) still audits.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, path: str, clock: IReactorTime) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Open the file for appending; a failure is logged and retried at the next record."""
        if self._file is not None:
            return
        try:
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")
        except OSError as error:
            self.log.critical(
                "Cannot open the audit log {path}: {error}; audit records are being lost",
                path=self.path,
                error=error.strerror,
            )

    def close(self) -> None:
        """Close the file (the next record opens it again)."""
        current, self._file = self._file, None
        if current is not None:
            try:
                current.close()
            except OSError as error:
                self.log.critical(
                    "Cannot close the audit log {path}: {error}",
                    path=self.path,
                    error=error.strerror,
                )

    def reopen(self) -> None:
        """After logrotate moved the file: close it and start a new one at the same path."""
        self.close()
        self.open()
        self.log.info("Reopened the audit log {path}", path=self.path)

    def record(
        self,
        request: IRequest,
        rpc: Rpc,
        message: Message,
        outcome: str,
        roles: tuple[str, ...] | None = None,
    ) -> None:
        """Write one record for a call; never raises."""
        try:
            self.write(self._entry(request, rpc, message, outcome, roles))
        except Exception:
            self.log.failure("Cannot build the audit record for {rpc}", rpc=rpc.path)

    def observe(
        self,
        result: object,
        request: IRequest,
        rpc: Rpc,
        message: Message,
        roles: tuple[str, ...] | None = None,
    ) -> object:
        """A Deferred callback: record the call's outcome, pass the result on untouched."""
        self.record(request, rpc, message, outcome_of(result), roles)
        return result

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one JSON line; a failure is logged with the path and swallowed."""
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n"
        self.open()
        if self._file is None:
            self.log.critical(
                "Audit record lost ({path} is not open): {rpc} by {sub}",
                path=self.path,
                rpc=entry.get("method"),
                sub=entry.get("sub"),
            )
            return
        try:
            self._file.write(line)
        except OSError as error:
            self.log.critical(
                "Cannot write the audit log {path}: {error}; record lost: {rpc} by {sub}",
                path=self.path,
                error=error.strerror,
                rpc=entry.get("method"),
                sub=entry.get("sub"),
            )
            # A broken handle (disk full, file gone) gets a fresh start next time.
            self._discard()

    def _discard(self) -> None:
        current, self._file = self._file, None
        if current is not None:
            try:
                current.close()
            except OSError:
                # The buffered line that failed is retried by close(); it fails again.
                pass

    def _entry(
        self,
        request: IRequest,
        rpc: Rpc,
        message: Message,
        outcome: str,
        roles: tuple[str, ...] | None,
    ) -> dict[str, Any]:
        now = self._clock.seconds()
        ctx = context_of(request)
        identity = ctx.identity if ctx is not None else None
        targets, truncated = targets_of(message)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
            "epoch": round(now, 3),
            "sub": identity.sub if identity is not None else None,
            "role": identity.role if identity is not None else None,
            "client": getattr(request.getClientAddress(), "host", None),
            "request_id": ctx.request_id if ctx is not None else None,
            "facility": (ctx.facility or None) if ctx is not None else None,
            "method": rpc.path[1:],
            "targets": targets,
            "outcome": outcome,
        }
        if roles is not None:
            entry["policy_roles"] = list(roles)
        if truncated:
            entry["targets_truncated"] = True
        return entry


class AuditLogService(Service):
    """
    Opens the audit log with the gateway and reopens it on C{SIGHUP}.

    The handler only schedules the reopen on the reactor: a signal can arrive in the
    middle of a write.
    """

    def __init__(self, audit: AuditLog, reactor: IReactorFromThreads) -> None:
        self.audit = audit
        self._reactor = reactor
        self._previous: Any = None
        self._installed = False

    def startService(self) -> None:
        """Open the file and take over C{SIGHUP}."""
        super().startService()
        self.audit.open()
        try:
            self._previous = signal.signal(signal.SIGHUP, self._hangup)
            self._installed = True
        except ValueError:
            # Not the main thread (an embedding application); rotate with copytruncate.
            self._installed = False

    def stopService(self) -> None:
        """Give C{SIGHUP} back and close the file."""
        super().stopService()
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous)
            self._installed = False
        self.audit.close()

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.audit.reopen)
