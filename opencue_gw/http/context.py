# -*- test-case-name: tests.test_edge -*-
"""
What the gateway learns about one request as it passes through the layers.

The guard creates it and adds the caller as soon as the token is verified, the API adds
the RPC and the gRPC outcome, and the access log reads it all once the response is
finished. It rides on the request so each layer stays ignorant of the others.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.web.iweb import IRequest

from opencue_gw.auth.bearer import Identity

if TYPE_CHECKING:
    from opencue_gw.ops.tracing import TraceContext

__all__ = [
    "RequestContext",
    "attach_context",
    "context_of",
    "new_request_id",
    "request_id_for",
    "request_id_of",
]


@dataclass
class RequestContext:
    """Per-request facts for logging, metrics and upstream metadata."""

    request_id: str
    started: float
    identity: Identity | None = None
    rpc: str | None = None
    grpc_code: str | None = None
    error: str | None = None
    upstream_error: str | None = None
    """The gRPC code name when Cuebot (not the gateway) answered with an error."""
    auth_failure: str | None = None
    """The reason key when the guard refused the request."""
    stale: bool = False
    """Answered from the stale-read store while Cuebot was unavailable."""
    facility: str = ""
    """The facility the request went to (its path prefix, or the default); "" if none."""
    trace: TraceContext | None = None
    """The W3C trace context Cuebot calls carry, and the request's span when exporting."""


# Accept a caller's id only if it is short and harmless to echo and log.
_OFFERED_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}\Z")
# This process's random prefix; a counter makes each id unique without a system call.
_ID_PREFIX = os.urandom(12).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """
    A request id unique across gateways and restarts: a random per-process prefix and a
    counter. Every answer the gateway gives carries one, including those written before
    a request reaches the guard (a head or body over the limits).
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def request_id_for(offered: bytes | None) -> str:
    """
    The caller's C{X-Request-ID} when it is short and harmless to echo and log, else a
    new one. The guard and the answers written before the guard both use this.
    """
    if offered and _OFFERED_ID.match(offered):
        return offered.decode("ascii")
    return new_request_id()


def attach_context(request: IRequest, ctx: RequestContext) -> None:
    """
    Put C{ctx} on C{request}. A plain attribute: looking a component up would build the
    interface's qualified name on each of the several reads a request makes.
    """
    request.gateway_context = ctx  # type: ignore[attr-defined]


def context_of(request: IRequest) -> RequestContext | None:
    """The request's context, or C{None} when it did not come through the guard."""
    return getattr(request, "gateway_context", None)


def request_id_of(request: IRequest) -> str | None:
    """The request id, for log events that must name the request they are about."""
    ctx = context_of(request)
    return ctx.request_id if ctx is not None else None
