# -*- test-case-name: tests.test_errors -*-
"""
The one place where failures become HTTP answers.

Every error a client sees has the body grpc-gateway v2 gives,
C{{"code": <grpc code>, "message": "...", "details": []}}, so that clients written
against the Go gateway (CueWeb shows the raw body to its users) keep working. The HTTP
status for a gRPC code follows grpc-gateway's C{HTTPStatusFromCode} exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

from opencue_gw.jsoncodec import encode_status

__all__ = [
    "GRPC_CODE_NAMES",
    "GatewayError",
    "http_status_for",
    "status_body",
]

# grpc-gateway runtime/errors.go HTTPStatusFromCode.
_HTTP_STATUS_FROM_CODE: Mapping[int, int] = {
    0: 200,  # OK
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}

GRPC_CODE_NAMES: Mapping[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


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
    return encode_status(code, message)


class GatewayError(Exception):
    """
    A failure that has a definite answer for the client.

    Raised by the edge (bad JSON, bad token, unknown route) and by the upstream bridge
    (a gRPC status from Cuebot). C{http_status} is derived from the gRPC code unless the
    gateway deliberately answers otherwise (405 for a wrong method, see the README).
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

    @property
    def code_name(self) -> str:
        """The symbolic gRPC code, for log events."""
        return GRPC_CODE_NAMES.get(self.code, str(self.code))

    def body(self) -> bytes:
        """The JSON body the client receives."""
        return status_body(self.code, self.message)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"
