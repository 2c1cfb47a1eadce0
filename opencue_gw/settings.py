# -*- test-case-name: tests.test_config -*-
"""
Every setting of the gateway, written once: L{SETTINGS}.

Each entry names its twistd option, its environment variable, the parser of its text,
its default and its help. The twistd L{Options} (with a coerce function per parameter
and L{Options.postOptions} for cross-checks), the environment lookup of L{value_of},
the C{--help} text and the README's settings table (checked by a test) all come from
it. L{opencue_gw.config.resolve_config} turns the values into a L{GatewayConfig}.

Precedence is the Go gateway's: an option beats its variable, a variable (set and not
empty) beats the default. A bad value is refused with one line naming the setting.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from twisted.logger import LogLevel
from twisted.python import usage

from opencue_gw.auth.jwks import DEFAULT_MAX_AGE, DEFAULT_MIN_INTERVAL
from opencue_gw.http.cors import DEFAULT_CORS_HEADERS
from opencue_gw.logs import parse_log_level

__all__ = [
    "FACILITY_NAME",
    "MIB",
    "NOT_ABOVE",
    "RESERVED_FACILITY_NAMES",
    "SETTINGS",
    "BadSetting",
    "ConfigError",
    "FacilityList",
    "FacilityName",
    "HostPortList",
    "Options",
    "Setting",
    "check_not_above",
    "parse_duration",
    "raw_text",
    "refuse",
    "setting",
    "value_of",
]

MIB = 1024 * 1024

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}
_HOST_PORT = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})$")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


class BadSetting(usage.UsageError):
    """
    A bad value given on the command line. A L{usage.UsageError}, so Twisted's option
    parser does not wrap it, and L{Options} can tell it from an unknown option.
    """


def refuse(error: Exception) -> NoReturn:
    """Stop before the daemon starts: one line naming the setting, exit status 2."""
    sys.stderr.write(f"opencue-gateway: {error}\n")
    raise SystemExit(2)


def parse_duration(text: str) -> float:
    """Seconds from C{30}, C{30s}, C{500ms}, C{2m} or C{1h}."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 30s or 500ms, got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


class Parser(Protocol):
    """Turns a setting's text into its value, or raises C{ValueError} saying why not."""

    def __call__(self, text: str) -> Any: ...

    def show(self, value: Any) -> str:
        """The value as the help and the README write it."""
        ...


class Text:
    """Any text, surrounding spaces removed (paths, names, URLs)."""

    def __call__(self, text: str) -> str:
        return text.strip()

    def show(self, value: Any) -> str:
        return str(value)


class Whole:
    """A whole number of at least C{minimum}."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def __call__(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if value < self.minimum:
            raise ValueError(f"must be at least {self.minimum}, got {text!r}")
        return value

    def show(self, value: Any) -> str:
        return str(value)


class Number:
    """A number of at least C{minimum}."""

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}, got {text!r}")
        return value

    def show(self, value: Any) -> str:
        return f"{value:g}"


class Duration:
    """Seconds written as C{30}, C{30s}, C{500ms}, C{2m} or C{1h}, at least C{minimum}."""

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def __call__(self, text: str) -> float:
        value = parse_duration(text)
        if value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}s, got {text!r}")
        return value

    def show(self, value: Any) -> str:
        if value == 0:
            return "0"
        # 60s rather than 1m; 10m rather than 600s.
        for unit, seconds in (("h", 3600), ("m", 60)):
            if value >= 2 * seconds and value % seconds == 0:
                return f"{value // seconds:g}{unit}"
        if value % 1 == 0:
            return f"{value:g}s"
        return f"{value * 1000:g}ms"


class Boolean:
    """C{true}/C{false} and their usual spellings; a flag on the command line."""

    def __call__(self, text: str) -> bool:
        word = text.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")

    def show(self, value: Any) -> str:
        return "on" if value else "off"


class CommaList:
    """Comma-separated items, each stripped; empty items dropped."""

    def __call__(self, text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    def show(self, value: Any) -> str:
        return ", ".join(value) if value else "off"


class HostPort:
    """C{HOST:PORT}, the form gRPC targets take (C{[::1]:8443} for IPv6)."""

    def __call__(self, text: str) -> str:
        target = text.strip()
        match = _HOST_PORT.match(target)
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise ValueError(f"expected HOST:PORT, got {target!r}")
        return target

    def show(self, value: Any) -> str:
        return str(value)


class HostPortList:
    """
    One C{HOST:PORT}, or several comma-separated: the replicas of one Cuebot. The value
    is the list written back without spaces, so one replica reads as it always did.
    """

    def __call__(self, text: str) -> str:
        parts = [part.strip() for part in text.split(",")]
        if not any(parts):
            raise ValueError("expected HOST:PORT, or several comma-separated")
        targets = [HostPort()(part) for part in parts]
        if len(set(targets)) != len(targets):
            raise ValueError(f"a replica is named twice in {text.strip()!r}")
        return ",".join(targets)

    def show(self, value: Any) -> str:
        return str(value)


FACILITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")
RESERVED_FACILITY_NAMES = frozenset({"api", "docs", "healthz", "metrics", "readyz", "ui"})
"""First segments of the gateway's own paths: a facility of that name would hide them."""


class FacilityName:
    """A facility's name: the first segment of its paths (letters, digits, C{-}, C{_})."""

    def __call__(self, text: str) -> str:
        name = text.strip()
        if not FACILITY_NAME.match(name):
            raise ValueError(
                f"a facility name is letters, digits, - and _ (at most 63), got {name!r}"
            )
        if name in RESERVED_FACILITY_NAMES:
            raise ValueError(f"{name!r} is one of the gateway's own paths; name it otherwise")
        return name

    def show(self, value: Any) -> str:
        return str(value)


class FacilityList:
    """
    C{NAME=HOST:PORT[,HOST:PORT...]}: a facility and its Cuebot replicas. The variable
    holds several, separated by C{;}; the option is repeated instead.
    """

    def __call__(self, text: str) -> tuple[tuple[str, str], ...]:
        found = []
        for part in text.split(";"):
            if not part.strip():
                continue
            name, equals, replicas = part.partition("=")
            if not equals:
                raise ValueError(f"expected NAME=HOST:PORT[,HOST:PORT], got {part.strip()!r}")
            found.append((FacilityName()(name), HostPortList()(replicas)))
        if not found:
            raise ValueError("expected NAME=HOST:PORT[,HOST:PORT]")
        return tuple(found)

    def show(self, value: Any) -> str:
        return "; ".join(f"{name}={replicas}" for name, replicas in value) if value else "none"


class LogLevelName:
    """C{debug}, C{info}, C{warn}, C{error} or C{critical}."""

    def __call__(self, text: str) -> LogLevel:
        return parse_log_level(text)

    def show(self, value: Any) -> str:
        return str(value.name)


class AuditPath:
    """A file to append to; made absolute, so a daemon that changes directory keeps it."""

    def __call__(self, text: str) -> str:
        path = os.path.abspath(text.strip())
        if not os.path.isdir(os.path.dirname(path)):
            raise ValueError(f"the directory of {path} does not exist")
        return path

    def show(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: how it is given, parsed, defaulted and explained."""

    option: str | None
    """The twistd option without its dashes; None for a variable only."""
    variable: str | None
    """The environment variable; None for an option only."""
    parse: Parser
    default: Any
    help: str
    flag: bool = False
    """An option without a value (its variable, if any, takes true or false)."""
    composite: bool = False
    """Not copied to the L{GatewayConfig} field of its name: resolve_config builds it."""
    shown: str | None = None
    """The default as documented, where the value alone would not say it."""
    secret: bool = False
    """Never repeat the value in an error."""
    internal: bool = False
    """Used between processes of the gateway; not documented for operators."""

    @property
    def key(self) -> str:
        """The name L{setting} finds this entry by: the option, else the variable."""
        if self.option is not None:
            return self.option
        assert self.variable is not None
        return self.variable.lower().replace("_", "-")

    @property
    def field(self) -> str:
        """The L{GatewayConfig} field filled from this setting, unless composite."""
        return self.key.replace("-", "_")

    @property
    def name(self) -> str:
        """How errors name the setting: C{--option (VARIABLE)}."""
        if self.option is None:
            return str(self.variable)
        return f"--{self.option} ({self.variable})" if self.variable else f"--{self.option}"

    def source(self, options: Mapping[str, Any]) -> str:
        """The option if it was given, else the variable: what a user should fix."""
        if self.option is not None and options.get(self.option):
            return f"--{self.option}"
        return str(self.variable)

    @property
    def documented_default(self) -> str:
        """The default as the help and the README's table write it."""
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "unset"
        return self.parse.show(self.default)

    @property
    def usage(self) -> str:
        """The C{--help} line: what it does, its variable and its default."""
        where = f"${self.variable}; " if self.variable else ""
        return f"{self.help} [{where}default: {self.documented_default}]"

    def parse_text(self, text: str) -> Any:
        """The value of C{text}, or L{ConfigError} naming the setting."""
        try:
            return self.parse(text)
        except ValueError as error:
            if self.secret:
                raise ConfigError(f"{self.name}: unusable value") from None
            raise ConfigError(f"{self.name}: {error}") from None

    def coerce(self, text: str) -> Any:
        """Twisted's coerce function of this option: L{BadSetting} names the setting."""
        try:
            return self.parse_text(text)
        except ConfigError as error:
            raise BadSetting(str(error)) from None


def _param(
    option: str, variable: str | None, parse: Parser, default: Any, help: str, **kw: Any
) -> Setting:
    return Setting(option, variable, parse, default, help, **kw)


def _flag(option: str, variable: str | None, help: str, **kw: Any) -> Setting:
    return Setting(option, variable, Boolean(), False, help, flag=True, **kw)


def _variable(variable: str, parse: Parser, help: str, **kw: Any) -> Setting:
    return Setting(None, variable, parse, None, help, composite=True, **kw)


# One entry a setting: option, variable, parser, default; then its help, and how it is
# used when it does not fill the GatewayConfig field of its name (composite).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # Cuebot.
    _param("cuebot", "CUEBOT_ENDPOINT", HostPortList(), "localhost:8443",
           "Cuebot's gRPC endpoint, or its replicas comma-separated: the default facility"),
    _param("facility", "CUEBOT_FACILITIES", FacilityList(), (),
           "Another facility and its Cuebot replicas, NAME=HOST:PORT[,HOST:PORT] "
           "(repeatable; the variable separates facilities with ;), served under /NAME/",
           composite=True, shown="none"),
    _param("facilities-file", "CUEBOT_FACILITIES_FILE", Text(), None,
           "TOML file of facilities: [facilities.NAME] cuebots = [\"HOST:PORT\", ...]",
           composite=True),
    _param("default-facility", "CUEBOT_DEFAULT_FACILITY", FacilityName(), "default",
           "Name of the facility of --cuebot, served with and without its /NAME/ prefix"),
    _param("grpc-timeout", "GRPC_TIMEOUT", Duration(), 30.0,
           "Deadline of each Cuebot call, 0 = none", composite=True),
    _param("grpc-max-recv-mb", "GRPC_MAX_RECV_MSG_MB", Whole(1), 256,
           "Largest Cuebot answer in MiB", composite=True),
    _flag("cuebot-tls", "CUEBOT_TLS",
          "Use TLS to Cuebot with the system's CAs", composite=True),
    _param("cuebot-ca", "CUEBOT_CA_FILE", Text(), None,
           "CA bundle (PEM) to verify Cuebot's certificate; turns TLS on", composite=True),
    _param("cuebot-client-cert", "CUEBOT_CLIENT_CERT_FILE", Text(), None,
           "Client certificate (PEM) for mutual TLS to Cuebot", composite=True),
    _param("cuebot-client-key", "CUEBOT_CLIENT_KEY_FILE", Text(), None,
           "Client key (PEM) for mutual TLS to Cuebot", composite=True),
    _param("cuebot-server-name", "CUEBOT_SERVER_NAME", Text(), None,
           "Name expected in Cuebot's certificate", shown="the host"),
    # Listening.
    _param("port", "REST_PORT", Text(), "8448",
           "Listen on this endpoint (repeatable): a port number or a Twisted endpoint "
           "description such as tcp:8448:interface=127.0.0.1; the variable takes a port "
           "number only", composite=True),
    _variable("TLS_CERT_FILE", Text(),
              "HTTPS on REST_PORT with this certificate (PEM), beside TLS_KEY_FILE"),
    _variable("TLS_KEY_FILE", Text(),
              "HTTPS on REST_PORT with this key (PEM), beside TLS_CERT_FILE"),
    # Tokens and access.
    _param("jwt-secret-file", "JWT_SECRET_FILE", Text(), None,
           "File holding the HMAC secret of HS256/384/512 tokens", composite=True),
    _variable("JWT_SECRET", Text(),
              "The HMAC secret itself (JWT_SECRET_FILE is safer)", secret=True),
    _param("jwt-public-key", "JWT_PUBLIC_KEY_FILE", Text(), None,
           "PEM key or certificate for RS/PS/ES/EdDSA tokens", composite=True),
    _param("jwks-url", "JWKS_URL", Text(), None,
           "Identity provider's JWKS URL for signed tokens", composite=True),
    _param("jwks-max-age", "JWKS_MAX_AGE", Duration(), DEFAULT_MAX_AGE,
           "How long fetched JWKS keys are trusted"),
    _param("jwks-min-refresh", "JWKS_MIN_REFRESH", Duration(), DEFAULT_MIN_INTERVAL,
           "Least time between JWKS fetches", composite=True),
    _param("jwt-issuer", "JWT_ISSUER", Text(), None,
           "Required iss claim of every token", shown="unchecked"),
    _param("jwt-audience", "JWT_AUDIENCE", Text(), None,
           "Required aud claim of every token", shown="unchecked"),
    _param("jwt-leeway", "JWT_LEEWAY", Duration(), 0.0,
           "Clock skew allowed on exp and nbf"),
    _flag("allow-missing-exp", None,
          "Accept tokens without an exp claim (old clients)", composite=True),
    _param("policy", "POLICY_FILE", Text(), None,
           "TOML file of roles and the RPCs they may call", composite=True,
           shown="all allowed"),
    _param("audit-log", "AUDIT_LOG", AuditPath(), None,
           "Append a JSON line per farm-changing call and per refusal here"),
    # The HTTP edge.
    _param("http-timeout", "HTTP_TIMEOUT", Duration(1.0), 60.0,
           "Idle timeout, and the time allowed to deliver a request head"),
    _param("max-body-bytes", "MAX_BODY_BYTES", Whole(1), 32 * MIB,
           "Largest request body; larger ones get 413"),
    _param("max-request-line", "MAX_REQUEST_LINE", Whole(1), 16384,
           "Longest request line in bytes; longer ones get 414"),
    _param("max-header-line", "MAX_HEADER_LINE", Whole(1), 65536,
           "Longest header line in bytes; longer ones get 431"),
    _param("max-headers", "MAX_HEADERS", Whole(1), 100,
           "Most header lines in one request; more get 431"),
    _param("max-head-bytes", "MAX_HEAD_BYTES", Whole(1), 65536,
           "Largest request head (request line and headers) in bytes; larger ones get 431"),
    _param("max-in-flight", "MAX_IN_FLIGHT", Whole(1), 2000,
           "Requests in flight before new ones get 503"),
    _param("cors-origins", "CORS_ORIGINS", CommaList(), (),
           "Comma-separated origins browsers may call from, * for any"),
    _param("cors-headers", "CORS_HEADERS", CommaList(), (),
           "Comma-separated request headers browsers may send",
           shown=", ".join(DEFAULT_CORS_HEADERS)),
    _param("rate-limit-rps", "RATE_LIMIT_RPS", Number(), 0.0,
           "Requests per second per token subject, 0 = off"),
    _param("rate-limit-burst", "RATE_LIMIT_BURST", Number(), 0.0,
           "Bucket size of the rate limit", composite=True, shown="2 x rps"),
    _flag("metrics-require-token", None,
          "Serve /metrics only to callers with a valid token", composite=True),
    _flag("no-public-docs", None,
          "Serve /openapi.json and /docs only to callers with a token", composite=True),
    # Requests and answers.
    _flag("strict-json", None,
          "Reject request bodies with unknown fields (400)"),
    _flag("allow-unknown-enums", "ALLOW_UNKNOWN_ENUMS",
          "Accept request bodies with unknown enum names, dropping them as the Go gateway does"),
    _flag("no-coalesce", None,
          "Send every read to Cuebot even if an identical one is in flight", composite=True),
    _flag("no-batch", None,
          "Send each by-id read (GetJobs by ids) to Cuebot on its own instead of batching "
          "concurrent ones into one call", composite=True),
    _param("read-cache-ms", "READ_CACHE_MS", Number(), 0.0,
           "Let identical reads share an answer for this many milliseconds, 0 = off"),
    _param("stale-if-error", "STALE_IF_ERROR", Duration(), 0.0,
           "While Cuebot is unavailable, answer a read with its last good answer for up to "
           "this long, 0 = off"),
    _param("stale-max-bytes", "STALE_MAX_BYTES", Whole(1), 64 * MIB,
           "Memory budget of the answers kept for --stale-if-error"),
    # Live farm events (GET /api/v1/events, /api/v1/jobs/{id}/wait, /ui).
    _param("events-interval", "EVENTS_INTERVAL", Duration(0.1), 2.0,
           "How often each watched scope (a show, a job, the hosts) is polled for events"),
    _param("events-heartbeat", "EVENTS_HEARTBEAT", Duration(1.0), 15.0,
           "Comment line sent on idle event streams, so proxies keep them open"),
    _param("events-history", "EVENTS_HISTORY", Whole(0), 5000,
           "Events kept for resuming a stream with Last-Event-ID"),
    _param("events-max-subscribers", "EVENTS_MAX_SUBSCRIBERS", Whole(1), 2000,
           "Event streams and waits per process; beyond, 503"),
    _param("events-max-per-caller", "EVENTS_MAX_PER_CALLER", Whole(1), 20,
           "Event streams and waits per token subject; beyond, 429"),
    _param("events-max-buffer", "EVENTS_MAX_BUFFER", Whole(1024), MIB,
           "Bytes queued for a slow event client before it is dropped"),
    _param("events-poll-timeout", "EVENTS_POLL_TIMEOUT", Duration(0.1), 10.0,
           "Deadline of each poll the event source makes"),
    _param("events-max-wait", "EVENTS_MAX_WAIT", Duration(1.0), 3600.0,
           "Longest timeout a /api/v1/jobs/{id}/wait may ask for"),
    # State shared by processes and instances.
    _param("redis", "REDIS_URL", Text(), None,
           "Share rate limits, the read cache, reads in flight and stale answers in this "
           "Redis: a redis://, rediss:// or unix:// URL", composite=True, secret=True),
    _param("redis-password-file", "REDIS_PASSWORD_FILE", Text(), None,
           "File holding the Redis password (instead of the URL's)", composite=True),
    _param("redis-timeout", "REDIS_TIMEOUT", Duration(), 0.05,
           "Longest wait for Redis before a request uses local state"),
    # Processes.
    _param("workers", "WORKERS", Whole(1), 1,
           "Worker processes sharing the port, one per core"),
    _param("worker-fd", None, Whole(0), None,
           "(internal) the inherited listening socket of a worker", internal=True),
    _param("codec-threads", None, Whole(1), 2,
           "Threads turning large answers into JSON"),
    _param("grace-period", "SHUTDOWN_TIMEOUT", Duration(), 30.0,
           "On SIGTERM, time for requests in flight to finish"),
    _param("log-level", "LOG_LEVEL", LogLevelName(), LogLevel.info,
           "debug, info, warn, error or critical"),
    # The simulated farm.
    _flag("demo", None,
          "Run a simulated Cuebot in-process and print a ready-to-use token"),
    _param("demo-seed", None, Whole(0), 7,
           "Seed of the demo farm"),
    _param("demo-speed", None, Number(), 10.0,
           "How many times faster than real the demo farm's frames run (timestamps stay real)"),
    _param("demo-token-file", None, Text(), None,
           "Also write the demo token to this file (mode 600)"),
)
# fmt: on

_BY_KEY = {entry.key: entry for entry in SETTINGS}

NOT_ABOVE: tuple[tuple[str, str], ...] = (
    ("max-request-line", "max-head-bytes"),
    ("max-header-line", "max-head-bytes"),
)
"""Pairs of settings whose first may not exceed its second."""


def setting(key: str) -> Setting:
    """The entry of L{SETTINGS} for an option name (or a variable-only setting's key)."""
    return _BY_KEY[key]


def value_of(entry: Setting, options: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """
    The setting's value: its option, else its variable (when set and not empty), else
    its default. Option values arrive as text (a plain mapping) or already parsed by
    L{Options}' coerce functions.
    """
    given = options.get(entry.option) if entry.option is not None else None
    if entry.flag and given:
        return True
    if not entry.flag and given is not None and given != "":
        return entry.parse_text(given) if isinstance(given, str) else given
    text = env.get(entry.variable) if entry.variable is not None else None
    if text is not None and text.strip():
        return entry.parse_text(text)
    return entry.default


def raw_text(entry: Setting, options: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """
    The text given for a setting that resolve_config parses itself (files, listeners):
    the option if given, else the variable if set and not empty.
    """
    given = options.get(entry.option) if entry.option is not None else None
    if given:
        return str(given)
    if entry.variable is not None:
        return env.get(entry.variable) or None
    return None


def check_not_above(values: Callable[[str], Any]) -> None:
    """
    Refuse a pair of L{NOT_ABOVE} whose first value exceeds its second; C{values}
    gives None for a setting not known yet (an option not given).
    """
    for smaller, larger in NOT_ABOVE:
        low, high = values(smaller), values(larger)
        if low is not None and high is not None and low > high:
            raise ConfigError(
                f"{setting(smaller).name}: {low} exceeds {setting(larger).name}, {high}"
            )


def _environment_only(entries: Iterable[Setting]) -> str:
    lines = [
        f"{entry.variable}: {entry.help} [default: {entry.documented_default}]"
        for entry in entries
        if entry.option is None
    ]
    return "Environment only: " + "; ".join(lines) + "."


class Options(usage.Options):
    """
    Options of C{twistd opencue-gateway}, made from L{SETTINGS}. An option left out
    falls back to the environment variable its help names, then to its default.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve every Cuebot RPC as POST /<package>.<Service>/<Method> with JSON bodies, "
        "compatible with OpenCue's Go REST gateway. " + _environment_only(SETTINGS)
    )
    optFlags: Sequence[list[Any]] = [
        [entry.option, None, entry.usage] for entry in SETTINGS if entry.flag
    ]
    optParameters: Sequence[list[Any]] = [
        [entry.option, None, None, entry.usage, entry.coerce]
        for entry in SETTINGS
        if entry.option not in (None, "port") and not entry.flag
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["facility"] = []

    def opt_facility(self, text: str) -> None:
        # Repeatable: this method wins over the parameter row, which gives the help.
        self["facility"].extend(setting("facility").coerce(text))

    def opt_port(self, description: str) -> None:
        self["port"].append(description)

    opt_port.__doc__ = setting("port").usage
    opt_p = opt_port

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse as Twisted does. Under twistd (which answers a L{usage.UsageError} with
        its whole help and exit status 1) a bad value stops the daemon the way a bad
        variable does: one line naming the setting, exit status 2.
        """
        try:
            super().parseOptions(options)
        except BadSetting as error:
            if self.parent is None:
                raise
            refuse(error)

    def postOptions(self) -> None:
        """
        Cross-checks of options given together. Values from the environment are not
        known here; resolve_config checks the combination of both.
        """
        try:
            check_not_above(lambda key: self.get(key))
        except ConfigError as error:
            raise BadSetting(str(error)) from None
