# -*- test-case-name: tests.test_events -*-
"""
What an event is, how it looks on the wire, and which events a subscriber asked for.

An L{Item} is one job, layer, frame or host as the last poll saw it: the message Cuebot
sent and a fingerprint of the fields whose change is news. An L{Event} is an item and
the names of what changed; its C{data} is JSON in the camelCase shape of the rest of the
API (the item is encoded by the same codec as every answer), built once however many
subscribers receive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message
from opencue_proto import host_pb2, job_pb2

from opencue_gw.codec import encode
from opencue_gw.errors import GatewayError

__all__ = [
    "EVENT_TYPES",
    "STATE_NAMES",
    "Event",
    "EventFilter",
    "Item",
    "ScopeKey",
    "comment",
    "control",
]

EVENT_TYPES = ("job", "layer", "frame", "host")
# Every state name a states= filter may name: jobs (and PAUSED), frames, hosts, locks.
STATE_NAMES = frozenset(
    [
        *job_pb2.JobState.keys(),
        "PAUSED",
        *job_pb2.FrameState.keys(),
        *host_pb2.HardwareState.keys(),
        *host_pb2.LockState.keys(),
    ]
)

_FRAME = b"id: %d\nevent: %s\ndata: %s\n\n"

ScopeKey = tuple[str, str]
"""What one poll covers: C{("jobs", show)} (C{""}: every show), C{("job", id)},
C{("detail", job id)} (its layers and frames) or C{("hosts", "")}."""


@dataclass(frozen=True, eq=False)
class Item:
    """One object as a poll saw it."""

    kind: str
    id: str
    fingerprint: tuple[Any, ...]
    message: Message
    show: str = ""
    job_id: str = ""
    states: frozenset[str] = frozenset()


@dataclass(eq=False)
class Event:
    """
    A change of one item (or, for C{changes == ("snapshot",)}, its state when a
    subscriber joined). C{id} is the hub's sequence number; snapshots carry the number of
    the last event they already include, so resuming from it loses nothing.
    """

    item: Item
    changes: tuple[str, ...]
    id: int = 0
    _data: bytes | None = field(default=None, repr=False)
    _wire: bytes | None = field(default=None, repr=False)

    @property
    def type(self) -> str:
        """The SSE event name: C{job}, C{layer}, C{frame} or C{host}."""
        return self.item.kind

    @property
    def data(self) -> bytes:
        """The JSON payload (one line: the codec writes compact JSON)."""
        if self._data is None:
            item = self.item
            head = {"changes": list(self.changes)}
            if item.kind in ("layer", "frame"):
                head["jobId"] = item.job_id  # type: ignore[assignment]
            opening = json.dumps(head, separators=(",", ":"))[:-1].encode("utf-8")
            self._data = b'%s,"%s":%s}' % (opening, item.kind.encode(), encode(item.message))
        return self._data

    def wire(self, event_id: int | None = None) -> bytes:
        """The event as SSE lines; C{event_id} overrides the id (snapshots)."""
        if event_id is not None and event_id != self.id:
            return _FRAME % (event_id, self.type.encode(), self.data)
        if self._wire is None:
            self._wire = _FRAME % (self.id, self.type.encode(), self.data)
            self._data = None  # kept once, in the wire form the history replays
        return self._wire


def control(name: str, payload: Mapping[str, Any], event_id: int | None = None) -> bytes:
    """A control event (C{error}, C{dropped}, C{shutdown}): not part of the history."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    prefix = b"id: %d\n" % event_id if event_id is not None else b""
    return b"%sevent: %s\ndata: %s\n\n" % (prefix, name.encode("ascii"), data)


def comment(text: str) -> bytes:
    """An SSE comment line (heartbeats): ignored by clients, keeps proxies from closing."""
    return b": %s\n\n" % text.encode("ascii")


def _values(args: Mapping[str, Sequence[str]], name: str) -> list[str]:
    values: list[str] = []
    for raw in args.get(name, ()):
        values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values


@dataclass(frozen=True)
class EventFilter:
    """
    What one subscriber asked for: C{show=}, C{job=} (repeatable), C{types=} and
    C{states=}. Without C{types=} a stream carries job events, and layer and frame
    events when it names jobs; host events only when asked for (each costs a poll).
    """

    shows: frozenset[str] = frozenset()
    jobs: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset({"job"})
    states: frozenset[str] = frozenset()
    explicit_types: bool = False

    @classmethod
    def parse(cls, args: Mapping[str, Sequence[str]]) -> EventFilter:
        """The filter from query parameters; C{GatewayError} (400) for a bad one."""
        for name in args:
            if name not in ("show", "job", "types", "states"):
                raise GatewayError.invalid_argument(
                    f"unknown query parameter {name!r} (accepted: job, show, states, types)"
                )
        shows = frozenset(_values(args, "show"))
        jobs = frozenset(_values(args, "job"))
        asked = _values(args, "types")
        for kind in asked:
            if kind not in EVENT_TYPES:
                raise GatewayError.invalid_argument(
                    f"invalid types value {kind!r} (accepted: {', '.join(EVENT_TYPES)})"
                )
        if asked:
            types = frozenset(asked)
        else:
            types = frozenset({"job", "layer", "frame"} if jobs else {"job"})
        if types & {"layer", "frame"} and not jobs:
            raise GatewayError.invalid_argument(
                "layer and frame events need job= (frames are polled only for watched jobs)"
            )
        states = frozenset(s.upper() for s in _values(args, "states"))
        unknown = sorted(states - STATE_NAMES)
        if unknown:
            raise GatewayError.invalid_argument(f"invalid states value {unknown[0]!r}")
        return cls(shows, jobs, types, states, bool(asked))

    def without(self, denied: Iterable[str]) -> EventFilter:
        """The same filter without the types in C{denied}."""
        return EventFilter(
            self.shows, self.jobs, self.types - set(denied), self.states, self.explicit_types
        )

    def scopes(self) -> list[ScopeKey]:
        """The polls this filter needs."""
        keys: list[ScopeKey] = []
        if "job" in self.types:
            if self.jobs:
                keys.extend(("job", job) for job in sorted(self.jobs))
            elif self.shows:
                keys.extend(("jobs", show) for show in sorted(self.shows))
            else:
                keys.append(("jobs", ""))
        if self.types & {"layer", "frame"}:
            keys.extend(("detail", job) for job in sorted(self.jobs))
        if "host" in self.types:
            keys.append(("hosts", ""))
        return keys

    def matches(self, item: Item) -> bool:
        """Whether an event about C{item} is for this subscriber."""
        if item.kind not in self.types:
            return False
        if item.kind != "host":
            if self.jobs and item.job_id not in self.jobs:
                return False
            if self.shows and item.kind == "job" and item.show not in self.shows:
                return False
        return not self.states or bool(self.states & item.states)
