# -*- test-case-name: tests.integration.test_openapi -*-
"""
The OpenAPI 3.1 description of the gateway, generated from the descriptors at start-up.

Generated rather than written so it cannot drift from what is served: the RPC routes
come from the same L{Rpc} table as the routes themselves and the resource routes from
the same bound table as their handler. Schemas describe the JSON mapping the codec
really speaks (grpc-gateway's): lowerCamelCase names, 64-bit integers as strings, enums
by name, unset messages as C{null}. Requests are more lenient than answers (numbers for
64-bit integers, enum numbers, numeric strings), so a message used in both directions
gets a second, C{.Input} schema for requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any, Literal

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from opencue_gw.errors import GRPC_CODE_NAMES
from opencue_gw.jobs.form import BodyForm
from opencue_gw.rest.paging import DEFAULT_LIMIT, MAX_LIMIT
from opencue_gw.rest.spec import BoundRoute, FieldPath
from opencue_gw.rest.table import BODY_FORMS
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["build_openapi", "openapi_bytes"]

Direction = Literal["in", "out"]
Schema = dict[str, Any]

_T = FieldDescriptor
_INT32 = frozenset({_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32})
_UINT32 = frozenset({_T.TYPE_UINT32, _T.TYPE_FIXED32})
_INT64 = frozenset({_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64})
_UINT64 = frozenset({_T.TYPE_UINT64, _T.TYPE_FIXED64})
_FLOATS = {_T.TYPE_FLOAT: "float", _T.TYPE_DOUBLE: "double"}

_STATUS_REF = {"$ref": "#/components/schemas/gateway.Status"}
# HTTP status -> (component name, what it means here).
_ERRORS: Mapping[str, tuple[str, str]] = {
    "400": ("BadRequest", "Invalid argument: bad JSON, field or parameter (code 3, 9, 11)."),
    "401": ("Unauthenticated", "Missing, malformed, expired or forged bearer token (code 16)."),
    "403": ("PermissionDenied", "The token may not do this (code 7)."),
    "404": ("NotFound", "No such route or object (code 5)."),
    "405": ("MethodNotAllowed", "Wrong HTTP method for this path (code 12)."),
    "409": ("Conflict", "Already exists or aborted (code 6, 10)."),
    "429": ("TooManyRequests", "Rate or resource limit reached (code 8)."),
    "500": ("Internal", "Cuebot or the gateway failed (code 2, 13, 15)."),
    "501": ("Unimplemented", "Cuebot does not implement this RPC (code 12)."),
    "503": ("Unavailable", "Cuebot unreachable or the gateway is draining (code 14)."),
    "504": ("DeadlineExceeded", "The call's deadline passed (code 4)."),
}
_SPECIAL_FLOATS = ["NaN", "Infinity", "-Infinity"]


def _version() -> str:
    try:
        return metadata.version("opencue-gateway")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _proto_version() -> str:
    try:
        return metadata.version("opencue-proto")
    except metadata.PackageNotFoundError:
        return "unknown"


def _messages_under(roots: Iterable[Descriptor]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        desc = stack.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for fd in desc.fields:
            if fd.message_type is not None:
                stack.append(fd.message_type)
            if fd.enum_type is not None:
                seen.add(fd.enum_type.full_name)
    return seen


class _Schemas:
    """
    Builds C{components/schemas} on demand: each message or enum is described once per
    direction and referred to by C{$ref} elsewhere.
    """

    def __init__(self, answered: set[str]) -> None:
        self._answered = answered
        self.schemas: dict[str, Schema] = {}

    def name(self, full_name: str, direction: Direction) -> str:
        """A request-only type keeps its proto name; a shared one gets C{.Input}."""
        if direction == "in" and full_name in self._answered:
            return full_name + ".Input"
        return full_name

    def ref(self, desc: Descriptor | EnumDescriptor, direction: Direction) -> Schema:
        """A C{$ref} to the schema of C{desc}, building it first if needed."""
        name = self.name(desc.full_name, direction)
        if name not in self.schemas:
            self.schemas[name] = {}
            if isinstance(desc, Descriptor):
                self.schemas[name] = self._message(desc, direction)
            else:
                self.schemas[name] = self._enum(desc, direction)
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum(self, enum: EnumDescriptor, direction: Direction) -> Schema:
        names = [value.name for value in enum.values]
        if direction == "out":
            return {"type": "string", "enum": names, "title": enum.full_name}
        return {
            "title": enum.full_name,
            "anyOf": [{"type": "string", "enum": names}, {"type": "integer", "format": "int32"}],
        }

    def _message(self, desc: Descriptor, direction: Direction) -> Schema:
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for fd in desc.fields:
            properties[fd.json_name] = self.field(fd, direction)
            if direction == "out" and fd.containing_oneof is None:
                required.append(fd.json_name)
        schema: Schema = {"type": "object", "title": desc.full_name, "properties": properties}
        if required:
            schema["required"] = required
        return schema

    def field(self, fd: FieldDescriptor, direction: Direction) -> Schema:
        """The schema of one field's JSON value."""
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value = fd.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.value(value, direction)}
        if fd.is_repeated:
            return {"type": "array", "items": self.value(fd, direction)}
        if fd.message_type is not None:
            return {"anyOf": [self.ref(fd.message_type, direction), {"type": "null"}]}
        return self.value(fd, direction)

    def value(self, fd: FieldDescriptor, direction: Direction) -> Schema:
        """The schema of one value of C{fd} (an element, for repeated fields)."""
        lenient = direction == "in"
        if fd.message_type is not None:
            return self.ref(fd.message_type, direction)
        if fd.enum_type is not None:
            return self.ref(fd.enum_type, direction)
        t = fd.type
        if t == _T.TYPE_STRING:
            return {"type": "string"}
        if t == _T.TYPE_BOOL:
            return {"type": "boolean"}
        if t == _T.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t in _INT64 or t in _UINT64:
            fmt = "int64" if t in _INT64 else "uint64"
            if lenient:
                return {"type": ["string", "integer"], "format": fmt}
            return {"type": "string", "format": fmt, "pattern": "^-?[0-9]+$"}
        if t in _INT32 or t in _UINT32:
            fmt = "int32" if t in _INT32 else "uint32"
            return {"type": ["integer", "string"] if lenient else "integer", "format": fmt}
        fmt = _FLOATS[t]
        if lenient:
            return {"type": ["number", "string"], "format": fmt}
        return {"anyOf": [{"type": "number", "format": fmt}, {"enum": _SPECIAL_FLOATS}]}


def _error_responses() -> dict[str, Any]:
    return {
        status: {"$ref": f"#/components/responses/{name}"} for status, (name, _) in _ERRORS.items()
    }


def _rpc_operation(rpc: Rpc, schemas: _Schemas) -> dict[str, Any]:
    request = rpc.request_class.DESCRIPTOR
    reply = rpc.response_class.DESCRIPTOR
    kind = "Reads" if rpc.is_read else "Changes"
    return {
        "tags": [rpc.service],
        "operationId": f"{rpc.service}.{rpc.method}",
        "summary": rpc.method,
        "description": (
            f"{kind} Cuebot state: gRPC `{rpc.path}` with `{request.full_name}`, "
            f"answering `{reply.full_name}`."
        ),
        "requestBody": {
            "required": False,
            "description": "The request message as JSON; an empty body is an empty message.",
            "content": {"application/json": {"schema": schemas.ref(request, "in")}},
        },
        "responses": {
            "200": {
                "description": "The reply message.",
                "content": {"application/json": {"schema": schemas.ref(reply, "out")}},
            },
            **_error_responses(),
        },
    }


def _param_schema(target: FieldPath, schemas: _Schemas) -> Schema:
    kind = target.kind
    if kind == "enum":
        assert target.enum is not None
        one: Schema = {"type": "string", "enum": [v.name for v in target.enum.values]}
    else:
        one = {"type": kind}
    if target.repeated:
        return {"type": "array", "items": one}
    return one


def _paging_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": "page",
            "in": "query",
            "description": "Page number, from 1.",
            "schema": {"type": "integer", "minimum": 1, "default": 1},
        },
        {
            "name": "limit",
            "in": "query",
            "description": f"Items per page, at most {MAX_LIMIT}.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
    ]


def _page_schema(item: Descriptor, schemas: _Schemas) -> Schema:
    name = f"{item.full_name}.Page"
    if name not in schemas.schemas:
        schemas.schemas[name] = {
            "type": "object",
            "title": f"A page of {item.full_name}",
            "required": ["items", "page", "limit", "nextPage"],
            "properties": {
                "items": {"type": "array", "items": schemas.ref(item, "out")},
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                "nextPage": {
                    "type": ["integer", "null"],
                    "description": "The page to ask for next; null after the last one.",
                },
            },
        }
    return {"$ref": f"#/components/schemas/{name}"}


def _resource_operation(
    bound: BoundRoute, schemas: _Schemas, form: BodyForm | None = None
) -> dict[str, Any]:
    route = bound.route
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.path_params
    ]
    operation: dict[str, Any] = {
        "tags": [f"v1 {route.path.split('/')[3]}"],
        "operationId": f"v1.{route.method.lower()}{route.path[7:].replace('/', '.')}",
        "summary": route.summary,
        "description": f"Served by `{route.rpc}`.",
    }
    if route.method == "GET":
        for bp in bound.params:
            parameters.append(
                {
                    "name": bp.param.name,
                    "in": "query",
                    "required": bp.param.required,
                    "description": bp.param.description,
                    "schema": _param_schema(bp.target, schemas),
                    **({"explode": True} if bp.target.repeated else {}),
                }
            )
        if bound.is_list:
            parameters.extend(_paging_parameters())
    elif bound.params:
        body: Schema = {
            "type": "object",
            "properties": {
                bp.param.name: {
                    **_param_schema(bp.target, schemas),
                    "description": bp.param.description,
                }
                for bp in bound.params
            },
        }
        required = [bp.param.name for bp in bound.params if bp.param.required]
        if required:
            body["required"] = required
        if form is not None:
            schemas.schemas.update(form.schemas())
            body = {"oneOf": [body, {"$ref": f"#/components/schemas/{form.schema_name}"}]}
            parameters.extend(form.parameters())
        operation["requestBody"] = {
            "required": bool(required),
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        operation["parameters"] = parameters
    if bound.item_descriptor is not None:
        answer = _page_schema(bound.item_descriptor, schemas)
    elif bound.unwrapped is not None:
        answer = {"anyOf": [schemas.ref(bound.unwrapped, "out"), {"type": "null"}]}
    else:
        answer = schemas.ref(bound.rpc.response_class.DESCRIPTOR, "out")
    if form is not None and route.method == "POST":
        answer = {"anyOf": [answer, form.answer_schema()]}
    operation["responses"] = {
        "200": {"description": "Done.", "content": {"application/json": {"schema": answer}}},
        **_error_responses(),
    }
    return operation


def _components(schemas: _Schemas) -> dict[str, Any]:
    codes = ", ".join(f"{code} {name}" for code, name in GRPC_CODE_NAMES.items())
    schemas.schemas["gateway.Status"] = {
        "type": "object",
        "title": "Error",
        "description": f"Every error answer (grpc-gateway's google.rpc.Status). Codes: {codes}.",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "schemas": dict(sorted(schemas.schemas.items())),
        "responses": {
            name: {
                "description": text,
                "content": {"application/json": {"schema": _STATUS_REF}},
            }
            for name, text in _ERRORS.values()
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A token the gateway accepts (`opencue-gw token` mints one).",
            }
        },
    }


_DESCRIPTION = """\
REST/JSON gateway in front of OpenCue's Cuebot.

* **RPC routes**: every Cuebot RPC as `POST /<package>.<Service>/<Method>` with the request
  message as JSON, compatible with OpenCue's Go grpc-gateway.
* **Resource routes** under `/api/v1/`: shows, jobs, frames, layers and hosts as plain
  GET/POST routes. Lists answer `{{"items": [...], "page": P, "limit": L, "nextPage": N}}`;
  ask for the next page with `?page=N` until `nextPage` is null (`limit` defaults to
  {default}, at most {most}).
* **Jobs as JSON**: `POST /api/v1/jobs` takes a job description (`gateway.JobDescription`:
  show, shot, user, name and layers with command, frame range, cores, memory...) as well
  as job-spec XML; every field in error is named in the 400 answer, and `?dry_run=true`
  answers the XML without launching.

JSON follows the proto3 mapping: lowerCamelCase names, 64-bit integers as strings (numbers
are accepted in requests), enums by name, unset messages as `null`. Every call needs an
`Authorization: Bearer <token>` header; errors answer `{{"code", "message", "details"}}`.
"""


def build_openapi(
    rpcs: Mapping[str, Rpc],
    resources: Sequence[BoundRoute],
    forms: Mapping[tuple[str, str], BodyForm] = BODY_FORMS,
) -> dict[str, Any]:
    """
    The OpenAPI document for the RPC table C{rpcs} and the bound resource routes, with
    the other body forms C{forms} some POST routes take (the JSON job description).
    """
    answered = _messages_under(
        [rpc.response_class.DESCRIPTOR for rpc in rpcs.values()]
        + [b.item_descriptor for b in resources if b.item_descriptor is not None]
        + [b.unwrapped for b in resources if b.unwrapped is not None]
    )
    schemas = _Schemas(answered)
    paths: dict[str, dict[str, Any]] = {}
    for bound in resources:
        route = bound.route
        form = forms.get((route.method, route.path))
        paths.setdefault(route.path, {})[route.method.lower()] = _resource_operation(
            bound, schemas, form
        )
    for rpc in rpcs.values():
        paths[rpc.path] = {"post": _rpc_operation(rpc, schemas)}
    tags = [
        {"name": name}
        for name in dict.fromkeys(
            [op["tags"][0] for item in paths.values() for op in item.values()]
        )
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenCue REST gateway",
            "version": _version(),
            "description": _DESCRIPTION.format(default=DEFAULT_LIMIT, most=MAX_LIMIT),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            "x-opencue-proto": _proto_version(),
        },
        "tags": tags,
        "security": [{"bearer": []}],
        "paths": paths,
        "components": _components(schemas),
    }


def openapi_bytes(rpcs: Mapping[str, Rpc], resources: Sequence[BoundRoute]) -> bytes:
    """The document as compact UTF-8 JSON, ready to serve."""
    document = build_openapi(rpcs, resources)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
