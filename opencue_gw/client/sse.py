# -*- test-case-name: tests.test_events_client -*-
"""
Reading the gateway's event stream: an incremental Server-Sent Events parser and the
event it yields, shared by both clients.

The parser takes bytes as they arrive (any split), and yields an L{StreamEvent} for each
complete event, following the WHATWG rules the gateway relies on: C{id}, C{event},
C{data} (joined by newlines), comments ignored, C{retry} remembered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEParser", "StreamEvent", "describe"]


@dataclass(frozen=True)
class StreamEvent:
    """One event: its C{type} (C{job}, C{frame}, ..., C{dropped}), id and decoded data."""

    type: str
    id: str | None
    data: Any

    @property
    def changes(self) -> list[str]:
        """What changed (C{["snapshot"]} for the state at connection)."""
        if isinstance(self.data, dict):
            return list(self.data.get("changes") or [])
        return []

    @property
    def object(self) -> dict[str, Any]:
        """The job, layer, frame or host the event is about (empty for control events)."""
        if isinstance(self.data, dict):
            found = self.data.get(self.type)
            if isinstance(found, dict):
                return found
        return {}


class SSEParser:
    """Feed bytes, get events; C{last_id} and C{retry_ms} follow the stream."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Every event completed by C{chunk}."""
        self._buffer += chunk
        events: list[StreamEvent] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return events
            raw, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> StreamEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> StreamEvent | None:
        if self._id is not None:
            self.last_id = self._id
        if not self._data:
            self._type, self._id = "", None
            return None
        text = "\n".join(self._data)
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        event = StreamEvent(self._type or "message", self._id, data)
        self._data, self._type, self._id = [], "", None
        return event


def _counts(stats: Any) -> str:
    if not isinstance(stats, dict):
        return ""
    return (
        f"run {stats.get('runningFrames', 0)} wait {stats.get('waitingFrames', 0)} "
        f"dead {stats.get('deadFrames', 0)} done {stats.get('succeededFrames', 0)}"
        f"/{stats.get('totalFrames', 0)}"
    )


def describe(event: StreamEvent) -> str:
    """One human line for an event, as C{opencue-gw watch} prints it."""
    what = event.object
    changes = ",".join(event.changes)
    if event.type == "job":
        state = "PAUSED" if what.get("isPaused") else what.get("state", "")
        return (
            f"job   {changes:<18} {what.get('name', '')} {state} "
            f"{_counts(what.get('jobStats'))}".rstrip()
        )
    if event.type == "layer":
        return f"layer {changes:<18} {what.get('name', '')} {_counts(what.get('layerStats'))}"
    if event.type == "frame":
        host = (what.get("lastResource") or "").split("/")[0]
        return (
            f"frame {changes:<18} {what.get('name', '')} {what.get('state', '')} "
            f"exit {what.get('exitStatus', 0)} retries {what.get('retryCount', 0)} {host}"
        ).rstrip()
    if event.type == "host":
        return (
            f"host  {changes:<18} {what.get('name', '')} {what.get('state', '')} "
            f"{what.get('lockState', '')}"
        )
    message = event.data.get("message", "") if isinstance(event.data, dict) else event.data
    return f"{event.type:<5} {message}"
