"""
Tests for L{opencue_gw.config}, the settings table of L{opencue_gw.settings} and the
L{Options} made from it, the README's agreement with it, and the command line's refusal
of bad settings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel
from twisted.python import usage

from opencue_gw.config import ConfigError, GatewayConfig, parse_duration, resolve_config
from opencue_gw.settings import SETTINGS, BadSetting, Options, Setting, setting

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
    """
    Options collects repeated --port/-p into a list, and parses flags and parameters
    with each setting's coerce function (a duration arrives as seconds).
    """
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
    assert options["grpc-timeout"] == 5.0
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


# The settings table: one declaration per setting, from which options, environment
# lookup, --help and the README's table must all agree.


def documented(entry: Setting) -> bool:
    """Settings an operator sets (not the internal worker hand-over)."""
    return not entry.internal


def test_table_keys_and_names_are_unique() -> None:
    """No option or variable is declared twice, and each direct setting has its field."""
    options = [entry.option for entry in SETTINGS if entry.option is not None]
    variables = [entry.variable for entry in SETTINGS if entry.variable is not None]
    assert len(options) == len(set(options))
    assert len(variables) == len(set(variables))
    fields = {f.name for f in dataclasses.fields(GatewayConfig)}
    for entry in SETTINGS:
        if not entry.composite:
            assert entry.field in fields, entry.key


def test_defaults_come_from_the_table() -> None:
    """With nothing set, every directly copied field holds its table default."""
    config = resolve()
    for entry in SETTINGS:
        if not entry.composite:
            assert getattr(config, entry.field) == entry.default, entry.key
    assert config.max_recv_bytes == setting("grpc-max-recv-mb").default * 1024 * 1024
    assert config.grpc_timeout == setting("grpc-timeout").default


@pytest.mark.parametrize(
    "entry",
    [e for e in SETTINGS if e.default is not None and e.shown is None and not e.flag],
    ids=lambda e: e.key,
)
def test_documented_default_reads_back(entry: Setting) -> None:
    """The default as --help and the README write it parses back to the default itself."""
    if isinstance(entry.default, tuple):
        assert entry.documented_default == "off" and entry.default == ()
    else:
        assert entry.parse(entry.documented_default) == entry.default


def test_every_option_help_names_its_variable_and_default() -> None:
    """Each option's help carries its variable (if any) and its default."""
    docs = {row[0]: row[-1] if len(row) == 3 else row[3] for row in Options.optFlags}
    docs.update({row[0]: row[3] for row in Options.optParameters})
    docs["port"] = Options.opt_port.__doc__ or ""
    for entry in SETTINGS:
        if entry.option is None:
            continue
        doc = docs[entry.option]
        assert f"default: {entry.documented_default}]" in doc, entry.key
        if entry.variable is not None:
            assert f"${entry.variable};" in doc, entry.key


def test_help_lists_every_variable() -> None:
    """--help shows every variable, the environment-only ones in the description."""
    text = str(Options())
    for entry in SETTINGS:
        if entry.variable is not None:
            assert entry.variable in text, entry.key
    assert "Environment only" in text and "JWT_SECRET:" in text


def test_every_parameter_has_a_coerce_function() -> None:
    """Twisted parses each parameter with the setting's parser, the fifth element."""
    for row in Options.optParameters:
        assert row[4] == setting(row[0]).coerce
    flags = {row[0] for row in Options.optFlags}
    assert flags == {entry.option for entry in SETTINGS if entry.flag}


def readme_rows() -> list[list[str]]:
    """The cells of the README's settings table (below its "option | variable" header)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("| option | variable | default | meaning |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().split("|")[1:-1]])
    return rows


def test_readme_table_agrees_with_settings() -> None:
    """Each README row is one setting with the table's option, variable and default."""
    rows = readme_rows()
    assert len(rows) > 20
    seen = set()
    for option_cell, variable_cell, default_cell, _meaning in rows:
        options = re.findall(r"`--([a-z0-9-]+)", option_cell)
        variables = re.findall(r"`([A-Z][A-Z0-9_]+)`", variable_cell)
        assert len(options) <= 1 and len(variables) <= 1, (option_cell, variable_cell)
        assert options or variables, option_cell
        if options:
            entry = setting(options[0])
        else:
            (entry,) = [e for e in SETTINGS if e.option is None and e.variable == variables[0]]
        assert variables == ([entry.variable] if entry.variable else []), entry.key
        assert default_cell.replace("`", "") == entry.documented_default, entry.key
        assert entry.key not in seen, entry.key
        seen.add(entry.key)
    assert seen == {entry.key for entry in SETTINGS if documented(entry)}


def test_env_example_names_every_variable() -> None:
    """etc/opencue-gateway.env mentions every variable of the table."""
    text = (REPO / "etc" / "opencue-gateway.env").read_text(encoding="utf-8")
    for entry in SETTINGS:
        if entry.variable is not None:
            assert re.search(rf"^#?{entry.variable}=", text, re.MULTILINE), entry.variable


@pytest.mark.parametrize(
    ("option", "variable", "given", "env_text", "from_option", "from_env"),
    [
        ("max-body-bytes", "MAX_BODY_BYTES", "10", "20", 10, 20),
        ("http-timeout", "HTTP_TIMEOUT", "5s", "2m", 5.0, 120.0),
        ("max-in-flight", "MAX_IN_FLIGHT", "3", "4", 3, 4),
        (
            "cors-origins",
            "CORS_ORIGINS",
            "https://a",
            "https://b,*",
            ("https://a",),
            ("https://b", "*"),
        ),
        ("read-cache-ms", "READ_CACHE_MS", "5", "7.5", 5.0, 7.5),
        ("jwks-max-age", "JWKS_MAX_AGE", "1m", "1h", 60.0, 3600.0),
        ("max-request-line", "MAX_REQUEST_LINE", "1000", "2000", 1000, 2000),
        ("max-header-line", "MAX_HEADER_LINE", "3000", "4000", 3000, 4000),
        ("max-headers", "MAX_HEADERS", "10", "20", 10, 20),
        ("max-head-bytes", "MAX_HEAD_BYTES", "70000", "80000", 70000, 80000),
        ("stale-if-error", "STALE_IF_ERROR", "60s", "500ms", 60.0, 0.5),
        ("stale-max-bytes", "STALE_MAX_BYTES", "1024", "2048", 1024, 2048),
    ],
)
def test_precedence_option_env_default(
    option: str, variable: str, given: str, env_text: str, from_option: Any, from_env: Any
) -> None:
    """The option beats the variable, which beats the default; an empty variable is unset."""
    field = setting(option).field
    assert getattr(resolve({option: given}, **{variable: env_text}), field) == from_option
    parsed = Options()
    parsed.parseOptions([f"--{option}", given])
    assert getattr(resolve(parsed, **{variable: env_text}), field) == from_option
    assert getattr(resolve({}, **{variable: env_text}), field) == from_env
    assert getattr(resolve({}, **{variable: ""}), field) == setting(option).default


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"ALLOW_UNKNOWN_ENUMS": "true"}, "allow_unknown_enums", True),
        ({"ALLOW_UNKNOWN_ENUMS": "1"}, "allow_unknown_enums", True),
        ({"ALLOW_UNKNOWN_ENUMS": "false"}, "allow_unknown_enums", False),
        ({"ALLOW_UNKNOWN_ENUMS": "0"}, "allow_unknown_enums", False),
        ({"CUEBOT_TLS": "yes"}, "cuebot_tls", True),
        ({"STALE_IF_ERROR": "0"}, "stale_if_error", 0.0),
        ({"STALE_IF_ERROR": "2m"}, "stale_if_error", 120.0),
    ],
)
def test_flag_and_duration_variables(env: dict[str, str], field: str, value: Any) -> None:
    """Flags' variables take true/false and 1/0; durations take units."""
    assert getattr(resolve({}, **env), field) == value


def test_allow_unknown_enums_flag() -> None:
    """--allow-unknown-enums turns the setting on; it is off by default."""
    assert resolve().allow_unknown_enums is False
    options = Options()
    options.parseOptions(["--allow-unknown-enums"])
    assert resolve(options).allow_unknown_enums is True


@pytest.mark.parametrize(
    ("options", "env", "named"),
    [
        ({}, {"ALLOW_UNKNOWN_ENUMS": "maybe"}, "ALLOW_UNKNOWN_ENUMS"),
        ({}, {"CUEBOT_TLS": "sometimes"}, "CUEBOT_TLS"),
        ({"max-request-line": "0"}, {}, "--max-request-line"),
        ({}, {"MAX_REQUEST_LINE": "long"}, "MAX_REQUEST_LINE"),
        ({"max-header-line": "-1"}, {}, "--max-header-line"),
        ({}, {"MAX_HEADERS": "1.5"}, "MAX_HEADERS"),
        ({"max-head-bytes": "many"}, {}, "--max-head-bytes"),
        ({}, {"STALE_IF_ERROR": "a while"}, "STALE_IF_ERROR"),
        ({"stale-if-error": "-5s"}, {}, "--stale-if-error"),
        ({}, {"STALE_MAX_BYTES": "0"}, "STALE_MAX_BYTES"),
        ({"stale-max-bytes": "64M"}, {}, "--stale-max-bytes"),
    ],
)
def test_new_settings_refuse_bad_values(
    options: dict[str, Any], env: dict[str, str], named: str
) -> None:
    """The Step-0 settings refuse bad values with a message naming the setting and value."""
    message = config_error(options, **env)
    assert named in message
    for value in (*options.values(), *env.values()):
        assert repr(value) in message


@pytest.mark.parametrize(
    ("options", "env", "smaller"),
    [
        ({"max-head-bytes": "1000"}, {}, "--max-request-line"),
        ({}, {"MAX_HEAD_BYTES": "20000"}, "--max-header-line"),
        ({"max-request-line": "70000"}, {}, "--max-request-line"),
        ({}, {"MAX_HEADER_LINE": "100000", "MAX_HEAD_BYTES": "90000"}, "--max-header-line"),
    ],
)
def test_head_limits_cross_check(
    options: dict[str, Any], env: dict[str, str], smaller: str
) -> None:
    """A request line or header line limit above the head limit is refused, naming both."""
    message = config_error(options, **env)
    assert smaller in message and "--max-head-bytes" in message


def test_head_limits_within_head_bytes_accepted() -> None:
    """Limits equal to the head limit are fine, whichever way they are given."""
    config = resolve({"max-request-line": "4096"}, MAX_HEAD_BYTES="4096", MAX_HEADER_LINE="4096")
    assert (config.max_request_line, config.max_header_line, config.max_head_bytes) == (
        4096,
        4096,
        4096,
    )


def test_options_refuse_bad_value_with_usage_error() -> None:
    """A bad option value is a UsageError naming the option and the value."""
    with pytest.raises(usage.UsageError) as info:
        Options().parseOptions(["--max-headers", "lots"])
    assert isinstance(info.value, BadSetting)
    assert "--max-headers" in str(info.value) and "'lots'" in str(info.value)


def test_options_post_options_cross_check() -> None:
    """postOptions refuses limits given together that contradict each other."""
    with pytest.raises(BadSetting) as info:
        Options().parseOptions(["--max-request-line", "9000", "--max-head-bytes", "8000"])
    assert "--max-request-line" in str(info.value) and "--max-head-bytes" in str(info.value)
    options = Options()
    options.parseOptions(["--max-request-line", "9000"])
    assert options["max-request-line"] == 9000


def test_unknown_option_is_twisteds_usage_error() -> None:
    """An unknown option stays Twisted's own usage error (help and exit 1 under twistd)."""
    with pytest.raises(usage.UsageError) as info:
        Options().parseOptions(["--no-such-option"])
    assert not isinstance(info.value, BadSetting)


def test_bad_value_under_twistd_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Parsed as twistd's subcommand, a bad value stops with one line and status 2."""
    options = Options()
    options.parent = usage.Options()
    with pytest.raises(SystemExit) as info:
        options.parseOptions(["--stale-if-error", "soon"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stale-if-error" in err and "'soon'" in err


def test_secret_never_in_errors_or_repr(tmp_path: Path) -> None:
    """The secret and key material stay out of reprs and of error messages."""
    config = resolve()
    assert GOOD_SECRET not in repr(config)
    assert setting("jwt-secret").secret
    # A secret file that is not a key: the error names the file, not what it holds.
    key_file = tmp_path / "key.pem"
    key_file.write_text("not-a-pem-but-a-secret-0123456789")
    message = config_error({"jwt-public-key": str(key_file)})
    assert "not-a-pem-but-a-secret" not in message and "--jwt-public-key" in message
    entry = dataclasses.replace(setting("max-headers"), secret=True)
    with pytest.raises(ConfigError) as info:
        entry.parse_text("hunter2-is-not-a-number")
    assert "hunter2" not in str(info.value) and "--max-headers" in str(info.value)


def test_cli_cross_check_is_one_line_exit_2() -> None:
    """twistd with contradicting head limits exits 2 with one stderr line naming both."""
    result = run_twistd(
        "opencue-gateway", "--max-header-line", "5000", "--max-head-bytes", "4000", JWT_SECRET="x"
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--max-header-line" in lines[0] and "--max-head-bytes" in lines[0]
