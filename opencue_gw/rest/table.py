# -*- test-case-name: tests.test_resources -*-
"""
The resource-style routes under C{/api/v1/}: every one, as data.

Each entry says which RPC answers it and where its path and query (or body) parameters
land in the request; L{opencue_gw.rest.handler} serves them all the same way and
L{opencue_gw.openapi} describes them from the same entries, so adding a route here is
the whole change.
"""

from __future__ import annotations

from collections.abc import Mapping

from opencue_gw.jobs.form import JOB_DESCRIPTION, BodyForm
from opencue_gw.rest.spec import Lookup, Param, Route

__all__ = ["BODY_FORMS", "ROUTES"]

_JOB = "/job.JobInterface/"
_FRAME = "/job.FrameInterface/"
_LAYER = "/job.LayerInterface/"
_HOST = "/host.HostInterface/"
_SHOW = "/show.ShowInterface/"


def _frame_filters(criteria: str, *, by_layer: bool = True) -> tuple[Param, ...]:
    """
    The frame search parameters, into the C{FrameSearchCriteria} at C{criteria}
    (a layer's own frames have no use for a layer filter).
    """
    state = Param(
        "state",
        f"{criteria}.states.frame_states",
        "Frame state names (WAITING, RUNNING, DEAD, ...); repeat or comma-separate.",
    )
    layer = Param("layer", f"{criteria}.layers", "Layer names; repeat or comma-separate.")
    frames = Param("range", f"{criteria}.frame_range", "Frame range such as 1-100 or 1-100x5.")
    return (state, layer, frames) if by_layer else (state, frames)


_JOB_FILTERS = (
    Param("user", "r.users", "Owners of the jobs; repeat or comma-separate."),
    Param("name", "r.jobs", "Exact job names; repeat or comma-separate."),
    Param("match", "r.substr", "Substrings of the job name; repeat or comma-separate."),
    Param("include_finished", "r.include_finished", "Also list finished jobs (default false)."),
)

_REASON = Param("reason", "reason", "Why, recorded by Cuebot.")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/shows", _SHOW + "GetShows", "List shows.", items="shows.shows"),
    Route(
        "GET",
        "/api/v1/shows/{show}",
        _SHOW + "FindShow",
        "One show, by name.",
        path_params={"show": "name"},
        unwrap="show",
    ),
    Route(
        "GET",
        "/api/v1/shows/{show}/jobs",
        _JOB + "GetJobs",
        "Jobs of a show (an unknown show has none).",
        path_params={"show": "r.shows"},
        params=_JOB_FILTERS,
        items="jobs.jobs",
    ),
    Route(
        "GET",
        "/api/v1/shows/{show}/groups",
        _SHOW + "GetGroups",
        "Groups of a show, by show name.",
        path_params={"show": Lookup(_SHOW + "FindShow", "name", "show", "show")},
        items="groups.groups",
    ),
    Route(
        "GET",
        "/api/v1/jobs",
        _JOB + "GetJobs",
        "Search jobs (unfinished ones unless include_finished).",
        params=(Param("show", "r.shows", "Show names; repeat or comma-separate."), *_JOB_FILTERS),
        items="jobs.jobs",
    ),
    Route(
        "POST",
        "/api/v1/jobs",
        _JOB + "LaunchSpecAndWait",
        "Submit a job, as a JSON job description or as OpenCue job-spec XML; answers the "
        "launched jobs (with ?dry_run=true, a description's XML, launching nothing).",
        params=(Param("spec", "spec", "The job spec XML.", required=True),),
        unwrap="jobs",
    ),
    Route(
        "GET",
        "/api/v1/jobs/{id}",
        _JOB + "GetJob",
        "One job, by id.",
        path_params={"id": "id"},
        unwrap="job",
    ),
    Route(
        "GET",
        "/api/v1/jobs/{id}/layers",
        _JOB + "GetLayers",
        "Layers of a job.",
        path_params={"id": "job.id"},
        items="layers.layers",
    ),
    Route(
        "GET",
        "/api/v1/jobs/{id}/frames",
        _JOB + "GetFrames",
        "Frames of a job, filtered and paged by Cuebot.",
        path_params={"id": "job.id"},
        params=_frame_filters("req"),
        items="frames.frames",
        upstream_paging="req",
    ),
    Route(
        "GET",
        "/api/v1/jobs/{id}/comments",
        _JOB + "GetComments",
        "Comments on a job.",
        path_params={"id": "job.id"},
        items="comments.comments",
    ),
    Route(
        "POST",
        "/api/v1/jobs/{id}/kill",
        _JOB + "Kill",
        "Kill a job; the token's subject is recorded as who did it.",
        path_params={"id": "job.id"},
        params=(_REASON,),
        caller="username",
    ),
    Route(
        "POST",
        "/api/v1/jobs/{id}/pause",
        _JOB + "Pause",
        "Pause a job.",
        path_params={"id": "job.id"},
    ),
    Route(
        "POST",
        "/api/v1/jobs/{id}/resume",
        _JOB + "Resume",
        "Resume a paused job.",
        path_params={"id": "job.id"},
    ),
    Route(
        "POST",
        "/api/v1/jobs/{id}/retry-frames",
        _JOB + "RetryFrames",
        "Retry the job's frames matching the filters (all of them when none is given).",
        path_params={"id": "job.id"},
        params=_frame_filters("req"),
    ),
    Route(
        "POST",
        "/api/v1/jobs/{id}/eat-frames",
        _JOB + "EatFrames",
        "Eat the job's frames matching the filters (all of them when none is given).",
        path_params={"id": "job.id"},
        params=_frame_filters("req"),
    ),
    Route(
        "GET",
        "/api/v1/frames/{id}",
        _FRAME + "GetFrame",
        "One frame, by id.",
        path_params={"id": "id"},
        unwrap="frame",
    ),
    Route(
        "POST",
        "/api/v1/frames/{id}/retry",
        _FRAME + "Retry",
        "Retry a frame.",
        path_params={"id": "frame.id"},
    ),
    Route(
        "POST",
        "/api/v1/frames/{id}/kill",
        _FRAME + "Kill",
        "Kill a running frame; the token's subject is recorded as who did it.",
        path_params={"id": "frame.id"},
        params=(_REASON,),
        caller="username",
    ),
    Route(
        "POST",
        "/api/v1/frames/{id}/eat",
        _FRAME + "Eat",
        "Eat a frame (mark it done without running it).",
        path_params={"id": "frame.id"},
    ),
    Route(
        "GET",
        "/api/v1/hosts",
        _HOST + "GetHosts",
        "Search hosts.",
        params=(
            Param("alloc", "r.allocs", "Allocation names; repeat or comma-separate."),
            Param("state", "r.states.state", "Hardware states (UP, DOWN, ...)."),
            Param("lock_state", "r.lock_states.state", "Lock states (OPEN, LOCKED, ...)."),
            Param("name", "r.hosts", "Exact host names; repeat or comma-separate."),
            Param("match", "r.substr", "Substrings of the host name."),
        ),
        items="hosts.hosts",
    ),
    Route(
        "GET",
        "/api/v1/hosts/{name}",
        _HOST + "FindHost",
        "One host, by name.",
        path_params={"name": "name"},
        unwrap="host",
    ),
    Route(
        "POST",
        "/api/v1/hosts/{id}/lock",
        _HOST + "Lock",
        "Lock a host: it takes no new frames.",
        path_params={"id": "host.id"},
    ),
    Route(
        "POST",
        "/api/v1/hosts/{id}/unlock",
        _HOST + "Unlock",
        "Unlock a host.",
        path_params={"id": "host.id"},
    ),
    Route(
        "POST",
        "/api/v1/hosts/{id}/reboot",
        _HOST + "Reboot",
        "Reboot a host.",
        path_params={"id": "host.id"},
    ),
    Route(
        "GET",
        "/api/v1/hosts/{id}/procs",
        _HOST + "GetProcs",
        "Processes (running frames) on a host, by host id.",
        path_params={"id": "host.id"},
        items="procs.procs",
    ),
    Route(
        "GET",
        "/api/v1/layers/{id}",
        _LAYER + "GetLayer",
        "One layer, by id.",
        path_params={"id": "id"},
        unwrap="layer",
    ),
    Route(
        "GET",
        "/api/v1/layers/{id}/frames",
        _LAYER + "GetFrames",
        "Frames of a layer, filtered and paged by Cuebot.",
        path_params={"id": "layer.id"},
        params=_frame_filters("s", by_layer=False),
        items="frames.frames",
        upstream_paging="s",
    ),
)

# Other shapes a POST route's body may take, by (method, path): each is turned into the
# route's own members (or answered at once) before the request is built.
BODY_FORMS: Mapping[tuple[str, str], BodyForm] = {("POST", "/api/v1/jobs"): JOB_DESCRIPTION}
