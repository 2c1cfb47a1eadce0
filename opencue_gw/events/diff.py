# -*- test-case-name: tests.test_events -*-
"""
Items from Cuebot's messages, and the difference between two polls as events.

Pure functions: a poll's answer becomes a snapshot (id to L{Item}), and two snapshots
become the list of L{Event}s that tell a subscriber what changed. Only the fields a
watcher acts on are compared (states, pause, frame counts, retries, lock); the event
still carries the whole message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.message import Message
from opencue_proto import host_pb2, job_pb2

from opencue_gw.events.model import Event, Item

__all__ = [
    "Snapshot",
    "diff",
    "frame_item",
    "host_item",
    "job_item",
    "layer_item",
    "snapshot_of",
]

Snapshot = dict[str, Item]

_JOB_STATE = job_pb2.JobState.Name
_FRAME_STATE = job_pb2.FrameState.Name
_HOST_STATE = host_pb2.HardwareState.Name
_LOCK_STATE = host_pb2.LockState.Name


def _counts(stats: Message) -> tuple[int, ...]:
    s: object = stats
    return (
        s.waiting_frames,  # type: ignore[attr-defined]
        s.running_frames,  # type: ignore[attr-defined]
        s.dead_frames,  # type: ignore[attr-defined]
        s.succeeded_frames,  # type: ignore[attr-defined]
        s.eaten_frames,  # type: ignore[attr-defined]
        s.depend_frames,  # type: ignore[attr-defined]
        s.total_frames,  # type: ignore[attr-defined]
    )


def job_item(job: job_pb2.Job) -> Item:
    """A job: its state, pause and frame counts are what a watcher follows."""
    state = _JOB_STATE(job.state)
    states = {state, "PAUSED"} if job.is_paused else {state}
    return Item(
        "job",
        job.id,
        (state, job.is_paused, _counts(job.job_stats)),
        job,
        show=job.show,
        job_id=job.id,
        states=frozenset(states),
    )


def layer_item(layer: job_pb2.Layer, job_id: str) -> Item:
    """A layer of a watched job: its frame counts."""
    return Item("layer", layer.id, (_counts(layer.layer_stats),), layer, job_id=job_id)


def frame_item(frame: job_pb2.Frame, job_id: str) -> Item:
    """A frame of a watched job: state, retries, exit status and host."""
    state = _FRAME_STATE(frame.state)
    return Item(
        "frame",
        frame.id,
        (state, frame.retry_count, frame.exit_status, frame.last_resource),
        frame,
        job_id=job_id,
        states=frozenset({state}),
    )


def host_item(host: host_pb2.Host) -> Item:
    """A host: hardware state and lock state."""
    state, lock = _HOST_STATE(host.state), _LOCK_STATE(host.lock_state)
    return Item("host", host.id, (state, lock), host, states=frozenset({state, lock}))


def snapshot_of(items: Iterable[Item]) -> Snapshot:
    """Items by id."""
    return {item.id: item for item in items}


def _job_changes(old: Item, new: Item) -> list[str]:
    (state0, paused0, counts0), (state1, paused1, counts1) = old.fingerprint, new.fingerprint
    changes = []
    if state0 != state1:
        changes.append("state")
        if state1 == "FINISHED":
            changes.append("finished")
    if paused0 != paused1:
        changes.append("paused" if paused1 else "resumed")
    if counts0 != counts1:
        changes.append("progress")
    return changes


def _frame_changes(old: Item, new: Item) -> list[str]:
    names = ("state", "retry", "exitStatus", "host")
    pairs = zip(names, old.fingerprint, new.fingerprint, strict=True)
    return [name for name, before, after in pairs if before != after]


def _host_changes(old: Item, new: Item) -> list[str]:
    (state0, lock0), (state1, lock1) = old.fingerprint, new.fingerprint
    changes = []
    if state0 != state1:
        changes.append("state")
        if state1 == "UP":
            changes.append("up")
        elif state0 == "UP":
            changes.append("down")
    if lock0 != lock1:
        changes.append("unlocked" if lock1 == "OPEN" else "locked")
    return changes


def _changes(old: Item, new: Item) -> list[str]:
    if old.fingerprint == new.fingerprint:
        return []
    if new.kind == "job":
        return _job_changes(old, new)
    if new.kind == "frame":
        return _frame_changes(old, new)
    if new.kind == "host":
        return _host_changes(old, new)
    return ["progress"]


def diff(
    old: Snapshot, new: Snapshot, departed: Mapping[str, Item | None] | None = None
) -> list[Event]:
    """
    The events that turn C{old} into C{new}: items that appeared, changed, or are gone.

    C{departed} says what became of items no longer in C{new} when the poller could ask
    (a job that left the unfinished list: its final state, or C{None} if Cuebot no longer
    knows it); an item gone without word is C{removed}.
    """
    events: list[Event] = []
    for key, item in new.items():
        before = old.get(key)
        if before is None:
            changes = ["appeared"]
            if item.kind == "job" and item.fingerprint[0] == "FINISHED":
                changes.append("finished")
            events.append(Event(item, tuple(changes)))
            continue
        changed = _changes(before, item)
        if changed:
            events.append(Event(item, tuple(changed)))
    told = departed or {}
    for key, before in old.items():
        if key in new:
            continue
        final = told.get(key)
        if final is None:
            events.append(Event(before, ("removed",)))
        else:
            events.append(Event(final, tuple(_changes(before, final)) or ("removed",)))
    return events
