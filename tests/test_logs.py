"""Tests for L{opencue_gw.logs}: LOG_LEVEL parsing and the gateway's filtering observer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.logger import LogEvent, Logger, LogLevel, globalLogPublisher

from opencue_gw.logs import GATEWAY_OBSERVER, enabled, parse_log_level, set_log_level


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


def test_json_observer_writes_one_json_object_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The --logger factory writes each event as JSON with its named fields intact."""
    import io
    import json
    import sys

    from twisted.logger import Logger

    from opencue_gw.logs import json_observer

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    observer = json_observer()
    Logger(namespace="opencue_gw.edge.Edge", observer=observer).info(
        "{method} {path} {status}", method="POST", path="/x", status=200, request_id="r1"
    )
    line = buffer.getvalue().strip().strip("\x1e")
    event = json.loads(line)
    assert event["status"] == 200 and event["request_id"] == "r1"
