"""
Tests for L{opencue_gw.config}, the tap's L{Options}, and the command line's refusal of
bad settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel

from opencue_gw.config import ConfigError, GatewayConfig, parse_duration, resolve_config

REPO = Path(__file__).resolve().parent.parent
GOOD_SECRET = "a-perfectly-long-random-secret-0123456789abcdef"
GATEWAY_VARS = {
    "CUEBOT_ENDPOINT",
    "REST_PORT",
    "JWT_SECRET",
    "JWT_SECRET_FILE",
    "GRPC_MAX_RECV_MSG_MB",
    "GRPC_TIMEOUT",
    "LOG_LEVEL",
    "SHUTDOWN_TIMEOUT",
    "JWT_LEEWAY",
}


def resolve(options: dict[str, Any] | None = None, **env: str) -> GatewayConfig:
    env.setdefault("JWT_SECRET", GOOD_SECRET)
    return resolve_config(options or {}, env)


def config_error(options: dict[str, Any] | None = None, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(options, **env)
    return str(info.value)


def test_defaults() -> None:
    """With only a secret set, every other setting takes its documented default."""
    config = resolve()
    assert config.cuebot == "localhost:8443"
    assert config.listen == ("tcp:8448",)
    assert config.max_recv_bytes == 256 * 1024 * 1024
    assert config.grpc_timeout == 30.0
    assert config.grace_period == 30.0
    assert config.log_level is LogLevel.info
    assert config.jwt_secret == GOOD_SECRET.encode()
    assert config.require_exp is True
    assert config.jwt_leeway == 0.0
    assert config.strict_json is False
    assert config.demo is False
    assert config.warnings == ()


def test_go_env_vars_honoured() -> None:
    """The Go gateway's four variables keep working."""
    config = resolve(
        CUEBOT_ENDPOINT="cuebot.example:9443",
        REST_PORT="9448",
        JWT_SECRET="another-long-enough-secret-0123456789abcdef",
        GRPC_MAX_RECV_MSG_MB="64",
    )
    assert config.cuebot == "cuebot.example:9443"
    assert config.listen == ("tcp:9448",)
    assert config.jwt_secret == b"another-long-enough-secret-0123456789abcdef"
    assert config.max_recv_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("0", None)],
)
def test_grpc_timeout(text: str, seconds: float | None) -> None:
    """GRPC_TIMEOUT takes durations, and 0 means no deadline."""
    assert resolve(GRPC_TIMEOUT=text).grpc_timeout == seconds


def test_parse_duration_hours() -> None:
    """Hours are understood too."""
    assert parse_duration("1h") == 3600.0


def test_newly_read_env_vars() -> None:
    """LOG_LEVEL, SHUTDOWN_TIMEOUT and JWT_LEEWAY, which Go never read, now work."""
    config = resolve(LOG_LEVEL="DEBUG", SHUTDOWN_TIMEOUT="5s", JWT_LEEWAY="2s")
    assert config.log_level is LogLevel.debug
    assert config.grace_period == 5.0
    assert config.jwt_leeway == 2.0


def test_jwt_secret_file_env(tmp_path: Path) -> None:
    """JWT_SECRET_FILE is read, with surrounding whitespace stripped, and beats JWT_SECRET."""
    path = tmp_path / "secret"
    path.write_bytes(b"  file-secret-0123456789abcdef-0123456789\n\n")
    config = resolve(JWT_SECRET_FILE=str(path))
    assert config.jwt_secret == b"file-secret-0123456789abcdef-0123456789"


def test_jwt_secret_file_option_beats_env(tmp_path: Path) -> None:
    """--jwt-secret-file beats both JWT_SECRET_FILE and JWT_SECRET."""
    option_file = tmp_path / "option"
    option_file.write_text("from-option-0123456789abcdef-0123456789\n")
    env_file = tmp_path / "env"
    env_file.write_text("from-env-file-0123456789abcdef-012345678\n")
    config = resolve({"jwt-secret-file": str(option_file)}, JWT_SECRET_FILE=str(env_file))
    assert config.jwt_secret == b"from-option-0123456789abcdef-0123456789"


def test_options_beat_env() -> None:
    """An option wins over its environment variable."""
    config = resolve(
        {
            "cuebot": "opt-host:1234",
            "port": ["tcp:9000"],
            "grpc-timeout": "5s",
            "log-level": "error",
            "grace-period": "1",
            "grpc-max-recv-mb": "8",
            "jwt-leeway": "3",
        },
        CUEBOT_ENDPOINT="env-host:4321",
        REST_PORT="7000",
        GRPC_TIMEOUT="60s",
        LOG_LEVEL="debug",
        SHUTDOWN_TIMEOUT="99",
        GRPC_MAX_RECV_MSG_MB="16",
        JWT_LEEWAY="9",
    )
    assert config.cuebot == "opt-host:1234"
    assert config.listen == ("tcp:9000",)
    assert config.grpc_timeout == 5.0
    assert config.log_level is LogLevel.error
    assert config.grace_period == 1.0
    assert config.max_recv_bytes == 8 * 1024 * 1024
    assert config.jwt_leeway == 3.0


def test_bare_port_options_become_tcp() -> None:
    """A bare port number becomes tcp:<port>; endpoint descriptions pass through."""
    config = resolve({"port": ["9000", "tcp:9001:interface=127.0.0.1"]})
    assert config.listen == ("tcp:9000", "tcp:9001:interface=127.0.0.1")


def test_flags() -> None:
    """--strict-json and --allow-missing-exp switch their settings."""
    config = resolve({"strict-json": 1, "allow-missing-exp": 1})
    assert config.strict_json is True
    assert config.require_exp is False


@pytest.mark.parametrize(
    ("options", "env", "named"),
    [
        ({"port": ["70000"]}, {}, "--port"),
        ({"port": ["0"]}, {}, "--port"),
        ({}, {"REST_PORT": "abc"}, "REST_PORT"),
        ({}, {"REST_PORT": "70000"}, "REST_PORT"),
        ({}, {"REST_PORT": "0"}, "REST_PORT"),
        ({}, {"GRPC_TIMEOUT": "abc"}, "GRPC_TIMEOUT"),
        ({"grpc-timeout": "abc"}, {}, "--grpc-timeout"),
        ({"grace-period": "-5"}, {}, "--grace-period"),
        ({}, {"SHUTDOWN_TIMEOUT": "-1s"}, "SHUTDOWN_TIMEOUT"),
        ({}, {"GRPC_MAX_RECV_MSG_MB": "0"}, "GRPC_MAX_RECV_MSG_MB"),
        ({}, {"GRPC_MAX_RECV_MSG_MB": "x"}, "GRPC_MAX_RECV_MSG_MB"),
        ({}, {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({}, {"JWT_LEEWAY": "soon"}, "JWT_LEEWAY"),
        ({}, {"CUEBOT_ENDPOINT": "nohostport"}, "CUEBOT_ENDPOINT"),
        ({}, {"CUEBOT_ENDPOINT": "host:99999"}, "CUEBOT_ENDPOINT"),
        ({"cuebot": "host:"}, {}, "--cuebot"),
        ({"codec-threads": "0"}, {}, "--codec-threads"),
    ],
)
def test_bad_values_name_the_setting(
    options: dict[str, Any], env: dict[str, str], named: str
) -> None:
    """Every unusable value is refused with a message naming the option or variable."""
    message = config_error(options, **env)
    assert named in message
    for value in (*options.values(), *env.values()):
        for text in value if isinstance(value, list) else [value]:
            assert repr(text) in message


def test_bad_port_description_refused_when_building() -> None:
    """A --port that is not an endpoint description is refused by makeService, not at start."""
    from twisted.internet.testing import MemoryReactorClock

    from opencue_gw.tap import build_service

    config = resolve({"port": ["nonsense:1"]})
    with pytest.raises(ConfigError) as info:
        build_service(config, MemoryReactorClock())
    assert "--port" in str(info.value) and "nonsense:1" in str(info.value)


def test_missing_secret() -> None:
    """No secret at all is refused, and the message says to set JWT_SECRET."""
    with pytest.raises(ConfigError) as info:
        resolve_config({}, {})
    assert "JWT_SECRET" in str(info.value)


def test_empty_secret() -> None:
    """An empty JWT_SECRET is refused rather than used as an HMAC key."""
    assert "JWT_SECRET" in config_error(JWT_SECRET="")
    assert "JWT_SECRET" in config_error(JWT_SECRET="   ")


def test_unreadable_secret_file(tmp_path: Path) -> None:
    """A secret file that cannot be read is refused, naming the setting and the path."""
    missing = tmp_path / "nope"
    message = config_error(JWT_SECRET_FILE=str(missing))
    assert "JWT_SECRET_FILE" in message and str(missing) in message
    assert "--jwt-secret-file" in config_error({"jwt-secret-file": str(tmp_path)})


def test_empty_secret_file(tmp_path: Path) -> None:
    """A secret file holding only whitespace is refused."""
    path = tmp_path / "empty"
    path.write_text(" \n\t\n")
    message = config_error({"jwt-secret-file": str(path)})
    assert "--jwt-secret-file" in message and "empty" in message


def test_demo_without_secret() -> None:
    """--demo needs no secret (the demo makes one)."""
    config = resolve_config({"demo": 1}, {})
    assert config.demo is True
    assert config.jwt_secret == b""
    assert config.warnings == ()


@pytest.mark.parametrize(
    "published",
    [
        "default-secret-key",
        "opencue-dev-jwt-secret-change-in-production",
        "dev-secret-key-change-in-production",
        "production-secret-key",
    ],
)
def test_published_secret_warns(published: str) -> None:
    """A secret from OpenCue's examples is accepted but warned about."""
    warnings = resolve(JWT_SECRET=published).warnings
    assert len(warnings) == 1
    assert "published" in warnings[0]


def test_short_secret_warns() -> None:
    """A secret shorter than 32 bytes is accepted with a warning; 32 bytes is fine."""
    warnings = resolve(JWT_SECRET="x" * 31).warnings
    assert len(warnings) == 1 and "32 bytes" in warnings[0]
    assert resolve(JWT_SECRET="x" * 32).warnings == ()


def test_tap_options_parse() -> None:
    """Options collects repeated --port/-p into a list, and parses flags and parameters."""
    from opencue_gw.tap import Options

    options = Options()
    options.parseOptions(
        [
            "--port",
            "9000",
            "-p",
            "tcp:9001",
            "--strict-json",
            "--allow-missing-exp",
            "--grpc-timeout",
            "5s",
            "--cuebot",
            "cue:8443",
            "--log-level",
            "debug",
        ]
    )
    assert options["port"] == ["9000", "tcp:9001"]
    assert options["strict-json"] and options["allow-missing-exp"]
    assert not options["demo"]
    assert options["grpc-timeout"] == "5s"
    assert options["jwt-secret-file"] is None
    config = resolve_config(options, {"JWT_SECRET": GOOD_SECRET})
    assert config.listen == ("tcp:9000", "tcp:9001")
    assert config.cuebot == "cue:8443"
    assert config.grpc_timeout == 5.0
    assert config.log_level is LogLevel.debug
    assert Options()["port"] == []


def run_twistd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_bad_setting_is_one_line_exit_2() -> None:
    """twistd opencue-gateway with a bad option exits 2 with one stderr line naming it."""
    result = run_twistd("opencue-gateway", "--grpc-timeout", "abc", JWT_SECRET="x")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--grpc-timeout" in lines[0] and "'abc'" in lines[0]


def test_cli_missing_secret_is_one_line_exit_2() -> None:
    """Without any secret the gateway exits 2 with one stderr line about JWT_SECRET."""
    result = run_twistd("opencue-gateway")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "JWT_SECRET" in lines[0]
