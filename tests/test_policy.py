"""
Tests for L{opencue_gw.auth.policy}: the file's validation, the decisions it makes, and its
enforcement in the real gateway tree in front of a fake upstream, synchronously.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opencue_gw.auth.bearer import Identity
from opencue_gw.auth.policy import Policy, PolicyError, parse_policy
from opencue_gw.config import ConfigError, resolve_config
from opencue_gw.testing import TEST_SECRET, FakeUpstream, GatewayUnderTest
from opencue_gw.upstream.rpcs import load_rpcs

SECRET = TEST_SECRET

METHODS = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
EXAMPLE = Path(__file__).parent.parent / "etc" / "policy.example.toml"

SMALL = b"""
deny = ["show.ShowInterface.Delete"]

[roles.viewer]
allow = ["*.Get*", "*.Find*", "*.Is*"]
rate_limit_rps = 5

[roles.operator]
allow = ["job.JobInterface/*", "show.*"]
deny = ["job.JobInterface.Kill"]
scopes = ["opencue:operate"]
groups = ["wranglers"]
rate_limit_rps = 50
rate_limit_burst = 80

[roles.admin]
allow = ["*"]
"""


def policy(text: bytes = SMALL) -> Policy:
    return parse_policy(text, METHODS, source="test.toml")


def who(**claims: Any) -> Identity:
    return Identity(sub="u", role=claims.get("role"), claims=claims)


def test_example_file_is_valid_and_read_only_for_viewers() -> None:
    """The shipped example loads against the real RPC table; its viewer reads but cannot kill."""
    example = parse_policy(EXAMPLE.read_bytes(), METHODS, source=str(EXAMPLE))
    viewer = who(role="viewer")
    assert example.decide(viewer, "job.JobInterface", "GetJobs").allowed
    assert not example.decide(viewer, "job.JobInterface", "Kill").allowed
    assert example.decide(who(role="admin"), "job.JobInterface", "Kill").allowed
    assert not example.decide(who(role="admin"), "show.ShowInterface", "Delete").allowed


def test_claims_select_roles() -> None:
    """Roles come from the role claim, a space-separated or list scope, or groups, by name."""
    p = policy()
    assert p.roles_of(who(role="viewer")) == ("viewer",)
    assert p.roles_of(who(scope="openid opencue:operate")) == ("operator",)
    assert p.roles_of(who(scope=["opencue:operate"])) == ("operator",)
    assert p.roles_of(who(role="viewer", groups=["wranglers"])) == ("viewer", "operator")
    assert p.roles_of(who(role="nobody", groups="wranglers")) == ("operator",)
    assert p.roles_of(who(role="nobody", groups=["admin"], scope=["viewer"])) == ()


def test_deny_wins_over_allow() -> None:
    """A role's deny beats its allow, and a top-level deny beats every role."""
    p = policy()
    operator = who(groups=["wranglers"])
    assert p.decide(operator, "job.JobInterface", "Pause").allowed
    assert not p.decide(operator, "job.JobInterface", "Kill").allowed
    refused = p.decide(who(role="admin"), "show.ShowInterface", "Delete")
    assert not refused.allowed and "every role" in refused.message


def test_unknown_role_denied_unless_default() -> None:
    """A role not in the file may call nothing; with default_role it gets that role."""
    refused = policy().decide(who(role="user-role"), "show.ShowInterface", "GetShows")
    assert not refused.allowed
    assert refused.message == (
        "permission denied: role 'user-role' is not in the gateway's policy "
        "(show.ShowInterface/GetShows)"
    )
    with_default = policy(b'default_role = "viewer"\n' + SMALL)
    assert with_default.decide(who(role="user-role"), "show.ShowInterface", "GetShows").allowed
    assert not with_default.decide(who(), "job.JobInterface", "Kill").allowed


def test_rate_for() -> None:
    """Per-role rates are exposed; burst defaults to a second's worth; the highest role wins."""
    p = policy()
    assert p.rate_for(who(role="viewer")) == (5.0, 5.0)
    assert p.rate_for(who(role="viewer", groups=["wranglers"])) == (50.0, 80.0)
    assert p.rate_for(who(role="admin")) is None
    assert p.rate_for(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"[roles.viewer\nallow = []", "invalid TOML"),
        (b"[roles.viewer]\nallow = []\nalow = []", "unknown key roles.viewer.alow"),
        (b'[roles.viewer]\nallow = ["job.JobInterface.kill"]', "roles.viewer.allow[0]"),
        (b'deny = ["*.Nope"]\n[roles.a]\nallow = []', "deny[0] = '*.Nope' matches no RPC"),
        (b'default_role = "ghost"\n[roles.a]\nallow = []', "default_role 'ghost'"),
        (b"[roles.a]\nallow = []\nrate_limit_rps = -1", "roles.a.rate_limit_rps"),
        (b"[roles.a]\nallow = []\nrate_limit_burst = 3", "needs rate_limit_rps"),
        (b"[roles.a]\nallow = 'x'", "roles.a.allow must be a list"),
        (b"[roles.a]\ndeny = []", "roles.a.allow is missing"),
        (b"default_role = 'a'", "at least one role"),
    ],
)
def test_bad_files_name_the_problem(text: bytes, expected: str) -> None:
    """Every mistake is refused with the file name and the key (or TOML line) at fault."""
    with pytest.raises(PolicyError) as info:
        policy(text)
    assert str(info.value).startswith("test.toml: ")
    assert expected in str(info.value)


def test_bad_file_is_a_config_error(tmp_path: Path) -> None:
    """Through resolve_config, a bad POLICY_FILE is a ConfigError naming setting, file and line."""
    path = tmp_path / "policy.toml"
    path.write_text('[roles.viewer]\nallow = ["*"]\nrate_limit_rps = = 3\n')
    with pytest.raises(ConfigError) as info:
        resolve_config({}, {"JWT_SECRET": SECRET.decode(), "POLICY_FILE": str(path)})
    message = str(info.value)
    assert "POLICY_FILE" in message and str(path) in message and "line 3" in message
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_config({"policy": str(tmp_path / "missing.toml")}, {"JWT_SECRET": "x" * 40})


# --- enforcement in the gateway ---


@pytest.fixture
def policed(tmp_path: Path) -> Iterator[tuple[GatewayUnderTest, Path]]:
    """The gateway with the example policy and an audit log, in front of a fake upstream."""
    audit = tmp_path / "audit.log"
    gateway = GatewayUnderTest(
        FakeUpstream(answer_all=True), options={"policy": str(EXAMPLE), "audit-log": str(audit)}
    )
    yield gateway, audit
    gateway.close()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


KILL = {"job": {"id": "job-0001", "name": "testing-sh01-render"}}


def test_viewer_reads_but_cannot_kill(policed: tuple[GatewayUnderTest, Path]) -> None:
    """A viewer's GetJobs reaches Cuebot; its Kill is 403 code 7, never sent, and audited."""
    gateway, audit = policed
    viewer = f"Bearer {gateway.token(sub='vera', role='viewer')}"
    read = gateway.post("/job.JobInterface/GetJobs", auth=viewer)
    kill = gateway.post("/job.JobInterface/Kill", KILL, auth=viewer)
    assert read.status == 200, read.body
    assert kill.status == 403
    assert kill.json() == {
        "code": 7,
        "message": "permission denied: role viewer may not call job.JobInterface/Kill",
        "details": [],
    }
    assert gateway.upstream.paths == ["/job.JobInterface/GetJobs"]
    [line] = audit_lines(audit)
    assert line["method"] == "job.JobInterface/Kill"
    assert line["outcome"] == "PERMISSION_DENIED"
    assert (line["sub"], line["role"], line["policy_roles"]) == ("vera", "viewer", ["viewer"])
    assert line["targets"] == [{"type": "job.Job", "id": "job-0001", "name": "testing-sh01-render"}]


def test_refused_read_is_audited(tmp_path: Path) -> None:
    """A read refused by the policy (a role the file lacks, no default) is audited too."""
    audit = tmp_path / "audit.log"
    gateway = GatewayUnderTest(options={"audit-log": str(audit)}, policy=policy())
    try:
        reply = gateway.post(
            "/show.ShowInterface/GetShows", auth=f"Bearer {gateway.token(role='user-role')}"
        )
    finally:
        gateway.close()
    assert reply.status == 403 and "user-role" in reply.json()["message"]
    assert gateway.upstream.calls == []
    [line] = audit_lines(audit)
    assert (line["method"], line["outcome"]) == ("show.ShowInterface/GetShows", "PERMISSION_DENIED")


def test_no_policy_lets_every_token_call_everything() -> None:
    """Without a policy file a viewer token may still Kill, as today's clients expect."""
    gateway = GatewayUnderTest(FakeUpstream(answer_all=True))
    reply = gateway.post(
        "/job.JobInterface/Kill", KILL, auth=f"Bearer {gateway.token(role='viewer')}"
    )
    assert reply.status == 200
    assert gateway.upstream.paths == ["/job.JobInterface/Kill"]
