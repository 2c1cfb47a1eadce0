"""A Cuebot stand-in: a real gRPC server over a simulated, moving render farm.

Used by the gateway's ``--demo`` mode, by the test suite as the upstream and by the
benchmarks. ``start_sandbox`` is the in-process entry point.
"""

from opencue_sandbox.clock import ManualClock, WallClock
from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.server import Sandbox, start_sandbox

__all__ = ["ManualClock", "Sandbox", "SandboxConfig", "WallClock", "start_sandbox"]
