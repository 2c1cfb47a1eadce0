"""Clocks that drive simulated time, injectable so tests never wait on real time."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Simulated epoch seconds."""
        ...


class ScaledClock:
    """Wall-clock time scaled by ``speed`` from a fixed origin; ``speed=0`` freezes it."""

    def __init__(self, speed: float = 1.0, origin: float | None = None) -> None:
        self.speed = speed
        self.origin = time.time() if origin is None else origin
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self.origin + (time.monotonic() - self._t0) * self.speed


class ManualClock:
    """A clock moved only by the caller, for deterministic tests."""

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
