"""Search criteria (frames, jobs, hosts, procs) applied the way Cuebot's *Search DAOs do.

Within one criterion the values are alternatives (OR); different criteria must all
hold (AND). An empty criterion does not filter.
"""

from __future__ import annotations

import re

from opencue_proto import host_pb2, job_pb2

from opencue_sandbox.errors import invalid
from opencue_sandbox.model import Frame, Host, Job, Proc

MAX_FRAME_PAGE = 1000
_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+))?(?:([xy:])(\d+))?$")


def parse_frame_range(spec: str) -> list[int]:
    """Expand an OpenCue frame range ("1-10", "1-10x2", "1-10y3", "1,5,9", "10-1")."""
    numbers: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        m = _RANGE.match(part)
        if m is None:
            raise invalid(f"invalid frame range: {spec!r}")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        op, step_text = m.group(3), m.group(4)
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise invalid(f"invalid frame range step: {spec!r}")
        direction = 1 if end >= start else -1
        seq = list(range(start, end + direction, direction))
        if op == "x":
            seq = seq[::step]
        elif op == "y":
            keep = set(seq[::step])
            seq = [n for n in seq if n not in keep]
        numbers.extend(seq)
    return numbers


def _number_range(spec: str) -> tuple[float, float]:
    """ "a-b", "gtN", "ltN" (Cuebot's memory/duration range syntax) as an interval."""
    text = spec.strip().lower()
    if text.startswith("gt"):
        return float(text[2:]), float("inf")
    if text.startswith("lt"):
        return float("-inf"), float(text[2:])
    if "-" in text:
        low, high = text.split("-", 1)
        return float(low), float(high)
    value = float(text)
    return value, value


def page_bounds(page: int, limit: int, cap: int) -> tuple[int, int]:
    """Cuebot's FrameSearch: limit <=0 or >= cap becomes cap; page defaults to 1."""
    if limit <= 0 or limit >= cap:
        limit = cap
    if page <= 0:
        page = 1
    offset = (page - 1) * limit
    return offset, offset + limit


def select_frames(
    frames: list[Frame], r: job_pb2.FrameSearchCriteria, now: int, cap: int
) -> list[Frame]:
    """Filter, order (dispatch order, then layer) and page ``frames``."""
    chosen = _filter_frames(frames, r, now)
    chosen.sort(key=lambda f: (f.dispatch_order, f.layer.index, f.number))
    start, stop = page_bounds(r.page, r.limit, cap)
    return chosen[start:stop]


def filter_frames(frames: list[Frame], r: job_pb2.FrameSearchCriteria, now: int) -> list[Frame]:
    """Filtering without paging, for the bulk mutations (retry, kill, eat...)."""
    chosen = _filter_frames(frames, r, now)
    chosen.sort(key=lambda f: (f.dispatch_order, f.layer.index, f.number))
    return chosen


def _filter_frames(frames: list[Frame], r: job_pb2.FrameSearchCriteria, now: int) -> list[Frame]:
    result = frames
    if r.ids:
        ids = set(r.ids)
        result = [f for f in result if f.id in ids]
    if r.frames:
        names = set(r.frames)
        result = [f for f in result if f.name in names]
    if r.layers:
        layers = set(r.layers)
        result = [f for f in result if f.layer.name in layers]
    if r.HasField("states") and r.states.frame_states:
        states = set(r.states.frame_states)
        result = [f for f in result if f.state in states]
    if r.frame_range:
        wanted = set(parse_frame_range(r.frame_range))
        result = [f for f in result if f.number in wanted]
    if r.memory_range:
        low, high = _number_range(r.memory_range)
        kb = 1024 * 1024
        result = [f for f in result if low * kb <= max(f.max_rss, f.used_memory) <= high * kb]
    if r.duration_range:
        low, high = _number_range(r.duration_range)

        def hours(f: Frame) -> float:
            if not f.start_time:
                return 0.0
            return ((f.stop_time or now) - f.start_time) / 3600.0

        result = [f for f in result if low <= hours(f) <= high]
    if result is frames:
        result = list(frames)
    return result


def match_jobs(jobs: list[Job], r: job_pb2.JobSearchCriteria) -> list[Job]:
    result = jobs if r.include_finished else [j for j in jobs if not j.finished]
    if r.ids:
        ids = set(r.ids)
        result = [j for j in result if j.id in ids]
    if r.jobs:
        names = set(r.jobs)
        result = [j for j in result if j.name in names]
    if r.regex:
        patterns = [re.compile(p) for p in r.regex]
        result = [j for j in result if any(p.search(j.name) for p in patterns)]
    if r.substr:
        result = [j for j in result if any(s in j.name for s in r.substr)]
    if r.users:
        users = set(r.users)
        result = [j for j in result if j.user in users]
    if r.shots:
        shots = set(r.shots)
        result = [j for j in result if j.shot in shots]
    if r.shows:
        shows = set(r.shows)
        result = [j for j in result if j.show.name in shows]
    return sorted(result, key=lambda j: j.name)


def match_hosts(hosts: list[Host], r: host_pb2.HostSearchCriteria) -> list[Host]:
    result = hosts
    if r.hosts:
        names = set(r.hosts)
        result = [h for h in result if h.name in names]
    if r.ids:
        ids = set(r.ids)
        result = [h for h in result if h.id in ids]
    if r.regex:
        patterns = [re.compile(p) for p in r.regex]
        result = [h for h in result if any(p.search(h.name) for p in patterns)]
    if r.substr:
        result = [h for h in result if any(s in h.name for s in r.substr)]
    if r.allocs:
        allocs = set(r.allocs)
        result = [h for h in result if h.alloc.name in allocs]
    if r.HasField("states") and r.states.state:
        states = set(r.states.state)
        result = [h for h in result if h.state in states]
    if r.HasField("lock_states") and r.lock_states.state:
        locks = set(r.lock_states.state)
        result = [h for h in result if h.lock_state in locks]
    return sorted(result, key=lambda h: h.name)


def match_procs(procs: list[Proc], r: host_pb2.ProcSearchCriteria, now: int) -> list[Proc]:
    result = procs
    if r.hosts:
        names = set(r.hosts)
        result = [p for p in result if p.host.name in names]
    if r.jobs:
        names = set(r.jobs)
        result = [p for p in result if p.frame.job.name in names]
    if r.layers:
        names = set(r.layers)
        result = [p for p in result if p.frame.layer.name in names]
    if r.shows:
        names = set(r.shows)
        result = [p for p in result if p.frame.job.show.name in names]
    if r.allocs:
        names = set(r.allocs)
        result = [p for p in result if p.host.alloc.name in names]
    for rng in r.memory_range:
        result = [p for p in result if rng.min <= p.used_memory <= rng.max]
    for gt in r.memory_greater_than:
        result = [p for p in result if p.used_memory > gt.value]
    for lt in r.memory_less_than:
        result = [p for p in result if p.used_memory < lt.value]
    for rng in r.duration_range:
        result = [p for p in result if rng.min <= now - p.booked_time <= rng.max]
    result = sorted(result, key=lambda p: (p.host.name, p.booked_time, p.id))
    if r.first_result > 0:
        result = result[r.first_result :]
    if r.max_results and r.max_results[0] > 0:
        result = result[: r.max_results[0]]
    return result
