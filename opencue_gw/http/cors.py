# -*- test-case-name: tests.test_cors -*-
"""
Cross-origin access for browser clients that call the gateway directly.

CueWeb calls the gateway server-side and needs none of this; dashboards and tools in a
browser do. Off unless C{CORS_ORIGINS} lists origins. Preflights are answered before
authentication (browsers never send credentials on them); credentials are only allowed
for origins named in the list, never for C{*}.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.web.iweb import IRequest

from opencue_gw.errors import GatewayError
from opencue_gw.http.answers import finish_error

__all__ = ["DEFAULT_CORS_HEADERS", "CorsPolicy"]

DEFAULT_CORS_HEADERS = ("Authorization", "Content-Type", "Grpc-Timeout", "X-Request-ID")
_EXPOSED = "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
_METHODS = "GET, POST, OPTIONS"
_MAX_AGE = "600"


class CorsPolicy:
    """Which origins may call, and with which request headers."""

    def __init__(self, origins: Iterable[str], headers: Iterable[str] = DEFAULT_CORS_HEADERS):
        listed = [o.strip().rstrip("/") for o in origins if o.strip()]
        self.any_origin = "*" in listed
        self.origins = frozenset(o.lower() for o in listed if o != "*")
        self.headers = ", ".join(dict.fromkeys(h.strip() for h in headers if h.strip()))

    def _allowed(self, origin: str) -> str | None:
        """The value for Access-Control-Allow-Origin, or None if refused."""
        if origin.lower().rstrip("/") in self.origins:
            return origin
        if self.any_origin:
            return "*"
        return None

    def answer_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """
        The CORS headers for an answer to a request from C{origin}. Also used for answers
        written before the request reaches the edge (the raw 413), so a browser can read
        every error.
        """
        headers = [(b"vary", b"Origin")]
        allowed = self._allowed(origin.decode("latin-1")) if origin else None
        if allowed is None:
            return headers
        headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
        headers.append((b"access-control-expose-headers", _EXPOSED.encode("ascii")))
        if allowed != "*":
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def decorate(self, request: IRequest) -> None:
        """Add the CORS answer headers for an allowed origin to any response."""
        for name, value in self.answer_headers(request.getHeader(b"origin")):
            request.setHeader(name, value)

    def is_preflight(self, request: IRequest) -> bool:
        """An OPTIONS request carrying the CORS preflight headers."""
        return (
            request.method == b"OPTIONS"
            and request.getHeader(b"origin") is not None
            and request.getHeader(b"access-control-request-method") is not None
        )

    def answer_preflight(self, request: IRequest) -> None:
        """204 with what may be sent, or 403 JSON for an origin not on the list."""
        origin = (request.getHeader(b"origin") or b"").decode("latin-1")
        if self._allowed(origin) is None:
            finish_error(
                request, GatewayError.permission_denied(f"origin {origin[:100]!r} is not allowed")
            )
            return
        request.setResponseCode(204)
        request.setHeader(b"access-control-allow-methods", _METHODS.encode("ascii"))
        request.setHeader(b"access-control-allow-headers", self.headers.encode("latin-1"))
        request.setHeader(b"access-control-max-age", _MAX_AGE.encode("ascii"))
        request.setHeader(b"content-length", b"0")
        request.finish()
