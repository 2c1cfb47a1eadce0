# -*- test-case-name: tests.test_resources -*-
"""
Serving the resource-route table: one generic handler for every entry.

The handler only gathers parameters, fills the RPC's request, calls Cuebot through
L{GatewayAPI.call} (so deadline, metadata, authentication and error answers are those of
the RPC routes) and reshapes the reply: one object unwrapped, or a list in the paged
envelope of L{opencue_gw.rest.paging}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from opencue_gw.api import GatewayAPI
from opencue_gw.codec import encode
from opencue_gw.errors import Code, GatewayError
from opencue_gw.http.answers import json_body
from opencue_gw.http.context import context_of
from opencue_gw.http.router import Router
from opencue_gw.jobs.form import BodyForm, url_query
from opencue_gw.rest.paging import PAGING_PARAMS, Paging, envelope
from opencue_gw.rest.spec import BoundRoute, FieldPath, Route, bind_route
from opencue_gw.rest.table import BODY_FORMS, ROUTES
from opencue_gw.rest.values import bad_parameter, convert_values, set_field
from opencue_gw.upstream.cuebot import wire_size

__all__ = ["bind_routes", "install_resource_routes"]

# How Cuebot says an object does not exist: NOT_FOUND from most servants, but INTERNAL
# with Spring's message from those without a catch (facts: "Error codes thrown").
_MISSING = re.compile(
    r"incorrect result size|emptyresultdataaccess|failed to find|not found|does not exist",
    re.IGNORECASE,
)


def bind_routes(api: GatewayAPI, routes: Sequence[Route] = ROUTES) -> list[BoundRoute]:
    """The table checked against the API's descriptors (C{ValueError} if it does not fit)."""
    return [bind_route(route, api.rpcs) for route in routes]


def install_resource_routes(
    api: GatewayAPI, router: Router, routes: Sequence[Route] = ROUTES
) -> None:
    """Add every resource route to C{router}, behind the token like the RPC routes."""
    for bound in bind_routes(api, routes):
        form = BODY_FORMS.get((bound.route.method, bound.route.path))
        handler = _Handler(api, bound, form)
        endpoint = f"resource {bound.route.method} {bound.route.path}"
        router.add(
            bound.klein_path, handler.render, methods=[bound.route.method], endpoint=endpoint
        )


def _query_params(request: IRequest) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {}
    for raw_name, raw_values in (request.args or {}).items():
        try:
            name = raw_name.decode("utf-8")
            values = [value.decode("utf-8") for value in raw_values]
        except UnicodeDecodeError:
            raise GatewayError.invalid_argument("query parameters must be UTF-8") from None
        params.setdefault(name, []).extend(values)
    return params


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid literal {name}")


def _body_params(request: IRequest) -> dict[str, list[Any]]:
    """
    The JSON object of a write route's body, parsed as carefully as an RPC body: UTF-8
    only, no NaN or Infinity, and a body nested too deeply is the client's error (400),
    not a crash. The site's body limit has already bounded its size.
    """
    content = request.content
    body = content.read() if content is not None else b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise GatewayError.invalid_argument(
            f"malformed JSON: invalid UTF-8 at byte offset {error.start}"
        ) from None
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise GatewayError.invalid_argument(
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise GatewayError.invalid_argument("malformed JSON: nested too deeply") from None
    except ValueError as error:  # NaN/Infinity, or an integer of thousands of digits
        raise GatewayError.invalid_argument(f"malformed JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise GatewayError.invalid_argument("request body must be a JSON object")
    return {name: [value] for name, value in parsed.items() if value is not None}


class _Handler:
    """Serves one bound route."""

    def __init__(self, api: GatewayAPI, bound: BoundRoute, form: BodyForm | None = None) -> None:
        self._api = api
        self._bound = bound
        self._form = form
        self._accepted = {bp.param.name: bp for bp in bound.params}
        self._names = sorted(self._accepted) + (list(PAGING_PARAMS) if bound.is_list else [])

    def render(self, request: IRequest, **path_values: str) -> Deferred[bytes]:
        """Klein's view: runs the coroutine so errors reach the router's error handler."""
        d = Deferred.fromCoroutine(self._serve(request, path_values))
        if path_values:
            d.addErrback(self._not_found, path_values)
        return d

    def _not_found(self, failure: Failure, path_values: Mapping[str, str]) -> Failure:
        """
        On C{/api/v1}, an object named in the path that does not exist is 404 (code 5),
        whatever Cuebot's own code for it (the RPC routes keep Cuebot's status).
        """
        error = failure.value
        if (
            isinstance(error, GatewayError)
            and error.upstream
            and error.code in (Code.NOT_FOUND, Code.INTERNAL, Code.UNKNOWN)
            and (error.code == Code.NOT_FOUND or _MISSING.search(error.message))
        ):
            named = ", ".join(f"{name} {value!r}" for name, value in path_values.items())
            missing = GatewayError.not_found(f"{named}: not found")
            missing.upstream = True
            return Failure(missing)
        return failure

    def _params(self, request: IRequest) -> tuple[dict[str, list[Any]], bytes | None]:
        """The parameters, or (from a body form such as a dry run) the whole answer."""
        is_get = self._bound.route.method == "GET"
        raw = _query_params(request) if is_get else _body_params(request)
        if self._form is not None and not is_get:
            prepared = self._form.prepare(raw, url_query(request.uri))
            if prepared.answer is not None:
                return raw, prepared.answer
            raw = dict(prepared.members)
        for name in raw:
            if name not in self._accepted and not (self._bound.is_list and name in PAGING_PARAMS):
                accepted = ", ".join(self._names) or "none"
                where = "query parameter" if is_get else "body member"
                raise GatewayError.invalid_argument(
                    f"unknown {where} {name!r} (accepted: {accepted})"
                )
        for bp in self._bound.params:
            if bp.param.required and not raw.get(bp.param.name):
                raise bad_parameter(bp.param.name, "is required")
        return raw, None

    async def _serve(self, request: IRequest, path_values: Mapping[str, str]) -> bytes:
        bound = self._bound
        raw, answer = self._params(request)
        if answer is not None:
            return await _as_deferred(json_body(request, answer))
        paging = Paging.from_params(raw) if bound.is_list else None
        message = bound.rpc.request_class()
        for name, value in path_values.items():
            target = bound.path_targets[name]
            if isinstance(target, FieldPath):
                set_field(message, target, [value])
            else:
                await self._look_up(request, message, value, target)
        for name, values in raw.items():
            bp = self._accepted.get(name)
            if bp is not None:
                set_field(message, bp.target, convert_values(name, bp.target, values))
        if paging is not None and bound.route.upstream_paging is not None:
            paging.ask_upstream(message, bound.route.upstream_paging)
        if bound.route.caller is not None:
            self._note_caller(request, message, bound.route.caller)
        reply = await self._api.call(bound.rpc, message, request)
        body = await self._api.encoder.run(wire_size(reply), self._shape, reply.message, paging)
        ctx = context_of(request)
        if ctx is not None:
            ctx.grpc_code = "OK"
        return await _as_deferred(json_body(request, body))

    async def _look_up(self, request: IRequest, message: Message, value: str, target: Any) -> None:
        lookup, rpc, key = target
        query = rpc.request_class()
        set_field(query, key, [value])
        found = await self._api.call(rpc, query, request)
        taken = _walk(found.message, lookup.take)
        holder = _walk(message, lookup.into)
        holder.CopyFrom(taken)

    def _note_caller(self, request: IRequest, message: Message, field: str) -> None:
        ctx = context_of(request)
        identity = ctx.identity if ctx is not None else None
        if identity is not None and identity.sub:
            head, _, leaf = field.rpartition(".")
            holder = _walk(message, head) if head else message
            if not getattr(holder, leaf):
                setattr(holder, leaf, identity.sub)

    def _shape(self, reply: Message, paging: Paging | None) -> bytes:
        route = self._bound.route
        if route.items is not None and paging is not None:
            head, _, leaf = route.items.rpartition(".")
            holder = _walk(reply, head) if head else reply
            items = list(getattr(holder, leaf))
            return envelope(items, paging, sliced=route.upstream_paging is None)
        if route.unwrap is not None:
            head, _, leaf = route.unwrap.rpartition(".")
            holder = _walk(reply, head) if head else reply
            if not holder.HasField(leaf):
                return b"null"
            return encode(getattr(holder, leaf))
        return encode(reply)


async def _as_deferred(body: bytes | Deferred[bytes]) -> bytes:
    return await body if isinstance(body, Deferred) else body


def _walk(message: Message, path: str) -> Message:
    for name in path.split("."):
        message = getattr(message, name)
    return message
