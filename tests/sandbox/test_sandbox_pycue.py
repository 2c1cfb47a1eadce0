"""The real OpenCue Python client (pycue) drives the sandbox as it would drive Cuebot."""

from __future__ import annotations

from collections.abc import Iterator

import opencue
import pytest

from opencue_sandbox import Sandbox


@pytest.fixture
def pycue(sandbox_fresh: Sandbox) -> Iterator[object]:
    """pycue pointed at the sandbox; its module-global channel is reset afterwards."""
    opencue.Cuebot.setHosts([sandbox_fresh.address])
    yield opencue
    opencue.Cuebot.closeChannel()
    opencue.Cuebot.Hosts = None


def test_pycue_connects_and_lists_shows(pycue: object) -> None:
    """pycue's connection test (GetSystemStats) passes and getShows lists the demo shows."""
    stats = opencue.api.getSystemStats()
    assert stats.booked_procs > 0
    names = {show.name() for show in opencue.api.getShows()}
    assert {"testing", "pipe", "demo"} <= names
    testing = opencue.api.findShow("testing")
    assert testing.data.show_stats.running_frames > 0


def test_pycue_job_layers_frames_and_kill(pycue: object) -> None:
    """findJob, getLayers and getFrames read a job; kill() finishes it."""
    jobs = opencue.api.getJobs(show=["testing"])
    assert jobs
    job = opencue.api.findJob(jobs[0].name())
    assert job.id() == jobs[0].id()
    layers = job.getLayers()
    assert [layer.name() for layer in layers][:2] == ["prep", "render"]
    frames = job.getFrames()
    assert len(frames) == job.data.job_stats.total_frames
    assert {f.layer() for f in frames} == {layer.name() for layer in layers}
    job.kill(reason="pycue test")
    assert opencue.api.getJob(job.id()).data.state == opencue.api.job_pb2.FINISHED
    with pytest.raises(opencue.exception.EntityNotFoundException):
        opencue.api.findJob(job.name())


def test_pycue_host_lock(pycue: object) -> None:
    """findHost and lock()/unlock() through pycue change the host's lock state."""
    name = opencue.api.getHosts()[0].name()
    host = opencue.api.findHost(name)
    host.lock()
    assert opencue.api.findHost(name).lockState() == opencue.api.host_pb2.LOCKED
    host.unlock()
    assert opencue.api.findHost(name).lockState() == opencue.api.host_pb2.OPEN


def test_pycue_unknown_show_raises_not_found(pycue: object) -> None:
    """pycue maps the sandbox's NOT_FOUND to its EntityNotFoundException."""
    with pytest.raises(opencue.exception.EntityNotFoundException):
        opencue.api.findShow("no_such_show")
