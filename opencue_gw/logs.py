# -*- test-case-name: tests.test_logs -*-
"""
Log level control for the gateway's own events, and JSON log lines.

twistd owns the log observers (stdout under C{-n}, C{--logfile}, C{--logger}); the
gateway cannot put a filter in front of them before twistd starts logging. Instead every
gateway logger emits through L{GATEWAY_OBSERVER}, a filtering observer in front of the
global publisher, and C{LOG_LEVEL}/C{--log-level} set its threshold.

For log shippers, L{json_observer} replaces twistd's text lines with one JSON object per
line, written where twistd would have written its text.
"""

from __future__ import annotations

import getopt
import json
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any, cast

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = [
    "GATEWAY_OBSERVER",
    "LOG_LEVELS",
    "enabled",
    "json_line",
    "json_observer",
    "parse_log_level",
    "set_log_level",
    "twistd_log_options",
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


# Keys of events from twisted.python.log (the legacy API); their content is in "message".
_LEGACY_KEYS = frozenset({"message", "isError", "system", "time", "format", "why", "failure"})


def json_line(event: LogEvent) -> str:
    """
    One event as one line of JSON: C{time} (ISO 8601, UTC), C{level}, C{namespace},
    C{message} (the formatted text), then the event's own named fields. Twisted's
    bookkeeping (C{log_logger}, C{log_source}, C{log_format}, ...) is left out; a
    failure becomes a C{traceback} field at level error and above, an C{error} field
    (its one-line summary) below.
    """
    level = event.get("log_level", LogLevel.info)
    record: dict[str, Any] = {
        "time": _iso_time(event.get("log_time")),
        "level": level.name,
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS:
            continue
        record[f"field_{key}" if key in record else key] = value
    failure = event.get("log_failure")
    if failure is not None:
        if not level < LogLevel.error:
            record["traceback"] = failure.getTraceback()
        else:
            record["error"] = failure.getErrorMessage()
    try:
        text = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        # A field JSON cannot hold (a dict with tuple keys, say): keep it as its repr.
        text = json.dumps({key: _plain(value) for key, value in record.items()})
    return text + "\n"


def _iso_time(when: float | None) -> str:
    moment = datetime.fromtimestamp(when if when is not None else time.time(), UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def json_observer(out: IO[Any] | None = None) -> ILogObserver:
    """
    Log one JSON object per line (see L{json_line}), for log shippers and C{jq}.

    For C{twistd --logger=opencue_gw.logs.json_observer}: twistd calls this factory with
    no arguments, and then does not open a log file of its own. So the factory writes
    where twistd would have written its text log: the C{--logfile} given to twistd
    (rotated on SIGUSR1 and by size, as twistd rotates its own), standard output with
    C{-n} and no C{--logfile} (or C{--logfile=-}), and C{twistd.log} when daemonized
    without one. C{out}: write there instead (tests).
    """
    return FileLogObserver(out if out is not None else _twistd_log_file(sys.argv[1:]), json_line)


def twistd_log_options(argv: Sequence[str]) -> tuple[str | None, bool]:
    """
    (C{--logfile}, whether in the foreground) as twistd reads them from C{argv}.

    Read with twistd's own option table, up to the subcommand, without acting on any
    option (C{--reactor} would install a reactor).
    """
    from twisted.scripts.twistd import ServerOptions

    table = ServerOptions()
    try:
        pairs, _ = getopt.getopt(list(argv), table.shortOpt, table.longOpt)
    except getopt.GetoptError:
        return None, True
    logfile: str | None = None
    foreground = False
    for flag, value in pairs:
        name = flag.lstrip("-")
        name = table.synonyms.get(name, name)
        if name == "logfile":
            logfile = value
        elif name in ("nodaemon", "debug"):
            foreground = True
    return logfile, foreground


def _twistd_log_file(argv: Sequence[str]) -> IO[Any]:
    """The file twistd's own text log would go to, by twistd's rules."""
    logfile, foreground = twistd_log_options(argv)
    if logfile == "-" or (foreground and not logfile):
        if not foreground:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    opened = LogFile.fromFullPath(logfile or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: object) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(opened.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return cast(IO[Any], opened)
