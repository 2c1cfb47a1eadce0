"""
Tests for L{opencue_gw.audit}: what a record holds, which calls are recorded, and that a
failing audit log never costs a client its answer. Through the real gateway tree in
front of the scripted Cuebot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_twisted
from opencue_proto import job_pb2
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, LogLevel, globalLogPublisher

from opencue_gw.audit import AuditLog, AuditLogService, targets_of

from gwtest import GatewayHarness, token
from upstreams import Script, ScriptedCuebot

KILL = {"job": {"id": "job-0042", "name": "testing-sh01-lighting"}}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    """Every log event emitted during the test."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def audited_gateway(scripted: ScriptedCuebot, path: Path | str) -> GatewayHarness:
    return GatewayHarness(scripted.address, options={"audit-log": str(path)})


@pytest_twisted.ensureDeferred
async def test_kill_is_audited_with_target_and_outcome(
    scripted: ScriptedCuebot, tmp_path: Path
) -> None:
    """An admin's Kill writes one line: who, from where, which job, request id, OK."""
    path = tmp_path / "audit.log"
    gateway = audited_gateway(scripted, path)
    before = time.time()
    try:
        reply = await gateway.post(
            "/job.JobInterface/Kill",
            KILL,
            auth=f"Bearer {token(sub='ada', role='admin')}",
            headers={"X-Request-Id": "req-kill-1"},
        )
    finally:
        gateway.close()
    assert reply.status == 200, reply.body
    [line] = lines(path)
    assert before - 1 <= line["epoch"] <= time.time() + 1
    assert (
        line["time"]
        == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line["epoch"])) + (line["time"][19:])
    )
    assert line["time"].endswith("Z")
    assert {k: line[k] for k in ("sub", "role", "request_id", "method", "outcome")} == {
        "sub": "ada",
        "role": "admin",
        "request_id": "req-kill-1",
        "method": "job.JobInterface/Kill",
        "outcome": "OK",
    }
    assert line["targets"] == [
        {"type": "job.Job", "id": "job-0042", "name": "testing-sh01-lighting"}
    ]
    assert "client" in line
    assert "policy_roles" not in line


@pytest_twisted.ensureDeferred
async def test_failed_mutation_is_audited_with_its_code(
    scripted: ScriptedCuebot, tmp_path: Path
) -> None:
    """A Kill Cuebot answers NOT_FOUND is audited as NOT_FOUND; reads are not audited."""
    scripted.scripts["/job.JobInterface/Kill"] = Script(
        code=grpc.StatusCode.NOT_FOUND, details="no such job"
    )
    path = tmp_path / "audit.log"
    gateway = audited_gateway(scripted, path)
    try:
        read = await gateway.post("/job.JobInterface/GetJobs")
        kill = await gateway.post("/job.JobInterface/Kill", KILL)
    finally:
        gateway.close()
    assert (read.status, kill.status) == (200, 404)
    [line] = lines(path)
    assert (line["method"], line["outcome"]) == ("job.JobInterface/Kill", "NOT_FOUND")


def test_targets_found_anywhere_and_capped() -> None:
    """Ids are found in nested and repeated messages; the list stops at the cap and says so."""
    seq = job_pb2.JobSeq(jobs=[job_pb2.Job(id=f"j{i}", name=f"n{i}") for i in range(60)])
    targets, truncated = targets_of(seq)
    assert len(targets) == 50 and truncated
    assert targets[0] == {"type": "job.Job", "id": "j0", "name": "n0"}
    layer = job_pb2.LayerSetTagsRequest(layer=job_pb2.Layer(id="l1", name="render"), tags=["x"])
    assert targets_of(layer) == ([{"type": "job.Layer", "id": "l1", "name": "render"}], False)
    assert targets_of(job_pb2.JobFindJobRequest(name="not-a-reference")) == ([], False)


def criticals(events: list[LogEvent], path: str) -> list[LogEvent]:
    return [e for e in events if e.get("log_level") == LogLevel.critical and e.get("path") == path]


@pytest_twisted.ensureDeferred
async def test_write_failure_answers_and_logs_loudly(
    scripted: ScriptedCuebot, logged: list[LogEvent]
) -> None:
    """A full disk (/dev/full) loses the record, logs it as critical, and the Kill still answers."""
    gateway = audited_gateway(scripted, "/dev/full")
    try:
        first = await gateway.post("/job.JobInterface/Kill", KILL)
        second = await gateway.post("/job.JobInterface/Kill", KILL)
    finally:
        gateway.close()
    assert (first.status, second.status) == (200, 200)
    assert len(scripted.seen) == 2
    failures = criticals(logged, "/dev/full")
    assert len(failures) == 2
    assert "Cannot write the audit log" in failures[0]["log_format"]


@pytest_twisted.ensureDeferred
async def test_directory_removed_after_start(
    scripted: ScriptedCuebot, tmp_path: Path, logged: list[LogEvent]
) -> None:
    """If the log's directory disappears after start-up, requests are answered and it is logged."""
    directory = tmp_path / "audit"
    directory.mkdir()
    path = directory / "audit.log"
    gateway = audited_gateway(scripted, path)
    shutil.rmtree(directory)
    try:
        reply = await gateway.post("/job.JobInterface/Kill", KILL)
    finally:
        gateway.close()
    assert reply.status == 200
    assert not path.exists()
    opened = criticals(logged, str(path))
    assert opened and "Cannot open the audit log" in opened[0]["log_format"]


@pytest_twisted.ensureDeferred
async def test_sighup_reopens_for_logrotate(tmp_path: Path) -> None:
    """After logrotate renames the file, SIGHUP makes the next record start a new file."""
    path = tmp_path / "audit.log"
    audit = AuditLog(str(path), reactor)
    service = AuditLogService(audit, reactor)
    before = signal.getsignal(signal.SIGHUP)
    service.startService()
    try:
        audit.write({"n": 1})
        path.rename(tmp_path / "audit.log.1")
        os.kill(os.getpid(), signal.SIGHUP)
        await deferLater(reactor, 0.05, lambda: None)
        audit.write({"n": 2})
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) is before
    assert lines(tmp_path / "audit.log.1") == [{"n": 1}]
    assert lines(path) == [{"n": 2}]
