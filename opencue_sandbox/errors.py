"""Errors raised by the farm model, carrying the gRPC status Cuebot would answer with.

The servicers translate these into ``context.abort`` calls; keeping the status in the
exception lets the model decide the code once instead of every servicer guessing.
"""

from __future__ import annotations

import grpc

EMPTY_RESULT = "Incorrect result size: expected 1, actual 0"
# What Cuebot's interceptor turns an uncaught EmptyResultDataAccessException into.
UNCAUGHT_EMPTY_RESULT = (
    "org.springframework.dao.EmptyResultDataAccessException: " + EMPTY_RESULT + "\n" + EMPTY_RESULT
)
JOB_DATA_MISSING = "Failed to find job data"
FINISHED_READONLY = "Finished jobs are readonly"


class FarmError(Exception):
    """A failure with the status code and text Cuebot would send."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Missing(FarmError):
    """An id or name that matches nothing; servicers decide how Cuebot reports it."""

    def __init__(self, what: str = "") -> None:
        super().__init__(grpc.StatusCode.NOT_FOUND, EMPTY_RESULT)
        self.what = what


def internal(message: str) -> FarmError:
    return FarmError(grpc.StatusCode.INTERNAL, message)


def invalid(message: str) -> FarmError:
    return FarmError(grpc.StatusCode.INVALID_ARGUMENT, message)


def readonly() -> FarmError:
    return FarmError(grpc.StatusCode.FAILED_PRECONDITION, FINISHED_READONLY)
