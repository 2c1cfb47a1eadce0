# -*- test-case-name: tests.test_submit -*-
"""
Jobs submitted as JSON: the description's checks, the job-spec XML written from it
(compared with what pyoutline writes for the same job), its schema in the OpenAPI
document, and C{POST /api/v1/jobs} serving both body forms in front of a fake upstream.
Launching on the simulator, and the command line, are in L{test_submit_farm}.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from opencue_gw.jobs import (
    DESCRIPTION_SCHEMA_NAME,
    DOCTYPE,
    SPEC_VERSION,
    DescriptionError,
    job_spec_xml,
    read_description,
    validate,
)
from opencue_gw.jobs.description import frame_count
from opencue_gw.openapi import build_openapi
from opencue_gw.rest import ROUTES
from opencue_gw.rest.spec import bind_route
from opencue_gw.testing import FakeUpstream, GatewayUnderTest
from opencue_gw.upstream.rpcs import load_rpcs

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "job.example.json"
LAUNCH = "/job.JobInterface/LaunchSpecAndWait"

# The children of <spec>, <job> and <layer> in the order the cjsl-1.15 DTD requires
# (Cuebot parses with a validating parser, so the order is part of the format).
SPEC_ORDER = ("facility", "dept", "show", "shot", "user", "email", "uid", "job", "depends")
JOB_ORDER = (
    "paused",
    "priority",
    "maxretries",
    "maxcores",
    "maxgpus",
    "autoeat",
    "localbook",
    "os",
    "env",
    "layers",
)
LAYER_ORDER = (
    "cmd",
    "range",
    "chunk",
    "cores",
    "threadable",
    "memory",
    "gpus",
    "gpu",
    "gpu_memory",
    "timeout",
    "timeout_llu",
    "tags",
    "limits",
    "env",
    "services",
    "outputs",
)


def example() -> dict[str, Any]:
    """A fresh copy of the README's example description."""
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def parse(xml: str) -> ET.Element:
    """The <spec> element of a job-spec document."""
    return ET.fromstring(xml)


def in_order(children: list[str], order: tuple[str, ...]) -> bool:
    """Whether C{children} appear in the DTD's C{order} (each known, none out of turn)."""
    positions = [order.index(tag) for tag in children]
    return positions == sorted(positions)


# --- the description's checks ---


def test_example_is_valid() -> None:
    """The example in etc/ (the README's) has no error and reads back as written."""
    assert validate(example()) == []
    job = read_description(example())
    assert (job.show, job.shot, job.user, job.name) == ("testing", "sh010", "alice", "hello_render")
    assert [layer.name for layer in job.layers] == ["render", "comp", "movie"]
    assert job.layers[1].depends[0].type == "FRAME_BY_FRAME"


def test_every_invalid_field_is_named_at_once() -> None:
    """Several mistakes across the job and its layers come back together, by JSON path."""
    description = example()
    description.update(name="x", user="root", priority=-1, colour="blue")
    del description["shot"]
    layers = description["layers"]
    layers[0].update(range="1-x", chunk=0, memory="4.5MB", cores="two", tags=["ok_tag", "no"])
    layers[0]["env"] = {"1BAD": "v", "GOOD": 3}
    layers[1].update(command=[], gpus={"count": 0, "memory": "lots"})
    layers[2].update(type="Batch", depends=["nowhere", {"layer": "comp", "type": "SOMETIMES"}])
    errors = validate(description)
    paths = [error.path for error in errors]
    assert set(paths) == {
        "colour",
        "shot",
        "name",
        "user",
        "priority",
        "layers[0].range",
        "layers[0].chunk",
        "layers[0].memory",
        "layers[0].cores",
        "layers[0].tags[1]",
        "layers[0].env.1BAD",
        "layers[0].env.GOOD",
        "layers[1].command",
        "layers[1].gpus.count",
        "layers[1].gpus.memory",
        "layers[2].type",
        "layers[2].depends[0]",
        "layers[2].depends[1].type",
    }, paths
    assert len(paths) == len(set(paths)), "one error per field"
    by_path = {error.path: error.problem for error in errors}
    assert by_path["shot"] == "is required"
    assert "'1-x'" in by_path["layers[0].range"]
    assert "jobs cannot run as root" in by_path["user"]
    with pytest.raises(DescriptionError) as raised:
        read_description(description)
    assert "layers[0].range: " in str(raised.value) and len(raised.value.errors) == len(errors)


def test_names_follow_cuebots_rules() -> None:
    """Names are letters, digits, _ - . and at least 3 long; Cuebot's case-folding clashes too."""
    good = example()
    good["name"] = "Shot-10.v2_final"
    good["layers"][0]["name"] = "Beauty-Pass.1"
    good["layers"][1]["depends"][0]["layer"] = "beauty_pass.1"  # Cuebot's spelling of it
    assert validate(good) == []
    for bad in ("ab", "has space", "naïve", "semi;colon", "x" * 2):
        description = example()
        description["name"] = bad
        assert [e.path for e in validate(description)] == ["name"], bad
    clash = example()
    clash["layers"][2]["name"] = "RENDER"
    assert [e.path for e in validate(clash)] == ["layers[2].name"]


def test_dependencies_must_name_other_layers_without_a_cycle() -> None:
    """A dependency on itself, on a missing layer, twice, or round in a circle is refused."""
    description = example()
    description["layers"][0]["depends"] = ["render"]
    assert [e.path for e in validate(description)] == ["layers[0].depends[0]"]
    description = example()
    description["layers"][2]["depends"] = ["comp", {"layer": "comp"}]
    assert [e.path for e in validate(description)] == ["layers[2].depends[1].layer"]
    description = example()
    description["layers"][0]["depends"] = ["movie"]
    problems = validate(description)
    assert [e.path for e in problems] == ["layers[0].depends"]
    assert "render -> movie -> comp -> render" in problems[0].problem
    description = example()
    description["layers"][1]["depends"] = [{"layer": "render", "any_frame": True}]
    assert validate(description) == []
    description["layers"][1]["depends"][0]["type"] = "FRAME_BY_FRAME"
    assert [e.path for e in validate(description)] == ["layers[1].depends[0].any_frame"]


def test_not_an_object_and_empty_layers() -> None:
    """A description must be an object with at least one layer; text must suit XML."""
    assert [e.path for e in validate([])] == ["$"]
    description = example()
    description["layers"] = []
    assert [e.path for e in validate(description)] == ["layers"]
    description = example()
    description["layers"][0]["command"] = "echo \x00"
    description["layers"][1]["env"] = {"A": "\ud800"}
    assert [e.path for e in validate(description)] == [
        "layers[0].command",
        "layers[1].env.A",
    ]


def test_frame_limits() -> None:
    """Cuebot's limit of 100000 frames a job is counted per chunk, without expanding."""
    description = example()
    description["layers"][0]["range"] = "1-1000000000"
    problems = validate(description)
    assert [e.path for e in problems] == ["layers"] and "100000" in problems[0].problem
    description["layers"][0]["chunk"] = 100_000
    assert validate(description) == []


@pytest.mark.parametrize(
    "frames", ["1-100", "10-1", "1-10x3", "1-10y3", "1-10:3", "-5--1", "1,3,5", "7", "1-2,5-9x2"]
)
def test_frame_count_agrees_with_filesequence(frames: str) -> None:
    """The frame count of each range syntax is FileSequence's (pycue's frame sets)."""
    import FileSequence  # pycue's; a pinned test dependency

    assert frame_count(frames) == len(list(FileSequence.FrameSet(frames)))


# --- the job-spec XML ---


def test_doctype_and_element_order() -> None:
    """pyoutline's DOCTYPE (DTD 1.15), and every element in the order the DTD requires."""
    description = example()
    description.update(facility="local", os="Linux", uid=1001, email="alice@example.com")
    description.update(max_cores=100, max_gpus=2, env={"SITE": "lon"})
    description["layers"][0].update(
        threadable=True,
        gpus={"count": 1, "memory": "8GB"},
        timeout=60,
        timeout_llu=30,
        limits=["arnold_lic"],
    )
    xml = job_spec_xml(description)
    assert SPEC_VERSION == "1.15"
    assert xml.startswith('<?xml version="1.0"?>' + DOCTYPE + "<spec>")
    assert DOCTYPE == (
        '<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" '
        '"http://localhost:8080/spcue/dtd/cjsl-1.15.dtd">'
    )
    spec = parse(xml)
    assert in_order([child.tag for child in spec], SPEC_ORDER)
    job = spec.find("job")
    assert job is not None and in_order([child.tag for child in job], JOB_ORDER)
    for layer in spec.iterfind("job/layers/layer"):
        assert in_order([child.tag for child in layer], LAYER_ORDER), layer.get("name")
    assert [child.tag for child in spec] == [
        "facility",
        "show",
        "shot",
        "user",
        "email",
        "uid",
        "job",
        "depends",
    ]


def test_values_are_written_as_cuebot_reads_them() -> None:
    """Cores keep a decimal point, memory is whole g or m, GPUs get both values, flags True."""
    description = example()
    render, comp, movie = description["layers"]
    render.update(cores=2, memory="1.5GB", gpus={"count": 2})
    comp.update(cores=0.25, memory=1536, threadable=False)
    movie.update(memory="2g", gpus={"memory": "512MB"})
    description["paused"] = True
    spec = parse(job_spec_xml(description))
    layers = {layer.get("name"): layer for layer in spec.iterfind("job/layers/layer")}
    assert layers["render"].findtext("cores") == "2.0"
    assert layers["render"].findtext("memory") == "1536m"
    assert (layers["render"].findtext("gpus"), layers["render"].findtext("gpu_memory")) == (
        "2",
        "1g",
    )
    assert layers["comp"].findtext("cores") == "0.25"
    assert layers["comp"].findtext("threadable") == "False"
    assert layers["movie"].findtext("memory") == "2g"
    assert (layers["movie"].findtext("gpus"), layers["movie"].findtext("gpu_memory")) == (
        "1",
        "512m",
    )
    assert layers["movie"].get("type") == "Util"
    assert spec.findtext("job/paused") == "True"
    assert spec.findtext("job/priority") == "50"


def test_commands_and_user_text_are_escaped_not_pasted() -> None:
    """Argument lists are shell-quoted (Cuebot tokens left bare); markup in text is escaped."""
    description = example()
    description["layers"][0]["command"] = ["/bin/sh", "-c", "echo <b> & done", "#IFRAME#"]
    description["layers"][0]["env"] = {"NOTE": '</key><key name="X">evil</key>'}
    description["layers"][1]["command"] = "render --out '/tmp/a b' -f #IFRAME#-#FRAME_END#"
    spec = parse(job_spec_xml(description))
    render, comp, _ = spec.iterfind("job/layers/layer")
    assert render.findtext("cmd") == "/bin/sh -c 'echo <b> & done' #IFRAME#"
    keys = render.findall("env/key")
    assert [(k.get("name"), k.text) for k in keys] == [("NOTE", '</key><key name="X">evil</key>')]
    assert comp.findtext("cmd") == "render --out '/tmp/a b' -f #IFRAME#-#FRAME_END#"


def test_invalid_description_raises_before_any_xml() -> None:
    """job_spec_xml refuses a description with errors, naming them."""
    description = example()
    description["layers"][0]["range"] = "soon"
    with pytest.raises(DescriptionError, match=r"layers\[0\]\.range"):
        job_spec_xml(description)


# Elements pyoutline writes that a description does not cover: the submitting user's
# e-mail and uid, which pyoutline takes from the local machine (a description may give
# them, the gateway does not invent them), and an empty <outputs/> per layer (outputs
# are not part of a description).
PYOUTLINE_ONLY = {"spec/email", "spec/uid", "layer/outputs"}


def _pyoutline_xml(monkeypatch: pytest.MonkeyPatch) -> str:
    """The example job built with pyoutline's Outline and Shell layers, serialized by it."""
    import outline  # a pinned test dependency: missing it is a failure, not a skip
    from outline.cuerun import OutlineLauncher
    from outline.depend import DependType
    from outline.modules.shell import Shell

    monkeypatch.setattr("outline.util.get_uid", lambda: 1000)
    ol = outline.Outline(
        "hello_render", shot="sh010", show="testing", user="alice", frame_range="1-20"
    )
    render = Shell(
        "render",
        command=["/bin/echo", "rendering", "#IFRAME#"],
        range="1-20",
        chunk=1,
        cores=1,
        memory="2g",
        tags=["general"],
        service="shell",
        limits=["arnold_lic"],
        timeout=60,
    )
    render.set_env("RENDER_QUALITY", "preview")
    comp = Shell(
        "comp",
        command="/bin/echo compositing frame #IFRAME#",
        range="1-20",
        chunk=2,
        cores=0.5,
        memory="1g",
        gpus=1,
        gpu_memory="4g",
        service="shell",
        threadable=True,
    )
    movie = Shell("movie", command=["/bin/echo", "movie"], range="1", service="shell", type="Util")
    for layer in (render, comp, movie):
        ol.add_layer(layer)
    comp.depend_on(render, DependType.FrameByFrame)
    movie.depend_on(comp, DependType.LayerOnLayer)
    launcher = OutlineLauncher(
        ol, user="alice", show="testing", shot="sh010", priority=50, maxretries=3, pause=True
    )
    return str(launcher.serialize(use_pycuerun=False))


def _same_job_described() -> dict[str, Any]:
    return {
        "facility": "local",
        "show": "testing",
        "shot": "sh010",
        "user": "alice",
        "name": "hello_render",
        "priority": 50,
        "max_retries": 3,
        "paused": True,
        "layers": [
            {
                "name": "render",
                "command": ["/bin/echo", "rendering", "#IFRAME#"],
                "range": "1-20",
                "cores": 1,
                "memory": "2GB",
                "tags": ["general"],
                "services": ["shell"],
                "limits": ["arnold_lic"],
                "timeout": 60,
                "env": {"RENDER_QUALITY": "preview"},
            },
            {
                "name": "comp",
                "command": "/bin/echo compositing frame #IFRAME#",
                "range": "1-20",
                "chunk": 2,
                "cores": 0.5,
                "memory": 1024,
                "gpus": {"count": 1, "memory": "4GB"},
                "services": ["shell"],
                "threadable": True,
                "depends": [{"layer": "render", "type": "FRAME_BY_FRAME"}],
            },
            {
                "name": "movie",
                "type": "Util",
                "command": ["/bin/echo", "movie"],
                "range": "1",
                "services": ["shell"],
                "depends": ["comp"],
            },
        ],
    }


def _flatten(element: ET.Element, path: str, kind: str, into: dict[str, Any]) -> None:
    """Every element and attribute under C{element} by a path of tags and names."""
    for name, value in element.attrib.items():
        into[f"{path}@{name}"] = value
    children = list(element)
    if not children:
        into[path] = (element.text or "").strip()
    for index, child in enumerate(children):
        named = child.get("name")
        key = f"{path}/{child.tag}" + (f"[{named}]" if named else "")
        if child.tag == "depend":
            key += f"[{index}]"
        if f"{kind}/{child.tag}" in PYOUTLINE_ONLY:
            continue
        _flatten(child, key, child.tag, into)


def flat(xml: str) -> dict[str, Any]:
    """A job spec as {path: text or attribute value}, without what only pyoutline writes."""
    into: dict[str, Any] = {}
    _flatten(parse(xml), "spec", "spec", into)
    return into


def test_same_job_as_pyoutline_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The XML written from a description equals pyoutline's for the same job, compared
    after parsing, field by field, apart from the elements named in PYOUTLINE_ONLY.
    """
    ours = job_spec_xml(_same_job_described())
    theirs = _pyoutline_xml(monkeypatch)
    assert ours.split("<spec>")[0] == theirs.split("<spec>")[0], "declaration and DOCTYPE"
    mine, pyoutline = flat(ours), flat(theirs)
    assert set(mine) == set(pyoutline), set(mine) ^ set(pyoutline)
    for path, value in pyoutline.items():
        assert mine[path] == value, (path, mine[path], value)
    assert mine["spec/depends/depend[0]@type"] == "FRAME_BY_FRAME"
    dropped = {tag for tag in ("email", "uid") if parse(theirs).find(tag) is not None}
    assert dropped == {"email", "uid"}, "PYOUTLINE_ONLY names what pyoutline really adds"


# --- the OpenAPI document ---


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The OpenAPI document as the gateway builds it."""
    rpcs = load_rpcs()
    return build_openapi(rpcs, [bind_route(route, rpcs) for route in ROUTES])


def description_validator(document: dict[str, Any]) -> Draft202012Validator:
    """A validator for the description's schema, its $refs resolving in the document."""
    schema = {"$ref": f"#/components/schemas/{DESCRIPTION_SCHEMA_NAME}"}
    return Draft202012Validator({**schema, "components": document["components"]})


def test_openapi_describes_the_json_form(document: dict[str, Any]) -> None:
    """POST /api/v1/jobs takes the spec or the description, and documents dry_run."""
    from openapi_spec_validator import validate as validate_openapi

    validate_openapi(document)
    operation = document["paths"]["/api/v1/jobs"]["post"]
    forms = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert forms[1] == {"$ref": f"#/components/schemas/{DESCRIPTION_SCHEMA_NAME}"}
    assert "spec" in forms[0]["properties"]
    assert [p["name"] for p in operation["parameters"]] == ["dry_run"]
    answers = operation["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert answers[-1]["required"] == ["spec"]


def test_schema_agrees_with_the_checks(document: dict[str, Any]) -> None:
    """The example passes the schema; mistakes the schema can see, it refuses too."""
    check = description_validator(document)
    assert list(check.iter_errors(example())) == []
    for change in (
        {"name": "x"},
        {"priority": -1},
        {"colour": "blue"},
        {"user": "root"},
        {"layers": []},
    ):
        description = {**example(), **change}
        assert list(check.iter_errors(description)), change
        assert validate(description), change
    description = example()
    description["layers"][0]["memory"] = "lots"
    assert list(check.iter_errors(description)) and validate(description)


# --- the route, in front of a fake upstream ---


@pytest.fixture
def gateway() -> GatewayUnderTest:
    """The gateway in front of a fake upstream that answers every call at once."""
    return GatewayUnderTest(FakeUpstream(answer_all=True))


def test_route_launches_the_xml_it_writes(gateway: GatewayUnderTest) -> None:
    """A description reaches Cuebot as LaunchSpecAndWait with the XML job_spec_xml writes."""
    reply = gateway.request("POST", "/api/v1/jobs", example())
    assert reply.status == 200, reply.body
    assert reply.json() is None  # the fake's empty reply has no jobs message
    call = gateway.upstream.last
    assert call.rpc.path == LAUNCH
    assert call.request.spec == job_spec_xml(example())  # type: ignore[attr-defined]


def test_dry_run_answers_the_xml_and_calls_nothing(gateway: GatewayUnderTest) -> None:
    """?dry_run=true answers {"spec": xml} as JSON; nothing reaches Cuebot."""
    reply = gateway.request("POST", "/api/v1/jobs?dry_run=true", example())
    assert reply.status == 200, reply.body
    assert reply.header("content-type") == "application/json"
    assert reply.json() == {"spec": job_spec_xml(example())}
    assert gateway.upstream.calls == []
    again = gateway.request("POST", "/api/v1/jobs?dry_run=false", example())
    assert again.status == 200 and gateway.upstream.last.rpc.path == LAUNCH


def test_invalid_description_is_400_naming_every_field(gateway: GatewayUnderTest) -> None:
    """Every field in error is in the one 400 (code 3) message; nothing reaches Cuebot."""
    description = example()
    description["layers"][1]["range"] = "soon"
    description["layers"][2]["memory"] = "4.5.6GB"
    description["priority"] = "high"
    for path in ("/api/v1/jobs", "/api/v1/jobs?dry_run=true"):
        reply = gateway.request("POST", path, description)
        assert reply.status == 400, reply.body
        answer = reply.json()
        assert answer["code"] == 3 and answer["details"] == []
        message = answer["message"]
        assert message.startswith("invalid job description: ")
        for field in ("priority: ", "layers[1].range: ", "layers[2].memory: "):
            assert field in message, (field, message)
    assert gateway.upstream.calls == []


def test_spec_form_unchanged_and_query_mistakes(gateway: GatewayUnderTest) -> None:
    """{"spec": xml} still launches as given; a dry run of it, or an unknown query, is 400."""
    xml = job_spec_xml(example())
    reply = gateway.request("POST", "/api/v1/jobs", {"spec": xml})
    assert reply.status == 200 and gateway.upstream.last.request.spec == xml  # type: ignore[attr-defined]
    calls = len(gateway.upstream.calls)
    dry = gateway.request("POST", "/api/v1/jobs?dry_run=true", {"spec": xml})
    assert dry.status == 400 and "dry_run" in dry.json()["message"]
    typo = gateway.request("POST", "/api/v1/jobs?dryrun=true", example())
    assert typo.status == 400 and "'dryrun'" in typo.json()["message"]
    bad = gateway.request("POST", "/api/v1/jobs?dry_run=maybe", example())
    assert bad.status == 400 and bad.json()["code"] == 3
    assert len(gateway.upstream.calls) == calls, "no refused request reached Cuebot"
    empty = gateway.request("POST", "/api/v1/jobs", {})
    assert empty.status == 400 and "'spec'" in empty.json()["message"]


def test_form_encoded_post_reads_only_the_url_query(gateway: GatewayUnderTest) -> None:
    """
    curl -d without a JSON Content-Type: Twisted parses the body as a form into
    request.args; the dry_run switch is still read from the URL alone.
    """
    body = json.dumps(example()).encode()
    reply = gateway.request(
        "POST",
        "/api/v1/jobs?dry_run=1",
        body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["spec"] == job_spec_xml(example())


def test_nulls_are_left_out() -> None:
    """A member given as null is as if left out (the route's JSON rule for bodies)."""
    description = copy.deepcopy(example())
    description["facility"] = None
    description["layers"][0]["cores"] = None
    assert validate({k: v for k, v in description.items() if v is not None}) == []
    assert validate(description) == []


def test_error_message_names_at_most_a_hundred() -> None:
    """A thousand bad layers make one bounded message that says how many more there are."""
    from opencue_gw.jobs.form import MAX_NAMED_ERRORS, description_error

    description = example()
    description["layers"] = [
        {"name": f"l{i:03d}", "command": "x", "range": "?"} for i in range(150)
    ]
    errors = validate(description)
    assert len(errors) == 150
    message = description_error(errors).message
    assert message.count("layers[") == MAX_NAMED_ERRORS == 100
    assert message.endswith("; and 50 more")
