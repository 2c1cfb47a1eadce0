# -*- test-case-name: tests.test_api -*-
"""
Writing JSON answers onto a Twisted request, in one place.

Every layer (edge, guard, API) answers through these helpers so that the headers and
the error body are the same whoever produced them.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web.iweb import IRequest

from opencue_gw.context import context_of
from opencue_gw.errors import GatewayError

__all__ = ["JSON_CONTENT_TYPE", "finish_error", "set_json_headers"]

JSON_CONTENT_TYPE = b"application/json"


def set_json_headers(request: IRequest, status: int, headers: Mapping[str, str] = {}) -> None:
    """Status, content type and any extra headers for a JSON answer."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    for name, value in headers.items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))


def error_bytes(request: IRequest, error: GatewayError) -> bytes:
    """Set the headers for C{error}, note it on the request context, return the body."""
    ctx = context_of(request)
    if ctx is not None:
        ctx.grpc_code = error.code_name
        ctx.error = error.message
        if error.upstream:
            ctx.upstream_error = error.code_name
    set_json_headers(request, error.http_status, error.headers)
    body = error.body()
    # A length, not chunked framing, as Go's net/http sends for a small answer.
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def finish_error(request: IRequest, error: GatewayError) -> None:
    """Answer C{error} and finish the request, unless the client already went away."""
    body = error_bytes(request, error)
    if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
        return
    request.write(body)
    request.finish()
