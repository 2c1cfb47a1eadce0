# -*- test-case-name: tests.integration.test_client -*-
"""
The typed helpers both clients offer, written once.

Each helper only describes its request (a L{Call}) and hands it to C{_one} (one
answer) or C{_all} (every item of a paged list); the asynchronous client's versions of
those return Deferreds, the synchronous client's return values, so a helper's result
type is the client's C{R}. Lists come back whole: the helpers walk C{nextPage} so a
script never has to know the paging scheme.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from opencue_gw.client.core import Call

__all__ = ["MAX_WAIT", "PAGE_SIZE", "FarmCalls", "events_call", "wait_call"]

R = TypeVar("R")
PAGE_SIZE = 1000
# One wait request asks for at most this long, below the gateway's default bound (1 h);
# a longer wait is several requests, so no proxy sees an hour-long silent request.
MAX_WAIT = 600.0

Names = str | Sequence[str] | None


def _names(value: Names) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _frame_filters(state: Names, layer: Names, frame_range: str | None) -> dict[str, Any]:
    """The query parameters that pick frames, shared by listing, retrying and eating."""
    return {"state": _names(state), "layer": _names(layer), "range": frame_range}


def events_call(
    show: Names = None, job: Names = None, types: Names = None, states: Names = None
) -> Call:
    """The event stream's request: C{GET /api/v1/events} with its filters."""
    params = {"show": _names(show), "job": _names(job), "types": _names(types)}
    params["states"] = _names(states)
    return Call.resource("GET", ["events"], params)


def wait_call(job_id: str, seconds: float) -> Call:
    """One wait for a job to finish, of at most C{seconds} (the gateway's own bound)."""
    return Call.resource(
        "GET", ["jobs", job_id, "wait"], {"until": "finished", "timeout": f"{seconds:g}"}
    )


class FarmCalls(abc.ABC, Generic[R]):
    """Helpers for the common calls; subclasses decide how a L{Call} is sent."""

    @abc.abstractmethod
    def _one(self, call: Call) -> R:
        """Send C{call}; the result is its decoded JSON answer."""

    @abc.abstractmethod
    def _all(self, call: Call) -> R:
        """Send the list route C{call} page by page; the result is every item."""

    # --- any RPC ---

    def call(self, rpc: str, body: Mapping[str, Any] | str | bytes | None = None) -> R:
        """Call any RPC (C{"job.JobInterface/GetJobs"}) with a JSON body; its reply."""
        return self._one(Call.rpc(rpc, body))

    # --- reads ---

    def shows(self) -> R:
        """Every show."""
        return self._all(Call.resource("GET", ["shows"]))

    def show(self, name: str) -> R:
        """One show by name."""
        return self._one(Call.resource("GET", ["shows", name]))

    def jobs(
        self,
        show: Names = None,
        *,
        user: Names = None,
        name: Names = None,
        match: Names = None,
        include_finished: bool = False,
    ) -> R:
        """Jobs matching the filters (unfinished ones unless C{include_finished})."""
        params = {
            "show": _names(show),
            "user": _names(user),
            "name": _names(name),
            "match": _names(match),
            "include_finished": include_finished or None,
        }
        return self._all(Call.resource("GET", ["jobs"], params))

    def job(self, job_id: str) -> R:
        """One job by id."""
        return self._one(Call.resource("GET", ["jobs", job_id]))

    def find_job(self, name: str) -> R:
        """One job by its full name; the reply is C{{"job": {...}}}."""
        return self._one(Call.rpc("job.JobInterface/FindJob", {"name": name}))

    def layers(self, job_id: str) -> R:
        """Layers of a job."""
        return self._all(Call.resource("GET", ["jobs", job_id, "layers"]))

    def frames(
        self,
        job_id: str,
        *,
        state: Names = None,
        layer: Names = None,
        frame_range: str | None = None,
    ) -> R:
        """Frames of a job, optionally by state names, layer names and frame range."""
        params = _frame_filters(state, layer, frame_range)
        return self._all(Call.resource("GET", ["jobs", job_id, "frames"], params))

    def frame(self, frame_id: str) -> R:
        """One frame by id."""
        return self._one(Call.resource("GET", ["frames", frame_id]))

    def layer(self, layer_id: str) -> R:
        """One layer by id."""
        return self._one(Call.resource("GET", ["layers", layer_id]))

    def comments(self, job_id: str) -> R:
        """Comments on a job."""
        return self._all(Call.resource("GET", ["jobs", job_id, "comments"]))

    def hosts(self, *, alloc: Names = None, state: Names = None, name: Names = None) -> R:
        """Hosts, optionally by allocation, hardware state and name."""
        params = {"alloc": _names(alloc), "state": _names(state), "name": _names(name)}
        return self._all(Call.resource("GET", ["hosts"], params))

    def host(self, name: str) -> R:
        """One host by name."""
        return self._one(Call.resource("GET", ["hosts", name]))

    def procs(self, host_id: str) -> R:
        """Processes running on a host (by host id)."""
        return self._all(Call.resource("GET", ["hosts", host_id, "procs"]))

    # --- changes (never retried unless the retry policy says so) ---

    def submit(self, spec: str) -> R:
        """Launch a job spec (XML); the reply is C{{"jobs": [...]}}."""
        return self._one(Call.resource("POST", ["jobs"], {"spec": spec}))

    def submit_job(self, description: Mapping[str, Any], *, dry_run: bool = False) -> R:
        """
        Launch a JSON job description (show, shot, user, name, layers, ...); the reply is
        C{{"jobs": [...]}}. With C{dry_run}, nothing is launched and the reply is the
        job-spec XML the gateway would send, C{{"spec": "<xml>"}}.
        """
        body = json.dumps(description).encode("utf-8")
        if dry_run:  # changes nothing, so it may be retried like a read
            return self._one(Call("POST", "/api/v1/jobs", (("dry_run", "true"),), body, True))
        return self._one(Call("POST", "/api/v1/jobs", (), body))

    def kill_job(self, job_id: str, reason: str | None = None) -> R:
        """Kill a job."""
        return self._one(Call.resource("POST", ["jobs", job_id, "kill"], {"reason": reason}))

    def pause_job(self, job_id: str) -> R:
        """Pause a job."""
        return self._one(Call.resource("POST", ["jobs", job_id, "pause"]))

    def resume_job(self, job_id: str) -> R:
        """Resume a job."""
        return self._one(Call.resource("POST", ["jobs", job_id, "resume"]))

    def retry_frames(
        self,
        job_id: str,
        *,
        state: Names = None,
        layer: Names = None,
        frame_range: str | None = None,
    ) -> R:
        """Retry a job's frames matching the filters (all frames when none is given)."""
        params = _frame_filters(state, layer, frame_range)
        return self._one(Call.resource("POST", ["jobs", job_id, "retry-frames"], params))

    def eat_frames(
        self,
        job_id: str,
        *,
        state: Names = None,
        layer: Names = None,
        frame_range: str | None = None,
    ) -> R:
        """Eat a job's frames matching the filters (all frames when none is given)."""
        params = _frame_filters(state, layer, frame_range)
        return self._one(Call.resource("POST", ["jobs", job_id, "eat-frames"], params))

    def retry_frame(self, frame_id: str) -> R:
        """Retry one frame."""
        return self._one(Call.resource("POST", ["frames", frame_id, "retry"]))

    def kill_frame(self, frame_id: str, reason: str | None = None) -> R:
        """Kill one running frame."""
        return self._one(Call.resource("POST", ["frames", frame_id, "kill"], {"reason": reason}))

    def eat_frame(self, frame_id: str) -> R:
        """Eat one frame."""
        return self._one(Call.resource("POST", ["frames", frame_id, "eat"]))

    def lock_host(self, host_id: str) -> R:
        """Lock a host."""
        return self._one(Call.resource("POST", ["hosts", host_id, "lock"]))

    def unlock_host(self, host_id: str) -> R:
        """Unlock a host."""
        return self._one(Call.resource("POST", ["hosts", host_id, "unlock"]))

    def reboot_host(self, host_id: str) -> R:
        """Reboot a host."""
        return self._one(Call.resource("POST", ["hosts", host_id, "reboot"]))
