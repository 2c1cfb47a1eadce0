# -*- test-case-name: tests.test_config -*-
"""
Turning command-line options and the Go gateway's environment variables into one
validated L{GatewayConfig}.

Every setting is declared once, in L{opencue_gw.settings.SETTINGS}; this module reads
them and builds what needs more than one setting or more than parsing text (listeners,
the secret, PEM files, the policy, the JWKS URL).

The Go gateway's variables (C{CUEBOT_ENDPOINT}, C{REST_PORT}, C{JWT_SECRET},
C{GRPC_MAX_RECV_MSG_MB}) keep working so existing deployments move over unchanged; the
ones its documentation promised but it never read (C{GRPC_TIMEOUT}, C{LOG_LEVEL},
C{JWT_SECRET_FILE}, C{SHUTDOWN_TIMEOUT}) now work too. An option beats its variable.
Every bad value is refused with a L{ConfigError} naming the setting, where the Go
gateway silently fell back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.endpoints import quoteStringArgument
from twisted.logger import LogLevel

from opencue_gw.auth.keys import VerifyingKey, load_public_key
from opencue_gw.auth.policy import Policy, PolicyError, load_policy
from opencue_gw.facilities import FacilitySpec, load_facilities_file, resolve_facilities
from opencue_gw.settings import (
    MIB,
    SETTINGS,
    ConfigError,
    Setting,
    check_not_above,
    parse_duration,
    raw_text,
    setting,
    value_of,
)
from opencue_gw.shared.address import RedisAddress, parse_redis_url

__all__ = ["ConfigError", "GatewayConfig", "parse_duration", "resolve_config"]

# Secrets the OpenCue documentation and compose files publish; anyone can forge tokens.
PUBLISHED_SECRETS = frozenset(
    {
        b"default-secret-key",
        b"opencue-dev-jwt-secret-change-in-production",
        b"dev-secret-key-change-in-production",
        b"production-secret-key",
    }
)


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """
    Everything the service tree is built from. Only L{resolve_config} makes one, so
    the defaults live in L{SETTINGS} alone; tests adjust one with C{dataclasses.replace}.
    """

    cuebot: str
    """The default facility's Cuebot replicas, C{HOST:PORT[,HOST:PORT...]}."""
    default_facility: str
    facilities: tuple[FacilitySpec, ...]
    """Every facility the gateway serves, the default first (one entry without any)."""
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
    warnings: tuple[str, ...]
    public_docs: bool
    """Serve /openapi.json and /docs without a token (C{--no-public-docs} turns it off)."""
    # Edge protection: body limit, timeouts, load shedding, CORS, rate limits.
    max_body_bytes: int
    http_timeout: float
    max_in_flight: int
    cors_origins: tuple[str, ...]
    cors_headers: tuple[str, ...]
    rate_limit_rps: float
    rate_limit_burst: float
    metrics_public: bool
    # Request-head limits: 414 for a longer request line, 431 for the header limits.
    max_request_line: int
    max_header_line: int
    max_headers: int
    max_head_bytes: int
    # Enum names this gateway does not know: refused with 400 unless allowed (then dropped).
    allow_unknown_enums: bool
    # Sharing reads: identical reads in flight always share a call; a cache is opt-in.
    coalesce_reads: bool
    read_cache_ms: float
    # Concurrent by-id reads (GetJobs by ids) sent to Cuebot as one call.
    batch_reads: bool
    # Serving a read's last good answer while Cuebot is unavailable (0 = off).
    stale_if_error: float
    stale_max_bytes: int
    # Shared state in Redis (None: each process keeps its own).
    redis: RedisAddress | None
    redis_timeout: float
    # Live farm events: polling, heartbeats, resume history and subscriber limits.
    events_interval: float
    events_heartbeat: float
    events_history: int
    events_max_subscribers: int
    events_max_per_caller: int
    events_max_buffer: int
    events_poll_timeout: float
    events_max_wait: float
    # Processes: N workers sharing one listening socket opened by a supervising parent.
    workers: int
    worker_fd: int | None
    # TLS towards Cuebot (a TLS terminator in front of it).
    cuebot_tls: bool
    cuebot_ca: bytes | None = field(repr=False)
    cuebot_client_cert: bytes | None = field(repr=False)
    cuebot_client_key: bytes | None = field(repr=False)
    cuebot_server_name: str | None
    # Token key sources beside the secret, issuer/audience checks, policy and audit.
    jwt_public_key_file: str | None
    jwt_public_key: VerifyingKey | None = field(repr=False, compare=False)
    jwks_url: str | None
    jwks_max_age: float
    jwks_min_interval: float
    jwt_issuer: str | None
    jwt_audience: str | None
    policy_file: str | None
    policy: Policy | None = field(repr=False, compare=False)
    audit_log: str | None


def resolve_config(options: Mapping[str, Any], env: Mapping[str, str]) -> GatewayConfig:
    """Validate every setting; raise L{ConfigError} at the first unusable one."""

    def get(key: str) -> Any:
        return value_of(setting(key), options, env)

    direct = {
        entry.field: value_of(entry, options, env) for entry in SETTINGS if not entry.composite
    }
    check_not_above(lambda key: direct[setting(key).field])
    facilities = _facilities(options, env, direct["cuebot"], direct["default_facility"])
    access, warnings = _access_settings(options, env, [f.name for f in facilities])
    has_keys = access["jwt_public_key"] is not None or access["jwks_url"] is not None
    secret = _secret(options, env, direct["demo"] or has_keys)
    if secret in PUBLISHED_SECRETS:
        warnings.append(
            "the JWT secret is one published in OpenCue's examples; anyone can forge tokens"
        )
    elif secret and len(secret) < 32:
        warnings.append("the JWT secret is shorter than 32 bytes; prefer a longer random one")
    burst = get("rate-limit-burst")
    return GatewayConfig(
        **direct,
        facilities=facilities,
        listen=_listen(options, env),
        jwt_secret=secret,
        max_recv_bytes=get("grpc-max-recv-mb") * MIB,
        grpc_timeout=get("grpc-timeout") or None,
        require_exp=not get("allow-missing-exp"),
        public_docs=not get("no-public-docs"),
        metrics_public=not get("metrics-require-token"),
        coalesce_reads=not get("no-coalesce"),
        batch_reads=not get("no-batch"),
        rate_limit_burst=burst if burst > 0 else max(1.0, 2 * direct["rate_limit_rps"]),
        jwks_min_interval=get("jwks-min-refresh"),
        redis=_redis(options, env),
        warnings=tuple(warnings),
        **_cuebot_tls_settings(options, env),
        **access,
    )


def _redis(options: Mapping[str, Any], env: Mapping[str, str]) -> RedisAddress | None:
    url_setting, file_setting = setting("redis"), setting("redis-password-file")
    url = raw_text(url_setting, options, env)
    if not url:
        return None
    return parse_redis_url(
        url,
        raw_text(file_setting, options, env) or None,
        name=url_setting.source(options),
        password_name=file_setting.source(options),
    )


def _facilities(
    options: Mapping[str, Any], env: Mapping[str, str], cuebot: str, default_name: str
) -> tuple[FacilitySpec, ...]:
    """The default facility (C{--cuebot}'s) and those of C{--facility} and the file."""
    entry, file_entry = setting("facility"), setting("facilities-file")
    named: list[tuple[str, str]] = []
    given = options.get("facility") or ()
    for item in [given] if isinstance(given, str) else given:
        # Text from a plain mapping, or pairs already parsed by Options.opt_facility.
        named.extend(entry.parse_text(item) if isinstance(item, str) else [tuple(item)])
    if not named:
        text = raw_text(entry, {}, env)
        if text is not None and text.strip():
            named.extend(entry.parse_text(text))
    path = raw_text(file_entry, options, env)
    if path:
        try:
            named.extend(load_facilities_file(path))
        except ValueError as error:
            raise ConfigError(f"{file_entry.name}: {error}") from None
    cuebot_entry = setting("cuebot")
    try:
        return resolve_facilities(
            default_name,
            cuebot,
            cuebot_given=raw_text(cuebot_entry, options, env) is not None,
            named=named,
        )
    except ValueError as error:
        raise ConfigError(f"{entry.name}: {error}") from None


def _listen(options: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    port, cert_file, key_file = setting("port"), setting("tls-cert-file"), setting("tls-key-file")
    given = list(options.get("port") or ())
    if not given:
        rest_port = raw_text(port, {}, env) or port.default
        if not rest_port.strip().isdigit() or not 0 < int(rest_port) < 65536:
            raise ConfigError(f"{port.variable}: expected a TCP port number, got {rest_port!r}")
        given = [rest_port.strip()]
    cert, key = raw_text(cert_file, options, env), raw_text(key_file, options, env)
    if bool(cert) != bool(key):
        raise ConfigError(f"{cert_file.name}/{key_file.name}: set both or neither")
    if cert and key and not options.get("port"):
        for path, entry in ((cert, cert_file), (key, key_file)):
            if not Path(path).is_file():
                raise ConfigError(f"{entry.name}: no such file: {path}")
            _read_pem_file(entry, path)
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
    secret_file, secret_var = setting("jwt-secret-file"), setting("jwt-secret")
    path = raw_text(secret_file, options, env)
    if path:
        name = secret_file.source(options)
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {path}: {error.strerror}") from None
        if not secret:
            raise ConfigError(f"{name}: {path} is empty")
        return secret
    assert secret_var.variable is not None
    value = env.get(secret_var.variable)
    if value is not None:
        if not value.strip():
            raise ConfigError(
                f"{secret_var.name}: is empty; an empty HMAC key would accept forged tokens"
            )
        return value.encode("utf-8")
    if optional:
        return b""
    raise ConfigError(
        "JWT_SECRET: no way to verify tokens; set JWT_SECRET or JWT_SECRET_FILE (shared "
        "HMAC secret), JWT_PUBLIC_KEY_FILE (public key) or JWKS_URL (identity provider), "
        "or pass --jwt-secret-file, --jwt-public-key or --jwks-url "
        "(or --demo to try the gateway)"
    )


def _read_pem_file(entry: Setting, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{entry.name}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{entry.name}: {path} is not a PEM file")
    return data


def _read_pem(options: Mapping[str, Any], env: Mapping[str, str], key: str) -> bytes | None:
    entry = setting(key)
    path = raw_text(entry, options, env)
    return _read_pem_file(entry, path) if path else None


def _cuebot_tls_settings(options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    ca = _read_pem(options, env, "cuebot-ca")
    cert = _read_pem(options, env, "cuebot-client-cert")
    key = _read_pem(options, env, "cuebot-client-key")
    if (cert is None) != (key is None):
        raise ConfigError("--cuebot-client-cert/--cuebot-client-key: give both or neither")
    flag = value_of(setting("cuebot-tls"), options, env)
    return {
        "cuebot_tls": bool(flag or ca or cert),
        "cuebot_ca": ca,
        "cuebot_client_cert": cert,
        "cuebot_client_key": key,
    }


def _access_settings(
    options: Mapping[str, Any], env: Mapping[str, str], facilities: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """Public key, JWKS URL and policy, which need more than parsing, and their warnings."""
    warnings: list[str] = []
    key_entry = setting("jwt-public-key")
    key_path = raw_text(key_entry, options, env)
    public_key = None
    if key_path:
        try:
            public_key = load_public_key(Path(key_path).read_bytes())
        except OSError as error:
            raise ConfigError(
                f"{key_entry.name}: cannot read {key_path}: {error.strerror}"
            ) from None
        except ValueError as error:
            raise ConfigError(f"{key_entry.name}: {key_path} {error}") from None
    jwks_entry = setting("jwks-url")
    jwks_url = (raw_text(jwks_entry, options, env) or "").strip() or None
    if jwks_url is not None:
        parsed = urlsplit(jwks_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"{jwks_entry.name}: expected an https:// URL, got {jwks_url!r}")
        if parsed.scheme == "http" and parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
            warnings.append(
                f"{jwks_entry.variable} is plain http; signing keys could be replaced in transit"
            )
    policy_entry = setting("policy")
    policy_path = raw_text(policy_entry, options, env)
    policy = None
    if policy_path:
        from opencue_gw.upstream.rpcs import load_rpcs

        methods = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
        try:
            policy = load_policy(policy_path, methods, facilities)
        except PolicyError as error:
            raise ConfigError(f"{policy_entry.name}: {error}") from None
    return {
        "jwt_public_key_file": key_path,
        "jwt_public_key": public_key,
        "jwks_url": jwks_url,
        "policy_file": policy_path,
        "policy": policy,
    }, warnings
