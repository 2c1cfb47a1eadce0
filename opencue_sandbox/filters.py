"""Applying a show's filters to a job, as Cuebot does at launch and on RunFilters."""

from __future__ import annotations

import re

from opencue_proto import filter_pb2, job_pb2

from opencue_sandbox.farm import Farm
from opencue_sandbox.model import Action, Filter, Job, Matcher


def _subject(job: Job, subject: int) -> list[str]:
    if subject == filter_pb2.JOB_NAME:
        return [job.name]
    if subject == filter_pb2.SHOW:
        return [job.show.name]
    if subject == filter_pb2.SHOT:
        return [job.shot]
    if subject == filter_pb2.USER:
        return [job.user]
    if subject == filter_pb2.SERVICE_NAME:
        return [s for layer in job.layers for s in layer.services]
    if subject == filter_pb2.PRIORITY:
        return [str(job.priority)]
    if subject == filter_pb2.FACILITY:
        return [job.facility]
    return [layer.name for layer in job.layers]


def _matches(m: Matcher, job: Job) -> bool:
    values = _subject(job, m.subject)
    text = m.input
    checks = {
        filter_pb2.CONTAINS: lambda v: text in v,
        filter_pb2.DOES_NOT_CONTAIN: lambda v: text not in v,
        filter_pb2.IS: lambda v: v == text,
        filter_pb2.IS_NOT: lambda v: v != text,
        filter_pb2.REGEX: lambda v: re.search(text, v) is not None,
        filter_pb2.BEGINS_WITH: lambda v: v.startswith(text),
        filter_pb2.ENDS_WITH: lambda v: v.endswith(text),
    }
    check = checks.get(m.type, lambda v: False)
    return any(check(v) for v in values)


def filter_matches(flt: Filter, job: Job) -> bool:
    if not flt.matchers:
        return False
    results = [_matches(m, job) for m in flt.matchers]
    return all(results) if flt.type == filter_pb2.MATCH_ALL else any(results)


def run_filters(farm: Farm, job: Job, only: Filter | None = None) -> None:
    """Run the enabled filters of the job's show in order; caller holds the lock."""
    filters = [only] if only is not None else sorted(job.show.filters, key=lambda f: f.order)
    for flt in filters:
        if (only is None and not flt.enabled) or not filter_matches(flt, job):
            continue
        stop = False
        for action in flt.actions:
            stop = _apply(farm, job, action.type, action) or stop
        if stop:
            break


def _apply(farm: Farm, job: Job, kind: int, action: Action) -> bool:
    state = farm.state
    if kind == filter_pb2.PAUSE_JOB:
        farm.pause(job, action.boolean_value or action.value_type == filter_pb2.NONE_TYPE)
    elif kind == filter_pb2.MOVE_JOB_TO_GROUP and action.group_value in state.groups:
        farm.move_job(job, state.groups[action.group_value])
    elif kind == filter_pb2.SET_JOB_PRIORITY:
        job.priority = action.integer_value
    elif kind == filter_pb2.SET_JOB_MIN_CORES:
        job.min_cores = action.float_value
    elif kind == filter_pb2.SET_JOB_MAX_CORES:
        job.max_cores = action.float_value
    elif kind == filter_pb2.STOP_PROCESSING:
        return True
    else:
        _apply_layers(job, kind, action)
    state.touch_job(job)
    state.dispatch_dirty = True
    state.order_dirty = True
    state.reindex()
    return False


def _apply_layers(job: Job, kind: int, action: Action) -> None:
    render = {
        filter_pb2.SET_ALL_RENDER_LAYER_TAGS,
        filter_pb2.SET_ALL_RENDER_LAYER_MEMORY,
        filter_pb2.SET_ALL_RENDER_LAYER_CORES,
        filter_pb2.SET_ALL_RENDER_LAYER_MIN_CORES,
        filter_pb2.SET_ALL_RENDER_LAYER_MAX_CORES,
    }
    util = {
        filter_pb2.SET_ALL_UTIL_LAYER_TAGS,
        filter_pb2.SET_ALL_UTIL_LAYER_MEMORY,
        filter_pb2.SET_ALL_UTIL_LAYER_MIN_CORES,
        filter_pb2.SET_ALL_UTIL_LAYER_MAX_CORES,
    }
    wanted = job_pb2.RENDER if kind in render else job_pb2.UTIL if kind in util else job_pb2.PRE
    name = filter_pb2.ActionType.Name(kind)
    for layer in job.layers:
        if layer.type != wanted:
            continue
        if name.endswith("_TAGS"):
            layer.tags = [t.strip() for t in action.string_value.split("|") if t.strip()]
        elif name.endswith("_MEMORY"):
            layer.min_memory = action.integer_value
        elif name.endswith("_MAX_CORES"):
            layer.max_cores = action.float_value
        elif name.endswith("_CORES"):
            layer.min_cores = action.float_value
        layer.cache = None
