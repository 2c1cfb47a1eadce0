# -*- test-case-name: tests.test_edge -*-
"""
What the gateway learns about one request as it passes through the layers.

The edge creates it, the guard adds the caller, the API adds the RPC and the gRPC
outcome, and the access log reads it all once the response is finished. It rides on
the request as a component so each layer stays ignorant of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.iweb import IRequest
from zope.interface import Interface

from opencue_gw.auth import Identity

__all__ = ["IRequestContext", "RequestContext", "context_of", "request_id_of"]


class IRequestContext(Interface):
    """Marker interface under which L{RequestContext} is stored on a request."""


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


def context_of(request: IRequest) -> RequestContext | None:
    """The request's context, or C{None} when it did not come through the edge."""
    get = getattr(request, "getComponent", None)
    if get is None:
        return None
    ctx = get(IRequestContext)
    return ctx if isinstance(ctx, RequestContext) else None


def request_id_of(request: IRequest) -> str | None:
    """The request id, for log events that must name the request they are about."""
    ctx = context_of(request)
    return ctx.request_id if ctx is not None else None
