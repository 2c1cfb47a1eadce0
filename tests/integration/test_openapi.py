"""The OpenAPI document and where /openapi.json and /docs are served."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from jsonschema import Draft202012Validator

from opencue_gw.openapi import build_openapi
from opencue_gw.rest import ROUTES
from opencue_gw.rest.spec import bind_route
from opencue_gw.upstream.rpcs import load_rpcs

from gwtest import GatewayHarness


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document as the gateway builds it."""
    rpcs = load_rpcs()
    return build_openapi(rpcs, [bind_route(route, rpcs) for route in ROUTES])


def schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    """A component schema, resolving nothing."""
    return document["components"]["schemas"][name]  # type: ignore[no-any-return]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for C{schema} whose $refs resolve inside the document."""
    return Draft202012Validator({**schema, "components": document["components"]})


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    """openapi-spec-validator accepts the whole document as OpenAPI 3.1."""
    from openapi_spec_validator import validate

    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_described(document: dict[str, Any]) -> None:
    """All 293 RPC routes (POST) and every resource route (its method) are in the paths."""
    rpcs = load_rpcs()
    assert len(rpcs) == 293
    for path in rpcs:
        assert set(document["paths"][path]) == {"post"}, path
    for route in ROUTES:
        assert route.method.lower() in document["paths"][route.path], route.path
    assert len(document["paths"]) == 293 + len({r.path for r in ROUTES})
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids)) == 293 + len(ROUTES)


def test_security_and_errors(document: dict[str, Any]) -> None:
    """Bearer security applies to everything; every operation lists the error answers."""
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    status = schema_of(document, "gateway.Status")
    assert status["required"] == ["code", "message", "details"]
    for item in document["paths"].values():
        for operation in item.values():
            assert {"200", "400", "401", "404", "405", "500", "501", "503", "504"} <= set(
                operation["responses"]
            )


def test_json_mapping_in_schemas(document: dict[str, Any]) -> None:
    """int64 is a string (number also accepted in requests), enums are names, messages null."""
    stats = schema_of(document, "job.JobStats")["properties"]
    assert stats["renderedFrameCount"]["type"] == "string"
    job = schema_of(document, "job.Job")
    assert job["properties"]["state"] == {"$ref": "#/components/schemas/job.JobState"}
    assert "RUNNING" not in schema_of(document, "job.JobState")["enum"]
    assert "PENDING" in schema_of(document, "job.JobState")["enum"]
    assert {"type": "null"} in job["properties"]["jobStats"]["anyOf"]
    assert "minCores" in job["properties"] and "min_cores" not in job["properties"]
    seq = schema_of(document, "job.JobSeq")["properties"]["jobs"]
    assert seq == {"type": "array", "items": {"$ref": "#/components/schemas/job.Job"}}
    stats_in = schema_of(document, "job.JobStats.Input")["properties"]
    assert set(stats_in["renderedFrameCount"]["type"]) == {"string", "integer"}
    tmap = schema_of(document, "department.DeptAddTasksRequest")["properties"]["tmap"]
    assert tmap["type"] == "object" and "additionalProperties" in tmap


@pytest_twisted.ensureDeferred
async def test_real_answers_match_their_schemas(
    gateway: GatewayHarness, document: dict[str, Any]
) -> None:
    """Answers from the demo farm validate against the documented 200 schemas."""
    checks = [
        ("POST", "/job.JobInterface/GetJobs", {"r": {"shows": ["testing"]}}, None),
        ("POST", "/host.HostInterface/GetHosts", {}, None),
        ("GET", "/api/v1/jobs?show=testing", None, "/api/v1/jobs"),
        ("GET", "/api/v1/shows/testing", None, "/api/v1/shows/{show}"),
    ]
    for method, path, body, template in checks:
        reply = await gateway.request(method, path, body)
        assert reply.status == 200, reply.body
        operation = document["paths"][template or path][method.lower()]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        errors = list(validator(document, schema).iter_errors(reply.json()))
        assert errors == [], (path, errors[:1])
    bad = await gateway.request("GET", "/api/v1/jobs?nope=1")
    status = {"$ref": "#/components/schemas/gateway.Status"}
    assert list(validator(document, status).iter_errors(bad.json())) == []


@pytest_twisted.ensureDeferred
async def test_docs_public_by_default(gateway: GatewayHarness) -> None:
    """Without a token: the document, the page and its assets are served."""
    spec = await gateway.request("GET", "/openapi.json", auth=None)
    assert spec.status == 200 and spec.header("content-type") == "application/json"
    assert json.loads(spec.body)["openapi"] == "3.1.0"
    page = await gateway.request("GET", "/docs", auth=None)
    assert page.status == 200 and b"swagger-ui-bundle.js" in page.body
    for asset, kind in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
        ("LICENSE", "text/plain"),
    ]:
        reply = await gateway.request("GET", f"/docs/{asset}", auth=None)
        assert reply.status == 200 and (reply.header("content-type") or "").startswith(kind)
    missing = await gateway.request("GET", "/docs/../etc/passwd", auth=None)
    assert missing.status == 404
    unknown = await gateway.request("GET", "/docs/index.css.map", auth=None)
    assert unknown.status == 404 and unknown.json()["code"] == 5
    posted = await gateway.request("POST", "/openapi.json", b"{}", auth=None)
    assert posted.status == 405


@pytest_twisted.ensureDeferred
async def test_no_public_docs_needs_a_token(farm: Any) -> None:
    """With --no-public-docs the document and page answer 401 without a token, 200 with."""
    harness = GatewayHarness(farm.address, options={"no-public-docs": True})
    try:
        for path in ("/openapi.json", "/docs", "/docs/swagger-ui.css"):
            refused = await harness.request("GET", path, auth=None)
            assert refused.status == 401, path
            allowed = await harness.request("GET", path)
            assert allowed.status == 200, path
    finally:
        harness.close()
