# -*- test-case-name: tests.test_logs -*-
"""
Log level control for the gateway's own events.

twistd owns the log observers (stdout under C{-n}, C{--logfile}, C{--logger}); the
gateway cannot put a filter in front of them before twistd starts logging. Instead every
gateway logger emits through L{GATEWAY_OBSERVER}, a filtering observer in front of the
global publisher, and C{LOG_LEVEL}/C{--log-level} set its threshold.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
)
from zope.interface import implementer

__all__ = [
    "GATEWAY_OBSERVER",
    "LOG_LEVELS",
    "enabled",
    "json_observer",
    "parse_log_level",
    "set_log_level",
]

LOG_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)


@implementer(ILogObserver)
def _to_global(event: LogEvent) -> None:
    globalLogPublisher(event)


GATEWAY_OBSERVER = FilteringLogObserver(_to_global, [_predicate])


def parse_log_level(text: str) -> LogLevel:
    """C{LOG_LEVEL}'s value to a level; raises C{ValueError} naming the accepted ones."""
    try:
        return LOG_LEVELS[text.strip().lower()]
    except KeyError:
        accepted = ", ".join(sorted(LOG_LEVELS))
        raise ValueError(f"unknown log level {text!r} (use one of {accepted})") from None


def set_log_level(level: LogLevel) -> None:
    """Lowest level of gateway events that reach the log."""
    _predicate.defaultLogLevel = level
    _predicate.clearLogLevels()


def enabled(level: LogLevel) -> bool:
    """
    Whether gateway events at C{level} reach the log. The access event has a dozen fields;
    building it for every request only to drop it at C{LOG_LEVEL=warn} cost ~3% of a call.
    """
    return not level < _predicate.defaultLogLevel


def json_observer() -> ILogObserver:
    """
    One JSON object per event on standard output, for log shippers.

    For C{twistd --logger=opencue_gw.logs.json_observer}: twistd calls this factory
    with no arguments. Named fields (status, duration, request_id, ...) stay fields.
    """
    import sys

    return jsonFileLogObserver(sys.stdout)
