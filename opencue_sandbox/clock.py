"""The farm's clock: the wall clock, injectable so tests never wait on real time.

The clock only says what time it is. How fast simulated work progresses is a separate
number, ``SandboxConfig.speed``: at speed 10 a frame needing 300 s of work finishes 30 s
after it started, and its start and stop times are both real.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds, as the wall clock reads them."""
        ...


class WallClock:
    """The real time: every timestamp the farm hands out is one a client can trust."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A fake wall clock moved only by the caller, for deterministic tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when
