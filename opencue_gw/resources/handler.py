# -*- test-case-name: tests.test_resources -*-
"""
Serving the resource-route table: one generic handler for every entry.

The handler only gathers parameters, fills the RPC's request, calls Cuebot through
L{GatewayAPI.call} (so deadline, metadata, authentication and error answers are those of
the RPC routes) and reshapes the reply: one object unwrapped, or a list in the paged
envelope of L{opencue_gw.resources.paging}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from opencue_gw.api import GatewayAPI
from opencue_gw.context import context_of
from opencue_gw.errors import GatewayError
from opencue_gw.jsoncodec import encode_message
from opencue_gw.resources.paging import PAGING_PARAMS, Paging, envelope
from opencue_gw.resources.spec import BoundRoute, FieldPath, Route, bind_route
from opencue_gw.resources.table import ROUTES
from opencue_gw.resources.values import bad_parameter, convert_values, set_field
from opencue_gw.respond import set_json_headers

__all__ = ["bind_routes", "install_resource_routes"]

_MAX_BODY = 16 * 1024 * 1024


def bind_routes(api: GatewayAPI, routes: Sequence[Route] = ROUTES) -> list[BoundRoute]:
    """The table checked against the API's descriptors (C{ValueError} if it does not fit)."""
    return [bind_route(route, api.rpcs) for route in routes]


def install_resource_routes(api: GatewayAPI, routes: Sequence[Route] = ROUTES) -> None:
    """Add every resource route to C{api.app}, behind the same guard as the RPC routes."""
    for bound in bind_routes(api, routes):
        handler = _Handler(api, bound)
        endpoint = f"resource {bound.route.method} {bound.route.path}"
        api.app.route(bound.klein_path, methods=[bound.route.method], endpoint=endpoint)(
            handler.render
        )


def _query_params(request: IRequest) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {}
    for raw_name, raw_values in (request.args or {}).items():
        try:
            name = raw_name.decode("utf-8")
            values = [value.decode("utf-8") for value in raw_values]
        except UnicodeDecodeError:
            raise GatewayError(3, "query parameters must be UTF-8") from None
        params.setdefault(name, []).extend(values)
    return params


def _body_params(request: IRequest) -> dict[str, list[Any]]:
    content = request.content
    body = content.read(_MAX_BODY + 1) if content is not None else b""
    if len(body) > _MAX_BODY:
        raise GatewayError(3, "request body too large")
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise GatewayError(3, f"request body is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise GatewayError(3, "request body must be a JSON object")
    return {name: [value] for name, value in parsed.items() if value is not None}


class _Handler:
    """Serves one bound route."""

    def __init__(self, api: GatewayAPI, bound: BoundRoute) -> None:
        self._api = api
        self._bound = bound
        self._accepted = {bp.param.name: bp for bp in bound.params}
        self._names = sorted(self._accepted) + (list(PAGING_PARAMS) if bound.is_list else [])

    def render(self, request: IRequest, **path_values: str) -> Deferred[bytes]:
        """Klein's view: runs the coroutine so errors reach the API's error handlers."""
        return Deferred.fromCoroutine(self._serve(request, path_values))

    def _params(self, request: IRequest) -> dict[str, list[Any]]:
        is_get = self._bound.route.method == "GET"
        raw = _query_params(request) if is_get else _body_params(request)
        for name in raw:
            if name not in self._accepted and not (self._bound.is_list and name in PAGING_PARAMS):
                accepted = ", ".join(self._names) or "none"
                where = "query parameter" if is_get else "body member"
                raise GatewayError(3, f"unknown {where} {name!r} (accepted: {accepted})")
        for bp in self._bound.params:
            if bp.param.required and not raw.get(bp.param.name):
                raise bad_parameter(bp.param.name, "is required")
        return raw

    async def _serve(self, request: IRequest, path_values: Mapping[str, str]) -> bytes:
        bound = self._bound
        raw = self._params(request)
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
        body = self._shape(reply.message, paging)
        ctx = context_of(request)
        if ctx is not None:
            ctx.grpc_code = "OK"
        set_json_headers(request, 200)
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return body

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
            return encode_message(getattr(holder, leaf))
        return encode_message(reply)


def _walk(message: Message, path: str) -> Message:
    for name in path.split("."):
        message = getattr(message, name)
    return message
