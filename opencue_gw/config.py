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

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.endpoints import quoteStringArgument
from twisted.logger import LogLevel

from opencue_gw.jwks import DEFAULT_MAX_AGE, DEFAULT_MIN_INTERVAL
from opencue_gw.keys import VerifyingKey, load_public_key
from opencue_gw.logs import parse_log_level
from opencue_gw.policy import Policy, PolicyError, load_policy

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
    public_docs: bool = True
    """Serve /openapi.json and /docs without a token (C{--no-public-docs} turns it off)."""
    # Edge protection: body limit, timeouts, load shedding, CORS, rate limits.
    max_body_bytes: int = 32 * 1024 * 1024
    http_timeout: float = 60.0
    max_in_flight: int = 2000
    cors_origins: tuple[str, ...] = ()
    cors_headers: tuple[str, ...] = ()
    rate_limit_rps: float = 0.0
    rate_limit_burst: float = 0.0
    metrics_public: bool = True
    # Sharing reads: identical reads in flight always share a call; a cache is opt-in.
    coalesce_reads: bool = True
    read_cache_ms: float = 0.0
    # Processes: N workers sharing one listening socket opened by a supervising parent.
    workers: int = 1
    worker_fd: int | None = None
    # TLS towards Cuebot (a TLS terminator in front of it).
    cuebot_tls: bool = False
    cuebot_ca: bytes | None = field(default=None, repr=False)
    cuebot_client_cert: bytes | None = field(default=None, repr=False)
    cuebot_client_key: bytes | None = field(default=None, repr=False)
    cuebot_server_name: str | None = None
    # Token key sources beside the secret, issuer/audience checks, policy and audit.
    jwt_public_key_file: str | None = None
    jwt_public_key: VerifyingKey | None = field(default=None, repr=False, compare=False)
    jwks_url: str | None = None
    jwks_max_age: float = DEFAULT_MAX_AGE
    jwks_min_interval: float = DEFAULT_MIN_INTERVAL
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    policy_file: str | None = None
    policy: Policy | None = field(default=None, repr=False, compare=False)
    audit_log: str | None = None


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
    cert, key = env.get("TLS_CERT_FILE"), env.get("TLS_KEY_FILE")
    if bool(cert) != bool(key):
        raise ConfigError("TLS_CERT_FILE/TLS_KEY_FILE: set both or neither")
    if cert and key and not options.get("port"):
        for path, var in ((cert, "TLS_CERT_FILE"), (key, "TLS_KEY_FILE")):
            if not Path(path).is_file():
                raise ConfigError(f"{var}: no such file: {path}")
            try:
                pem = Path(path).read_bytes()
            except OSError as error:
                raise ConfigError(f"{var}: cannot read {path}: {error.strerror}") from None
            if b"-----BEGIN" not in pem:
                raise ConfigError(f"{var}: {path} is not a PEM file")
        given = [
            f"ssl:{given[0]}:privateKey={quoteStringArgument(key)}:certKey={quoteStringArgument(cert)}"
        ]
    listen = []
    for description in given:
        if description.isdigit():
            if not 0 < int(description) < 65536:
                raise ConfigError(f"--port: expected a TCP port number, got {description!r}")
            description = f"tcp:{description}"
        listen.append(description)
    return tuple(listen)


def _secret(options: Mapping[str, Any], env: Mapping[str, str], optional: bool) -> bytes:
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
    if optional:
        return b""
    raise ConfigError(
        "JWT_SECRET: no way to verify tokens; set JWT_SECRET or JWT_SECRET_FILE (shared "
        "HMAC secret), JWT_PUBLIC_KEY_FILE (public key) or JWKS_URL (identity provider), "
        "or pass --jwt-secret-file, --jwt-public-key or --jwks-url "
        "(or --demo to try the gateway)"
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
    access, warnings = _access_settings(options, env)
    has_keys = access["jwt_public_key"] is not None or access["jwks_url"] is not None
    secret = _secret(options, env, demo or has_keys)
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
        public_docs=not options.get("no-public-docs"),
        **_edge_settings(options, env),
        **_cuebot_tls_settings(options, env),
        **access,
    )


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _edge_settings(options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    rps = _number(options, env, "rate-limit-rps", "RATE_LIMIT_RPS", 0.0)
    burst = _number(options, env, "rate-limit-burst", "RATE_LIMIT_BURST", 0.0)
    return {
        "max_body_bytes": _integer(
            options, env, "max-body-bytes", "MAX_BODY_BYTES", 32 * 1024 * 1024, 1
        ),
        "http_timeout": _number(
            options, env, "http-timeout", "HTTP_TIMEOUT", 60.0, duration=True, minimum=1.0
        ),
        "max_in_flight": _integer(options, env, "max-in-flight", "MAX_IN_FLIGHT", 2000, 1),
        "cors_origins": _csv(_pick(options, env, "cors-origins", "CORS_ORIGINS")),
        "cors_headers": _csv(_pick(options, env, "cors-headers", "CORS_HEADERS")),
        "rate_limit_rps": rps,
        "rate_limit_burst": burst if burst > 0 else max(1.0, 2 * rps),
        "metrics_public": not options.get("metrics-require-token"),
        "coalesce_reads": not options.get("no-coalesce"),
        "read_cache_ms": _number(options, env, "read-cache-ms", "READ_CACHE_MS", 0.0),
        "workers": _integer(options, env, "workers", "WORKERS", 1, 1),
        "worker_fd": int(options["worker-fd"]) if options.get("worker-fd") else None,
    }


def _read_pem(
    options: Mapping[str, Any], env: Mapping[str, str], opt: str, var: str
) -> bytes | None:
    path = _pick(options, env, opt, var)
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{_name(opt, var)}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{_name(opt, var)}: {path} is not a PEM file")
    return data


def _cuebot_tls_settings(options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    ca = _read_pem(options, env, "cuebot-ca", "CUEBOT_CA_FILE")
    cert = _read_pem(options, env, "cuebot-client-cert", "CUEBOT_CLIENT_CERT_FILE")
    key = _read_pem(options, env, "cuebot-client-key", "CUEBOT_CLIENT_KEY_FILE")
    if (cert is None) != (key is None):
        raise ConfigError("--cuebot-client-cert/--cuebot-client-key: give both or neither")
    flag = options.get("cuebot-tls") or env.get("CUEBOT_TLS", "").lower() in ("1", "true", "yes")
    return {
        "cuebot_tls": bool(flag or ca or cert),
        "cuebot_ca": ca,
        "cuebot_client_cert": cert,
        "cuebot_client_key": key,
        "cuebot_server_name": _pick(options, env, "cuebot-server-name", "CUEBOT_SERVER_NAME"),
    }


def _access_settings(
    options: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Public key, JWKS, issuer/audience, policy and audit settings, and their warnings."""
    warnings: list[str] = []
    key_path = _pick(options, env, "jwt-public-key", "JWT_PUBLIC_KEY_FILE") or None
    public_key = None
    if key_path:
        name = _name("jwt-public-key", "JWT_PUBLIC_KEY_FILE")
        try:
            public_key = load_public_key(Path(key_path).read_bytes())
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {key_path}: {error.strerror}") from None
        except ValueError as error:
            raise ConfigError(f"{name}: {key_path} {error}") from None
    jwks_url = (_pick(options, env, "jwks-url", "JWKS_URL") or "").strip() or None
    if jwks_url is not None:
        parsed = urlsplit(jwks_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"--jwks-url (JWKS_URL): expected an https:// URL, got {jwks_url!r}")
        if parsed.scheme == "http" and parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
            warnings.append("JWKS_URL is plain http; signing keys could be replaced in transit")
    policy_path = _pick(options, env, "policy", "POLICY_FILE") or None
    policy = None
    if policy_path:
        from opencue_gw.rpcs import load_rpcs

        methods = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
        try:
            policy = load_policy(policy_path, methods)
        except PolicyError as error:
            raise ConfigError(f"--policy (POLICY_FILE): {error}") from None
    audit_log = _pick(options, env, "audit-log", "AUDIT_LOG") or None
    if audit_log:
        # Absolute, so a daemon that changes directory still writes where it was told.
        audit_log = os.path.abspath(audit_log)
        if not os.path.isdir(os.path.dirname(audit_log)):
            raise ConfigError(
                f"--audit-log (AUDIT_LOG): the directory of {audit_log} does not exist"
            )
    return {
        "jwt_public_key_file": key_path,
        "jwt_public_key": public_key,
        "jwks_url": jwks_url,
        "jwks_max_age": _number(
            options, env, "jwks-max-age", "JWKS_MAX_AGE", DEFAULT_MAX_AGE, duration=True
        ),
        "jwks_min_interval": _number(
            options,
            env,
            "jwks-min-refresh",
            "JWKS_MIN_REFRESH",
            DEFAULT_MIN_INTERVAL,
            duration=True,
        ),
        "jwt_issuer": _pick(options, env, "jwt-issuer", "JWT_ISSUER") or None,
        "jwt_audience": _pick(options, env, "jwt-audience", "JWT_AUDIENCE") or None,
        "policy_file": policy_path,
        "policy": policy,
        "audit_log": audit_log,
    }, warnings
