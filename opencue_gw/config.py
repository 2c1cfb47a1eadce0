# -*- test-case-name: tests.test_config -*-
"""
Turning command-line options and the Go gateway's environment variables into one
validated L{GatewayConfig}.

The Go gateway's variables (C{CUEBOT_ENDPOINT}, C{REST_PORT}, C{JWT_SECRET},
C{GRPC_MAX_RECV_MSG_MB}) keep working so existing deployments move over unchanged; the
ones its documentation promised but it never read (C{GRPC_TIMEOUT}, C{LOG_LEVEL},
C{JWT_SECRET_FILE}, C{SHUTDOWN_TIMEOUT}) now work too. An option beats its variable.
Every bad value is refused with a L{ConfigError} naming the setting, where the Go
gateway silently fell back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import LogLevel

from opencue_gw.logs import parse_log_level

__all__ = ["ConfigError", "GatewayConfig", "parse_duration", "resolve_config"]

DEFAULT_CUEBOT = "localhost:8443"
DEFAULT_REST_PORT = "8448"
DEFAULT_MAX_RECV_MB = 256
DEFAULT_GRPC_TIMEOUT = 30.0
DEFAULT_GRACE = 30.0

# Secrets the OpenCue documentation and compose files publish; anyone can forge tokens.
PUBLISHED_SECRETS = frozenset(
    {
        b"default-secret-key",
        b"opencue-dev-jwt-secret-change-in-production",
        b"dev-secret-key-change-in-production",
        b"production-secret-key",
    }
)

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}
_HOST_PORT = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})$")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the service tree is built from."""

    cuebot: str
    listen: tuple[str, ...]
    jwt_secret: bytes = field(repr=False)
    max_recv_bytes: int
    grpc_timeout: float | None
    log_level: LogLevel
    grace_period: float
    strict_json: bool
    require_exp: bool
    jwt_leeway: float
    codec_threads: int
    demo: bool
    demo_seed: int
    demo_speed: float
    demo_token_file: str | None
    warnings: tuple[str, ...] = ()


def parse_duration(text: str) -> float:
    """Seconds from C{30}, C{30s}, C{500ms}, C{2m} or C{1h}."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 30s or 500ms, got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _pick(options: Mapping[str, Any], env: Mapping[str, str], opt: str, var: str | None) -> Any:
    value = options.get(opt)
    if value is not None:
        return value
    if var is not None:
        return env.get(var)
    return None


def _name(opt: str, var: str | None) -> str:
    return f"--{opt} ({var})" if var else f"--{opt}"


def _number(
    options: Mapping[str, Any],
    env: Mapping[str, str],
    opt: str,
    var: str | None,
    default: float,
    *,
    duration: bool = False,
    minimum: float = 0.0,
) -> float:
    raw = _pick(options, env, opt, var)
    if raw is None or raw == "":
        return default
    try:
        value = parse_duration(str(raw)) if duration else float(raw)
    except ValueError:
        kind = "a duration such as 30s" if duration else "a number"
        raise ConfigError(f"{_name(opt, var)}: expected {kind}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{_name(opt, var)}: must be at least {minimum:g}, got {raw!r}")
    return value


def _integer(
    options: Mapping[str, Any],
    env: Mapping[str, str],
    opt: str,
    var: str | None,
    default: int,
    minimum: int,
) -> int:
    raw = _pick(options, env, opt, var)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{_name(opt, var)}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{_name(opt, var)}: must be at least {minimum}, got {raw!r}")
    return value


def _listen(options: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    given = list(options.get("port") or ())
    if not given:
        rest_port = env.get("REST_PORT") or DEFAULT_REST_PORT
        if not rest_port.strip().isdigit() or not 0 < int(rest_port) < 65536:
            raise ConfigError(f"REST_PORT: expected a TCP port number, got {rest_port!r}")
        given = [rest_port.strip()]
    listen = []
    for description in given:
        if description.isdigit():
            if not 0 < int(description) < 65536:
                raise ConfigError(f"--port: expected a TCP port number, got {description!r}")
            description = f"tcp:{description}"
        listen.append(description)
    return tuple(listen)


def _secret(options: Mapping[str, Any], env: Mapping[str, str], demo: bool) -> bytes:
    path = options.get("jwt-secret-file") or env.get("JWT_SECRET_FILE")
    if path:
        name = "--jwt-secret-file" if options.get("jwt-secret-file") else "JWT_SECRET_FILE"
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {path}: {error.strerror}") from None
        if not secret:
            raise ConfigError(f"{name}: {path} is empty")
        return secret
    value = env.get("JWT_SECRET")
    if value is not None:
        if not value.strip():
            raise ConfigError("JWT_SECRET: is empty; an empty HMAC key would accept forged tokens")
        return value.encode("utf-8")
    if demo:
        return b""
    raise ConfigError(
        "JWT_SECRET: no token secret; set JWT_SECRET or JWT_SECRET_FILE, "
        "or pass --jwt-secret-file (or --demo to try the gateway)"
    )


def _cuebot(options: Mapping[str, Any], env: Mapping[str, str]) -> str:
    target = str(_pick(options, env, "cuebot", "CUEBOT_ENDPOINT") or DEFAULT_CUEBOT).strip()
    match = _HOST_PORT.match(target)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise ConfigError(f"--cuebot (CUEBOT_ENDPOINT): expected HOST:PORT, got {target!r}")
    return target


def resolve_config(options: Mapping[str, Any], env: Mapping[str, str]) -> GatewayConfig:
    """Validate every setting; raise L{ConfigError} at the first unusable one."""
    demo = bool(options.get("demo"))
    secret = _secret(options, env, demo)
    warnings: list[str] = []
    if secret in PUBLISHED_SECRETS:
        warnings.append(
            "the JWT secret is one published in OpenCue's examples; anyone can forge tokens"
        )
    elif secret and len(secret) < 32:
        warnings.append("the JWT secret is shorter than 32 bytes; prefer a longer random one")
    log_text = _pick(options, env, "log-level", "LOG_LEVEL")
    try:
        log_level = parse_log_level(log_text) if log_text else LogLevel.info
    except ValueError as error:
        raise ConfigError(f"--log-level (LOG_LEVEL): {error}") from None
    timeout = _number(
        options, env, "grpc-timeout", "GRPC_TIMEOUT", DEFAULT_GRPC_TIMEOUT, duration=True
    )
    return GatewayConfig(
        cuebot=_cuebot(options, env),
        listen=_listen(options, env),
        jwt_secret=secret,
        max_recv_bytes=_integer(
            options, env, "grpc-max-recv-mb", "GRPC_MAX_RECV_MSG_MB", DEFAULT_MAX_RECV_MB, 1
        )
        * 1024
        * 1024,
        grpc_timeout=timeout or None,
        log_level=log_level,
        grace_period=_number(
            options, env, "grace-period", "SHUTDOWN_TIMEOUT", DEFAULT_GRACE, duration=True
        ),
        strict_json=bool(options.get("strict-json")),
        require_exp=not options.get("allow-missing-exp"),
        jwt_leeway=_number(options, env, "jwt-leeway", "JWT_LEEWAY", 0.0, duration=True),
        codec_threads=_integer(options, env, "codec-threads", None, 2, 1),
        demo=demo,
        demo_seed=_integer(options, env, "demo-seed", None, 7, 0),
        demo_speed=_number(options, env, "demo-speed", None, 10.0),
        demo_token_file=options.get("demo-token-file"),
        warnings=tuple(warnings),
    )
