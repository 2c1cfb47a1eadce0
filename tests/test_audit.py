"""
Tests for L{opencue_gw.auth.audit}: what a record holds, which calls are recorded, and that a
failing audit log never costs a client its answer. Through the real gateway tree in
front of a fake upstream, synchronously.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opencue_proto import job_pb2
from twisted.logger import LogEvent, LogLevel, globalLogPublisher

from opencue_gw.auth.audit import AuditLog, AuditLogService, targets_of
from opencue_gw.errors import GatewayError
from opencue_gw.testing import FakeReactor, FakeUpstream, GatewayUnderTest

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


@pytest.fixture
def audited() -> Iterator[Callable[..., GatewayUnderTest]]:
    """Makes gateways auditing to a path (closing their logs after the test)."""
    made: list[GatewayUnderTest] = []

    def make(path: Path | str, upstream: FakeUpstream | None = None) -> GatewayUnderTest:
        gateway = GatewayUnderTest(
            upstream or FakeUpstream(answer_all=True), options={"audit-log": str(path)}
        )
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


def test_kill_is_audited_with_target_and_outcome(
    tmp_path: Path, audited: Callable[..., GatewayUnderTest]
) -> None:
    """An admin's Kill writes one line: who, from where, which job, request id, OK."""
    path = tmp_path / "audit.log"
    gateway = audited(path)
    gateway.clock.advance(0.25)
    reply = gateway.post(
        "/job.JobInterface/Kill",
        KILL,
        auth=f"Bearer {gateway.token(sub='ada', role='admin')}",
        headers={"X-Request-Id": "req-kill-1"},
    )
    assert reply.status == 200, reply.body
    [line] = lines(path)
    assert line["epoch"] == round(gateway.clock.seconds(), 3)
    assert line["time"] == "2026-01-01T00:00:00.250Z"
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


def test_failed_mutation_is_audited_with_its_code(
    tmp_path: Path, audited: Callable[..., GatewayUnderTest]
) -> None:
    """A Kill Cuebot answers NOT_FOUND is audited as NOT_FOUND; reads are not audited."""

    def no_such_job(request: object) -> object:
        raise GatewayError(5, "no such job", upstream=True)

    path = tmp_path / "audit.log"
    gateway = audited(path, FakeUpstream({"/job.JobInterface/Kill": no_such_job}, answer_all=True))
    read = gateway.post("/job.JobInterface/GetJobs")
    kill = gateway.post("/job.JobInterface/Kill", KILL)
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


def test_write_failure_answers_and_logs_loudly(
    logged: list[LogEvent], audited: Callable[..., GatewayUnderTest]
) -> None:
    """A full disk (/dev/full) loses the record, logs it as critical, and the Kill still answers."""
    gateway = audited("/dev/full")
    first = gateway.post("/job.JobInterface/Kill", KILL)
    second = gateway.post("/job.JobInterface/Kill", KILL)
    assert (first.status, second.status) == (200, 200)
    assert len(gateway.upstream.calls) == 2
    failures = criticals(logged, "/dev/full")
    assert len(failures) == 2
    assert "Cannot write the audit log" in failures[0]["log_format"]


def test_directory_removed_after_start(
    tmp_path: Path, logged: list[LogEvent], audited: Callable[..., GatewayUnderTest]
) -> None:
    """If the log's directory disappears after start-up, requests are answered and it is logged."""
    directory = tmp_path / "audit"
    directory.mkdir()
    path = directory / "audit.log"
    gateway = audited(path)
    shutil.rmtree(directory)
    reply = gateway.post("/job.JobInterface/Kill", KILL)
    assert reply.status == 200
    assert not path.exists()
    opened = criticals(logged, str(path))
    assert opened and "Cannot open the audit log" in opened[0]["log_format"]


def test_sighup_reopens_for_logrotate(tmp_path: Path) -> None:
    """After logrotate renames the file, SIGHUP makes the next record start a new file."""
    path = tmp_path / "audit.log"
    reactor = FakeReactor()
    audit = AuditLog(str(path), reactor)
    service = AuditLogService(audit, reactor)
    before = signal.getsignal(signal.SIGHUP)
    service.startService()
    try:
        audit.write({"n": 1})
        path.rename(tmp_path / "audit.log.1")
        # The handler runs before the next statement and hands the reopen to the reactor,
        # which (being fake) runs it at once.
        os.kill(os.getpid(), signal.SIGHUP)
        audit.write({"n": 2})
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGHUP) is before
    assert lines(tmp_path / "audit.log.1") == [{"n": 1}]
    assert lines(path) == [{"n": 2}]


def test_kill_whose_client_left_is_audited_with_its_real_outcome(
    tmp_path: Path, audited: Callable[..., GatewayUnderTest]
) -> None:
    """A Kill whose client disconnected is audited with Cuebot's answer, not CANCELLED."""
    path = tmp_path / "audit.log"
    gateway = audited(path, FakeUpstream())
    pending = gateway.send("POST", "/job.JobInterface/Kill", KILL)
    call = gateway.upstream.last
    pending.disconnect()
    call.succeed()
    [line] = lines(path)
    assert line["outcome"] == "OK"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (1, "unknown"),  # CANCELLED: the channel closed under it (shutdown's grace ended)
        (4, "unknown"),  # DEADLINE_EXCEEDED: Cuebot may still have done it
        (5, "NOT_FOUND"),
        (14, "UNAVAILABLE"),
    ],
)
def test_a_mutation_whose_outcome_nobody_knows_is_audited_unknown(
    tmp_path: Path, code: int, outcome: str
) -> None:
    """A Kill cut off by a closing channel or its deadline may have been done: "unknown"."""
    path = tmp_path / "audit.log"
    upstream = FakeUpstream()
    gw = GatewayUnderTest(upstream, audit_log=str(path))
    try:
        pending = gw.send("POST", "/job.JobInterface/Kill", KILL)
        upstream.calls[0].fail(code, "cut off")
        pending.answer()
    finally:
        gw.close()
    (record,) = lines(path)
    assert record["method"] == "job.JobInterface/Kill" and record["outcome"] == outcome
