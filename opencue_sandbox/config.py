"""Configuration of a sandbox run, shared by the CLI and the in-process API."""

from __future__ import annotations

from dataclasses import dataclass

from opencue_sandbox.clock import Clock

# Demo sizes used when a size option is None: small enough to start well under a second.
DEMO_JOBS = 20
DEMO_LAYERS_PER_JOB = 3
DEMO_FRAMES_PER_LAYER = 24
DEMO_HOSTS = 20


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    seed: int = 7
    # How many times faster than real simulated work progresses (0 freezes the work). It
    # never moves time: every timestamp the farm hands out is the clock's.
    speed: float = 1.0
    failure_rate: float = 0.05
    jobs: int | None = None
    layers_per_job: int | None = None
    frames_per_layer: int | None = None
    hosts: int | None = None
    clock: Clock | None = None
    max_workers: int = 16
    # Cuebot's FrameSearch caps a page at 1000 frames; benchmarks may raise it.
    frame_page_cap: int = 1000
    # Cuebot's frame.finished_jobs_readonly property (ServantUtil.attemptChange).
    finished_jobs_readonly: bool = True
    # Seconds of history (at real speed, ending now) the demo farm runs before serving, so
    # every frame state exists.
    warmup_seconds: float = 1800.0

    @property
    def n_jobs(self) -> int:
        return DEMO_JOBS if self.jobs is None else self.jobs

    @property
    def n_layers(self) -> int:
        return DEMO_LAYERS_PER_JOB if self.layers_per_job is None else self.layers_per_job

    @property
    def n_frames(self) -> int:
        return DEMO_FRAMES_PER_LAYER if self.frames_per_layer is None else self.frames_per_layer

    @property
    def n_hosts(self) -> int:
        return DEMO_HOSTS if self.hosts is None else self.hosts
