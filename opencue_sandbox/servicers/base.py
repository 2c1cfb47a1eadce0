"""Turning farm errors into gRPC statuses the way Cuebot's servants and interceptor do."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from opencue_sandbox.errors import (
    EMPTY_RESULT,
    JOB_DATA_MISSING,
    UNCAUGHT_EMPTY_RESULT,
    FarmError,
    Missing,
)
from opencue_sandbox.farm import Farm

log = logging.getLogger("opencue_sandbox")

F = TypeVar("F", bound=Callable[..., Any])

# How a servant reports an unknown id: Find/Get catch it as NOT_FOUND, ManageJob as
# INTERNAL "Failed to find job data", the rest let the interceptor make it INTERNAL.
_MISSING = {
    "not_found": (grpc.StatusCode.NOT_FOUND, EMPTY_RESULT),
    "job": (grpc.StatusCode.INTERNAL, JOB_DATA_MISSING),
    "internal": (grpc.StatusCode.INTERNAL, UNCAUGHT_EMPTY_RESULT),
}


def rpc(missing: str = "internal") -> Callable[[F], F]:
    """Wrap a servicer method so no exception escapes as grpc UNKNOWN."""
    code_for_missing = _MISSING[missing]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return fn(self, request, context)
            except Missing:
                context.abort(*code_for_missing)
            except FarmError as err:
                context.abort(err.code, err.message)
            except Exception as err:  # Cuebot's interceptor: anything uncaught is INTERNAL
                log.exception("sandbox servant failed")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}\n{err}")

        return wrapper  # type: ignore[return-value]

    return decorate


class Servant:
    """Common base: every servant holds the farm it answers from."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
