# -*- test-case-name: tests.test_errors -*-
"""
The one place where failures become HTTP answers.

Every error a client sees has the body grpc-gateway v2 gives,
C{{"code": <grpc code>, "message": "...", "details": []}}, so that clients written
against the Go gateway (CueWeb shows the raw body to its users) keep working. The HTTP
status for a gRPC code follows grpc-gateway's C{HTTPStatusFromCode} exactly.

L{Code} names the gRPC codes; L{GatewayError}'s named constructors are the answers the
gateway gives of its own accord; L{error_for} is the single table that turns any
exception raised while serving a request into one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

__all__ = [
    "GRPC_CODE_NAMES",
    "Code",
    "GatewayError",
    "error_for",
    "http_status_for",
    "status_body",
]


class Code(IntEnum):
    """gRPC status codes (C{google.rpc.Code}), with the HTTP status grpc-gateway gives each."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http_status(self) -> int:
        """grpc-gateway's C{HTTPStatusFromCode} for this code."""
        return _HTTP_STATUS_FROM_CODE[self]


# grpc-gateway runtime/errors.go HTTPStatusFromCode.
_HTTP_STATUS_FROM_CODE: Mapping[int, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

GRPC_CODE_NAMES: Mapping[int, str] = {int(code): code.name for code in Code}

# RFC 6750 §3: the bare challenge when no token came, the error only when one did.
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def http_status_for(code: int) -> int:
    """
    Map a gRPC status code to the HTTP status grpc-gateway would answer with.

    Unknown codes are answered as 500, which is what grpc-gateway does for any code
    outside its table.
    """
    return _HTTP_STATUS_FROM_CODE.get(code, 500)


def status_body(code: int, message: str) -> bytes:
    """
    Serialise a C{google.rpc.Status} the way grpc-gateway's default error handler does.

    Compact, with C{details} always present, because protojson's EmitUnpopulated emits
    the empty list. The codec writes it, so error bodies escape text as answers do.
    """
    from opencue_gw.codec import encode_status

    return encode_status(code, message)


class GatewayError(Exception):
    """
    A failure that has a definite answer for the client.

    Raised by the gateway (bad JSON, bad token, unknown route) and by the upstream
    bridge (a gRPC status from Cuebot, C{upstream=True}). C{http_status} is derived from
    the gRPC code unless the gateway deliberately answers otherwise (405 for a wrong
    method, 429 for its own rate limit; see the README).
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
        upstream: bool = False,
    ) -> None:
        super().__init__(code, message)
        self.upstream = upstream
        self.code = code
        self.message = message
        self.http_status = http_status if http_status is not None else http_status_for(code)
        self.headers: Mapping[str, str] = dict(headers or {})

    # Named constructors: the answers the gateway gives of its own accord.

    @classmethod
    def invalid_argument(cls, message: str) -> GatewayError:
        """400: the request itself is wrong (bad JSON, bad parameter, bad header)."""
        return cls(Code.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str = "Not Found") -> GatewayError:
        """404: no such route, or (on C{/api/v1}) no such object."""
        return cls(Code.NOT_FOUND, message)

    @classmethod
    def method_not_allowed(cls, allowed: str) -> GatewayError:
        """405 with C{Allow}; grpc-gateway answers 501 here (README, differences)."""
        return cls(
            Code.UNIMPLEMENTED, "Method Not Allowed", http_status=405, headers={"Allow": allowed}
        )

    @classmethod
    def unauthenticated(cls, message: str, *, token_presented: bool = True) -> GatewayError:
        """401 with the bearer challenge; C{error="invalid_token"} only if a token came."""
        headers = _INVALID_TOKEN if token_presented else _CHALLENGE
        return cls(Code.UNAUTHENTICATED, message, headers=headers)

    @classmethod
    def permission_denied(cls, message: str) -> GatewayError:
        """403: the caller's role may not do this."""
        return cls(Code.PERMISSION_DENIED, message)

    @classmethod
    def rate_limited(cls, message: str, headers: Mapping[str, str]) -> GatewayError:
        """429 from the gateway's own limiter, with C{Retry-After} in C{headers}."""
        return cls(Code.RESOURCE_EXHAUSTED, message, http_status=429, headers=headers)

    @classmethod
    def unavailable(cls, message: str, *, retry_after: int | None = None) -> GatewayError:
        """503: overloaded, draining, or Cuebot not reachable."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return cls(Code.UNAVAILABLE, message, headers=headers)

    @classmethod
    def internal(cls, message: str = "internal gateway error") -> GatewayError:
        """500: a fault of the gateway's own; the details stay in the log."""
        return cls(Code.INTERNAL, message)

    @property
    def code_name(self) -> str:
        """The symbolic gRPC code, for log events."""
        return GRPC_CODE_NAMES.get(self.code, str(self.code))

    def body(self) -> bytes:
        """The JSON body the client receives."""
        return status_body(self.code, self.message)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


def error_for(failure: Failure) -> GatewayError | None:
    """
    The answer for a failure raised while serving a request: the one exception table.

    C{None} means the failure is a fault of the gateway's own; the caller logs it with
    its traceback and answers L{GatewayError.internal}. Routing errors come from werkzeug
    (through Klein), decode errors from the codec, login failures from twisted.cred, and
    cancellation from a client that went away (Klein cancels the handler's Deferred).
    """
    error = failure.value
    if isinstance(error, GatewayError):
        return error
    from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

    from opencue_gw.codec import RequestDecodeError

    if isinstance(error, RequestDecodeError):
        return GatewayError.invalid_argument(str(error))
    if isinstance(error, UnauthorizedLogin):
        return GatewayError.unauthenticated(getattr(error, "message", None) or "unauthorized")
    if isinstance(error, CancelledError):
        return GatewayError(Code.CANCELLED, "request cancelled")
    if isinstance(error, NotFound):
        return GatewayError.not_found()
    if isinstance(error, MethodNotAllowed):
        return GatewayError.method_not_allowed(", ".join(sorted(error.valid_methods or ["POST"])))
    if isinstance(error, HTTPException):
        return GatewayError(
            Code.INVALID_ARGUMENT, error.name or "Bad Request", http_status=error.code or 400
        )
    return None
