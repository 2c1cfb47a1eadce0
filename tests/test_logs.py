"""Tests for L{opencue_gw.logs}: LOG_LEVEL, the filtering observer and JSON log lines."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import (
    LegacyLogObserverWrapper,
    LogEvent,
    Logger,
    LogLevel,
    globalLogPublisher,
)

from opencue_gw.logs import (
    GATEWAY_OBSERVER,
    enabled,
    json_observer,
    parse_log_level,
    set_log_level,
    twistd_log_options,
)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("debug", LogLevel.debug),
        ("INFO", LogLevel.info),
        ("Warn", LogLevel.warn),
        ("warning", LogLevel.warn),
        (" error ", LogLevel.error),
        ("CRITICAL", LogLevel.critical),
    ],
)
def test_parse_log_level(text: str, level: LogLevel) -> None:
    """Level names are accepted case-insensitively and with surrounding spaces."""
    assert parse_log_level(text) is level


@pytest.mark.parametrize("text", ["loud", "", "fatal", "trace", "10"])
def test_parse_log_level_rejects(text: str) -> None:
    """An unknown level is refused with a message listing the accepted ones."""
    with pytest.raises(ValueError) as info:
        parse_log_level(text)
    message = str(info.value)
    for name in ("debug", "info", "warn", "error", "critical"):
        assert name in message


@pytest.fixture
def published() -> Iterator[list[LogEvent]]:
    """Events reaching the global publisher from the test's own namespace."""
    seen: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if event.get("log_namespace") == "tests.test_logs":
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)
        set_log_level(LogLevel.info)


def test_warn_threshold_filters_info(published: list[LogEvent]) -> None:
    """At level warn an info event is dropped and a warn event reaches the global log."""
    log = Logger(namespace="tests.test_logs", observer=GATEWAY_OBSERVER)
    set_log_level(LogLevel.warn)
    log.info("quiet {n}", n=1)
    log.warn("loud {n}", n=2)
    assert [(e["log_level"], e["n"]) for e in published] == [(LogLevel.warn, 2)]


def test_default_info_threshold(published: list[LogEvent]) -> None:
    """At the default info level, info passes and debug does not."""
    log = Logger(namespace="tests.test_logs", observer=GATEWAY_OBSERVER)
    set_log_level(LogLevel.info)
    log.debug("hidden")
    log.info("shown")
    assert [e["log_format"] for e in published] == ["shown"]


def test_debug_threshold_lets_debug_through(published: list[LogEvent]) -> None:
    """Lowering the level to debug lets debug events through."""
    log = Logger(namespace="tests.test_logs", observer=GATEWAY_OBSERVER)
    set_log_level(LogLevel.debug)
    log.debug("now visible")
    assert [e["log_format"] for e in published] == ["now visible"]


@pytest.mark.parametrize(
    ("threshold", "shown"),
    [
        (LogLevel.debug, {LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error}),
        (LogLevel.info, {LogLevel.info, LogLevel.warn, LogLevel.error}),
        (LogLevel.warn, {LogLevel.warn, LogLevel.error}),
        (LogLevel.error, {LogLevel.error}),
    ],
)
def test_enabled_agrees_with_the_filter(
    published: list[LogEvent], threshold: LogLevel, shown: set[LogLevel]
) -> None:
    """C{enabled} answers exactly as the filter decides, so skipping an event loses none."""
    log = Logger(namespace="tests.test_logs", observer=GATEWAY_OBSERVER)
    set_log_level(threshold)
    levels = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error]
    for level in levels:
        log.emit(level, "at {level_name}", level_name=level.name)
    assert {e["log_level"] for e in published} == shown
    assert {level for level in levels if enabled(level)} == shown


def _json_lines(emit: Any) -> list[dict[str, Any]]:
    """Events logged by C{emit(observer)} through the JSON observer, parsed line by line."""
    buffer = io.StringIO()
    emit(json_observer(buffer))
    text = buffer.getvalue()
    assert "\x1e" not in text
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_observer_writes_one_json_object_per_line() -> None:
    """Each event is one line holding only what an operator reads, plus the named fields."""
    lines = _json_lines(
        lambda observer: Logger(namespace="opencue_gw.http.access", observer=observer).info(
            "{method} {path} {status}",
            method="POST",
            path="/x",
            status=200,
            request_id="r1",
            sub="alice",
        )
    )
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {
        "time",
        "level",
        "namespace",
        "message",
        "method",
        "path",
        "status",
        "request_id",
        "sub",
    }
    assert line["level"] == "info" and line["namespace"] == "opencue_gw.http.access"
    assert line["message"] == "POST /x 200"
    assert line["status"] == 200 and line["request_id"] == "r1" and line["sub"] == "alice"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["time"])


def test_json_failure_is_a_traceback_only_at_error_level() -> None:
    """A failure logged at error and above carries its traceback; below, one line."""

    def emit(observer: Any) -> None:
        log = Logger(namespace="tests.test_logs", observer=observer)
        for level in (LogLevel.critical, LogLevel.warn):
            try:
                raise ValueError("broken thing")
            except ValueError:
                log.failure("It failed {n}", n=1, level=level)

    critical, warn = _json_lines(emit)
    assert critical["level"] == "critical" and critical["message"] == "It failed 1"
    assert "Traceback" in critical["traceback"] and "broken thing" in critical["traceback"]
    assert "error" not in critical
    assert warn["error"] == "broken thing" and "traceback" not in warn


def test_json_keeps_odd_fields_and_legacy_events_readable() -> None:
    """Fields JSON cannot hold become text; a twisted.python.log event is its message."""
    from twisted.python import log as legacy

    def emit(observer: Any) -> None:
        Logger(namespace="tests.test_logs", observer=observer).info(
            "odd", mapping={(1, 2): "tuple key"}, blob=b"\x00", level_name=LogLevel.warn
        )
        legacy.addObserver(legacy_observer := LegacyLogObserverWrapper(observer))
        try:
            legacy.msg("Starting factory", system="-")
        finally:
            legacy.removeObserver(legacy_observer)

    odd, old = _json_lines(emit)
    assert odd["mapping"] == "{(1, 2): 'tuple key'}" and odd["blob"] == "b'\\x00'"
    assert old["message"] == "Starting factory"
    assert not {"isError", "system", "format"} & set(old)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["-n", "--logger=x", "--logfile", "/var/log/gw", "opencue-gateway", "-l", "y"],
            ("/var/log/gw", True),
        ),
        (["-nl", "f.log", "opencue-gateway"], ("f.log", True)),
        (["--logfile=g.log", "--pidfile=", "opencue-gateway"], ("g.log", False)),
        (["--pidfile=", "opencue-gateway", "--logfile", "x"], (None, False)),
        (["--nodaemon", "opencue-gateway"], (None, True)),
    ],
)
def test_twistd_log_options_read_as_twistd_reads_them(
    argv: list[str], expected: tuple[str | None, bool]
) -> None:
    """Only twistd's own options count, up to the subcommand; short flags may combine."""
    assert twistd_log_options(argv) == expected
