# -*- test-case-name: tests.test_api -*-
"""
Writing JSON answers onto a Twisted request, in one place.

The guard and every route answer through these helpers, so the headers, the framing
(a C{Content-Length}, as Go's net/http sends) and the error body are the same whoever
produced them.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from opencue_gw.errors import GatewayError
from opencue_gw.http.bodywriter import write_body
from opencue_gw.http.context import context_of

__all__ = [
    "JSON_CONTENT_TYPE",
    "error_bytes",
    "finish_error",
    "json_answer",
    "json_body",
    "set_json_headers",
]

JSON_CONTENT_TYPE = b"application/json"


def set_json_headers(request: IRequest, status: int, headers: Mapping[str, str] = {}) -> None:
    """Status, content type and any extra headers for a JSON answer."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    for name, value in headers.items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))


def json_answer(request: IRequest, body: bytes, status: int = 200) -> bytes:
    """A small JSON answer, with its length (Klein, unlike Twisted, would send it chunked)."""
    set_json_headers(request, status)
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def json_body(request: IRequest, body: bytes) -> bytes | Deferred[bytes]:
    """
    A 200 JSON answer: small bodies are returned for the route to write, large ones are
    streamed at the pace the client reads (L{write_body}).
    """
    return write_body(request, json_answer(request, body))


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
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


def finish_error(request: IRequest, error: GatewayError) -> None:
    """Answer C{error} and finish the request, unless the client already went away."""
    if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
        return
    if getattr(request, "startedWriting", False):
        # Part of an answer is out; a JSON error now would corrupt it. Cut it short.
        request.loseConnection()  # type: ignore[attr-defined]
        return
    body = error_bytes(request, error)
    request.write(body)
    request.finish()
