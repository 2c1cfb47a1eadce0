"""The opencue-gw command line: its commands, its output and its exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_twisted
from test_process import Gateway
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.cli import main
from opencue_gw.tap import GatewaySite

from gwtest import GatewayHarness, token


def run(
    argv: list[str], env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[int, str, str]:
    """main() with captured streams; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err, stdin=io.StringIO(stdin), environ=env or {})
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def url(gateway: GatewayHarness) -> Iterator[str]:
    """The gateway served on a loopback socket."""
    port = reactor.listenTCP(0, GatewaySite(gateway.resource), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    port.stopListening()


async def cli(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the blocking CLI in a thread so the in-process gateway keeps serving."""
    return await deferToThread(run, argv, env)


def test_token_mints_a_verifiable_token(tmp_path: Path) -> None:
    """token signs sub, role and exp with the secret file's key."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"a-secret-that-is-long-enough-0123456789\n")
    status, out, _ = run(
        ["token", "--secret-file", str(secret), "--sub", "me", "--role", "viewer", "--ttl", "2h"]
    )
    assert status == 0
    claims = jwt.decode(out.strip(), b"a-secret-that-is-long-enough-0123456789", ["HS256"])
    assert (claims["sub"], claims["role"], claims["exp"] - claims["iat"]) == ("me", "viewer", 7200)
    status, out, _ = run(["token", "--sub", "me"], env={"JWT_SECRET": "x" * 40})
    assert status == 0 and jwt.decode(out.strip(), "x" * 40, ["HS256"])["sub"] == "me"


def test_usage_errors_exit_2() -> None:
    """Missing secret, bad ttl, unknown command and a non-JSON body all exit 2."""
    assert run(["token", "--sub", "me"])[0] == 2
    assert run(["token", "--sub", "me", "--ttl", "soon"], env={"JWT_SECRET": "x"})[0] == 2
    assert run(["frobnicate"])[0] == 2
    status, _, err = run(["call", "job.JobInterface/GetJobs", "{nope"], env={})
    assert status == 2 and "not JSON" in err
    assert run(["--help"])[0] == 0


@pytest_twisted.ensureDeferred
async def test_jobs_table_and_json(url: str) -> None:
    """jobs --show prints a table with the demo jobs, and --json their JSON."""
    env = {"OPENCUE_GATEWAY_URL": url, "OPENCUE_GATEWAY_TOKEN": token()}
    status, out, _ = await cli(["jobs", "--show", "testing"], env)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATE", "USER"]
    assert any(line.startswith("testing-sh010-alice_lighting_v001 ") for line in lines[1:])
    status, out, _ = await cli(["jobs", "--show", "testing", "--user", "bob", "--json"], env)
    jobs = json.loads(out)
    assert status == 0 and jobs and {j["user"] for j in jobs} == {"bob"}


@pytest_twisted.ensureDeferred
async def test_frames_by_job_name_and_state(url: str) -> None:
    """frames accepts a job name, filters by state, and prints one row per frame."""
    argv = ["--url", url, "--token", token(), "frames", "testing-sh010-alice_lighting_v001"]
    status, out, _ = await cli([*argv, "--state", "RUNNING"])
    rows = out.splitlines()[1:]
    assert status == 0 and rows and all(" RUNNING " in row for row in rows)
    status, out, _ = await cli([*argv, "--state", "RUNNING", "--json"])
    assert status == 0 and len(json.loads(out)) == len(rows)
    status, _, err = await cli([*argv, "--state", "RUNIN"])
    assert status == 2 and "'state'" in err


@pytest_twisted.ensureDeferred
async def test_call_any_rpc(url: str) -> None:
    """call sends the JSON body to the RPC route and prints the reply."""
    env = {"OPENCUE_GATEWAY_URL": url, "OPENCUE_GATEWAY_TOKEN": token()}
    status, out, _ = await cli(
        ["call", "job.JobInterface/GetJobs", '{"r":{"shows":["testing"]}}'], env
    )
    assert status == 0
    assert {j["show"] for j in json.loads(out)["jobs"]["jobs"]} == {"testing"}
    status, out, _ = await cli(["call", "/show.ShowInterface/GetShows"], env)
    assert status == 0 and json.loads(out)["shows"]["shows"]


@pytest_twisted.ensureDeferred
async def test_exit_codes_follow_the_error(url: str) -> None:
    """Not found exits 4, a bad token 3, no gateway 5."""
    env = {"OPENCUE_GATEWAY_URL": url, "OPENCUE_GATEWAY_TOKEN": token()}
    status, _, err = await cli(["job", "no-such-job"], env)
    assert status == 4 and "NOT_FOUND" in err
    assert (await cli(["shows", "--token", "bad"], env))[0] == 3
    assert (await cli(["shows"], {"OPENCUE_GATEWAY_URL": url}))[0] == 3
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    status, _, err = await cli(["kill", "x", "--url", f"http://127.0.0.1:{free}"], env)
    assert status == 5 and "cannot reach" in err


def _get(url: str, bearer: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    with urllib.request.urlopen(request, timeout=15) as answer:
        body = answer.read()
        kind = answer.headers.get("content-type", "")
        return answer.status, json.loads(body) if "json" in kind else body


def test_new_user_walkthrough(tmp_path: Path) -> None:
    """After twistd --demo: opencue-gw lists jobs, frames filter by state, /docs loads."""
    script = Path(sys.executable).with_name("opencue-gw")
    # The installed console script when there is one (tox installs the wheel); the same
    # entry point through the interpreter otherwise, so the walkthrough always runs.
    cli = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "import sys; from opencue_gw.cli import main; sys.exit(main())"]
    )
    secret = tmp_path / "secret"
    secret.write_text("walkthrough-secret-0123456789abcdef-0123456789\n")
    daemon = Gateway(["--demo", "--jwt-secret-file", str(secret)], {}, tmp_path)
    try:
        minted = subprocess.run(
            [*cli, "token", "--secret-file", str(secret), "--sub", "me", "--role", "viewer"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert minted.returncode == 0, minted.stderr
        bearer = minted.stdout.strip()
        base = f"http://127.0.0.1:{daemon.port}"
        env = {"OPENCUE_GATEWAY_URL": base, "OPENCUE_GATEWAY_TOKEN": bearer}
        done = subprocess.run(
            [*cli, "jobs", "--show", "testing"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert "testing-sh010-alice_lighting_v001" in done.stdout
        job_id = done.stdout.splitlines()[1].split()[-1]
        status, frames = _get(f"{base}/api/v1/jobs/{job_id}/frames?state=RUNNING", bearer)
        assert status == 200 and {f["state"] for f in frames["items"]} <= {"RUNNING"}
        status, page = _get(f"{base}/docs")
        assert status == 200 and b"swagger-ui" in page
    finally:
        assert daemon.stop() == 0
