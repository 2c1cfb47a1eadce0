# -*- test-case-name: tests.test_submit_farm -*-
"""
Jobs submitted as JSON through the gateway's real resource tree to the Cuebot simulator
over real gRPC: the launched job shows with its layers and frames and runs to the end,
and C{opencue-gw submit} does the same from a file (JSON or YAML).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.cli import main
from opencue_gw.jobs import job_spec_xml
from opencue_gw.tap import GatewaySite

from gwtest import GatewayHarness, token

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "job.example.json"
FULL_NAME = "testing-sh010-alice_hello_render"
GB_KB = 1024 * 1024


def example() -> dict[str, Any]:
    """A fresh copy of the README's example description."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


async def get(gateway: GatewayHarness, path: str) -> Any:
    """GET a route that must answer 200; its JSON."""
    reply = await gateway.request("GET", path)
    assert reply.status == 200, (path, reply.body[:300])
    return reply.json()


@pytest_twisted.ensureDeferred
async def test_json_job_launches_and_runs(fresh_farm: Any, fresh_gateway: GatewayHarness) -> None:
    """
    The example description launches one job; GetJobs and FindJob show it with its three
    layers as described and its 41 frames, the dependent frames waiting; then it runs to
    FINISHED with every frame succeeded.
    """
    reply = await fresh_gateway.post("/api/v1/jobs", example())
    assert reply.status == 200, reply.body[:500]
    launched = reply.json()["jobs"]
    assert [job["name"] for job in launched] == [FULL_NAME]
    job_id = launched[0]["id"]

    listed = await get(fresh_gateway, f"/api/v1/jobs?show=testing&name={FULL_NAME}")
    assert [job["id"] for job in listed["items"]] == [job_id]
    found = await fresh_gateway.post("/job.JobInterface/FindJob", {"name": FULL_NAME})
    job = found.json()["job"]
    assert (job["id"], job["user"], job["shot"], job["priority"]) == (job_id, "alice", "sh010", 50)
    assert job["jobStats"]["totalFrames"] == 41

    layers = {
        la["name"]: la
        for la in (await get(fresh_gateway, f"/api/v1/jobs/{job_id}/layers"))["items"]
    }
    assert list(layers) == ["render", "comp", "movie"]
    render, comp, movie = layers["render"], layers["comp"], layers["movie"]
    assert (render["range"], render["chunkSize"], render["type"]) == ("1-20", 1, "RENDER")
    assert render["command"] == "/bin/echo 'rendering frame' #IFRAME#"
    assert (render["minCores"], render["minMemory"]) == (1.0, str(2 * GB_KB))
    assert render["tags"] == ["general"] and render["services"] == ["shell"]
    assert (comp["minCores"], comp["minMemory"]) == (0.5, str(GB_KB))
    assert movie["type"] == "UTIL" and movie["range"] == "1"

    frames = (await get(fresh_gateway, f"/api/v1/jobs/{job_id}/frames?limit=100"))["items"]
    by_layer: dict[str, list[str]] = {}
    for frame in frames:
        by_layer.setdefault(frame["layerName"], []).append(frame["state"])
    assert {name: len(states) for name, states in by_layer.items()} == {
        "render": 20,
        "comp": 20,
        "movie": 1,
    }
    assert set(by_layer["render"]) <= {"WAITING", "RUNNING"}  # the farm may book at once
    assert set(by_layer["comp"]) == {"DEPEND"} and by_layer["movie"] == ["DEPEND"]

    for _ in range(100):
        fresh_farm.farm.advance(300.0)
        job = await get(fresh_gateway, f"/api/v1/jobs/{job_id}")
        if job["state"] == "FINISHED":
            break
    assert job["state"] == "FINISHED"
    assert job["jobStats"]["succeededFrames"] == 41


@pytest_twisted.ensureDeferred
async def test_dry_run_and_refusals_launch_nothing(fresh_gateway: GatewayHarness) -> None:
    """A dry run answers the XML, an invalid description a 400; neither launches a job."""
    dry = await fresh_gateway.post("/api/v1/jobs?dry_run=true", example())
    assert dry.status == 200 and dry.json() == {"spec": job_spec_xml(example())}
    bad = example()
    bad["show"] = "no such show!"
    bad["layers"][0]["range"] = "1-"
    refused = await fresh_gateway.post("/api/v1/jobs", bad)
    assert refused.status == 400
    message = refused.json()["message"]
    assert "show: " in message and "layers[0].range: " in message
    missing = await fresh_gateway.post("/job.JobInterface/FindJob", {"name": FULL_NAME})
    assert missing.status == 404
    unknown_show = {**example(), "show": "nosuchshow"}
    answer = await fresh_gateway.post("/api/v1/jobs", unknown_show)
    assert answer.status == 500 and "nosuchshow" in answer.json()["message"]


# --- the command line ---


@pytest.fixture
def url(fresh_gateway: GatewayHarness) -> Iterator[str]:
    """The gateway (in front of its own simulator) served on a loopback socket."""
    port = reactor.listenTCP(0, GatewaySite(fresh_gateway.resource), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    port.stopListening()


def run(argv: list[str], env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    """main() with captured streams; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err, stdin=io.StringIO(stdin), environ=env)
    return status, out.getvalue(), err.getvalue()


async def cli(argv: list[str], env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    """The blocking CLI in a thread, so the in-process gateway keeps serving."""
    return await deferToThread(run, argv, env, stdin)


@pytest_twisted.ensureDeferred
async def test_cli_submit_json_yaml_and_dry_run(url: str, tmp_path: Path) -> None:
    """
    submit prints the launched job's id and name; --dry-run prints the XML; a YAML file
    and stdin work too; an invalid file exits 2 naming the fields.
    """
    env = {"OPENCUE_GATEWAY_URL": url, "OPENCUE_GATEWAY_TOKEN": token()}
    status, out, err = await cli(["submit", "--dry-run", str(EXAMPLE)], env)
    assert status == 0, err
    assert out == job_spec_xml(example()) + "\n"

    status, out, err = await cli(["submit", str(EXAMPLE)], env)
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME"]
    job_id, name = row.split()
    assert name == FULL_NAME
    status, out, _ = await cli(["job", job_id, "--json"], env)
    assert status == 0 and json.loads(out)[0]["name"] == FULL_NAME

    import yaml  # PyYAML: installed with the test dependencies

    description = example()
    description["name"] = "from_yaml"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(description), encoding="utf-8")
    status, out, err = await cli(["submit", str(path), "--json"], env)
    assert status == 0, err
    assert json.loads(out)[0]["name"] == "testing-sh010-alice_from_yaml"

    description["name"] = "from_stdin"
    status, out, err = await cli(["submit", "-"], env, json.dumps(description))
    assert status == 0, err
    assert "testing-sh010-alice_from_stdin" in out

    description["layers"][1]["cores"] = -1
    description["layers"][2]["depends"] = ["nowhere"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(description), encoding="utf-8")
    status, out, err = await cli(["submit", str(bad)], env)
    assert status == 2 and out == ""
    assert "layers[1].cores" in err and "layers[2].depends[0]" in err
    status, _, err = await cli(["submit", str(tmp_path / "absent.json")], env)
    assert status == 2 and "cannot read" in err
    bad.write_text("[1, 2]", encoding="utf-8")
    status, _, err = await cli(["submit", str(bad)], env)
    assert status == 2 and "one job description" in err
