"""Resolving the entity references clients send (a message with an id, maybe a name)."""

from __future__ import annotations

from typing import Any

from opencue_sandbox.errors import Missing
from opencue_sandbox.model import Frame, Group, Host, Job, Layer, Show
from opencue_sandbox.state import FarmState


def show_of(state: FarmState, msg: Any) -> Show:
    if msg.id:
        return state.show(msg.id)
    if msg.name:
        return state.show_named(msg.name)
    raise Missing("show")


def job_of(state: FarmState, msg: Any) -> Job:
    if msg.id:
        return state.job(msg.id)
    if msg.name:
        found = state.jobs_by_name.get(msg.name)
        if found is not None:
            return found
    raise Missing("job")


def layer_of(state: FarmState, msg: Any) -> Layer:
    if msg.id:
        return state.layer(msg.id)
    raise Missing("layer")


def frame_of(state: FarmState, msg: Any) -> Frame:
    if msg.id:
        return state.frame(msg.id)
    raise Missing("frame")


def group_of(state: FarmState, msg: Any) -> Group:
    if msg.id:
        return state.group(msg.id)
    raise Missing("group")


def host_of(state: FarmState, msg: Any) -> Host:
    return state.host_ref(msg.id, msg.name)


def all_frames(job: Job) -> list[Frame]:
    return [f for layer in job.layers for f in layer.frames]
