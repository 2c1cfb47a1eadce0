# -*- test-case-name: tests.test_resources -*-
"""
The vocabulary of the resource-route table, and its binding to the RPC descriptors.

A route is written as data (L{Route}, L{Param}, L{Lookup}) naming request fields by
dotted paths such as C{req.states.frame_states}. L{bind_route} resolves those paths
against the descriptors once, at start-up, so a typo in the table stops the gateway
from starting instead of failing a user's request, and so the value kinds (integer,
enum, boolean) come from the protos rather than being restated in the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from opencue_gw.upstream.rpcs import Rpc

__all__ = [
    "BoundParam",
    "BoundRoute",
    "FieldPath",
    "Lookup",
    "Param",
    "Route",
    "bind_route",
    "resolve_field",
]

Kind = Literal["string", "integer", "boolean", "enum"]

_T = FieldDescriptor
_INTEGER_TYPES = frozenset(
    {
        _T.TYPE_INT32,
        _T.TYPE_SINT32,
        _T.TYPE_SFIXED32,
        _T.TYPE_UINT32,
        _T.TYPE_FIXED32,
        _T.TYPE_INT64,
        _T.TYPE_SINT64,
        _T.TYPE_SFIXED64,
        _T.TYPE_UINT64,
        _T.TYPE_FIXED64,
    }
)
_PATH_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Param:
    """
    A query parameter (GET) or JSON body member (POST) that fills one request field.

    The parameter's value kind and whether it repeats are read from the field.
    """

    name: str
    field: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Lookup:
    """
    A path parameter that names an object the RPC wants whole: the gateway first calls
    C{rpc} with C{key} set to the parameter, then copies the reply's C{take} field into
    the request's C{into} field. (Cuebot's C{GetGroups} needs a show's id; users know
    its name.)
    """

    rpc: str
    key: str
    take: str
    into: str


@dataclass(frozen=True)
class Route:
    """
    One resource-style route as written in the table.

    C{path} uses OpenAPI's C{{name}} placeholders; C{path_params} maps each to a request
    field path or a L{Lookup}. A route with C{items} is a list: C{items} is the reply's
    repeated field, paged by the gateway unless C{upstream_paging} names the criteria
    message whose C{page}/C{limit} Cuebot honours. C{unwrap} names the reply field
    returned alone (C{job} of C{{"job": {...}}}). C{caller} names a request field that
    receives the token's subject, so Cuebot's logs say who did it.
    """

    method: Literal["GET", "POST"]
    path: str
    rpc: str
    summary: str
    path_params: Mapping[str, str | Lookup] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    items: str | None = None
    upstream_paging: str | None = None
    unwrap: str | None = None
    caller: str | None = None


@dataclass(frozen=True)
class FieldPath:
    """A dotted request field path resolved to its descriptors."""

    path: str
    fields: tuple[FieldDescriptor, ...]

    @property
    def leaf(self) -> FieldDescriptor:
        """The field the value lands in."""
        return self.fields[-1]

    @property
    def repeated(self) -> bool:
        """Whether the leaf takes several values."""
        return bool(self.leaf.is_repeated)

    @property
    def kind(self) -> Kind:
        """How a text value for the leaf is read."""
        fd = self.leaf
        if fd.type == _T.TYPE_BOOL:
            return "boolean"
        if fd.type == _T.TYPE_ENUM:
            return "enum"
        if fd.type in _INTEGER_TYPES:
            return "integer"
        return "string"

    @property
    def enum(self) -> EnumDescriptor | None:
        """The leaf's enum type, for enum fields."""
        return self.leaf.enum_type

    def container(self, message: Message) -> Message:
        """The message holding the leaf inside C{message}, creating parents on the way."""
        for fd in self.fields[:-1]:
            message = getattr(message, fd.name)
        return message


def resolve_field(descriptor: Descriptor, path: str) -> FieldPath:
    """
    Resolve C{path} inside C{descriptor}; raise C{ValueError} naming the bad segment.

    Only the last segment may be repeated: a value cannot be spread over a list of
    messages.
    """
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for segment in path.split("."):
        if current is None:
            raise ValueError(f"{path}: {fields[-1].name} is not a message")
        fd = current.fields_by_name.get(segment)
        if fd is None:
            raise ValueError(f"{path}: {current.full_name} has no field {segment!r}")
        if fields and fields[-1].is_repeated:
            raise ValueError(f"{path}: {fields[-1].name} is repeated")
        fields.append(fd)
        current = fd.message_type
    if fields[-1].message_type is not None:
        raise ValueError(f"{path}: {fields[-1].name} is a message, not a value")
    return FieldPath(path, tuple(fields))


@dataclass(frozen=True)
class BoundParam:
    """A L{Param} with its field resolved."""

    param: Param
    target: FieldPath


@dataclass(frozen=True)
class BoundRoute:
    """A L{Route} checked against the descriptors and ready to serve."""

    route: Route
    rpc: Rpc
    path_targets: Mapping[str, FieldPath | tuple[Lookup, Rpc, FieldPath]]
    params: tuple[BoundParam, ...]
    item_descriptor: Descriptor | None
    """For list routes, the message type of one item."""
    unwrapped: Descriptor | None
    """For routes with C{unwrap}, the message type returned."""

    @property
    def is_list(self) -> bool:
        """Whether the route answers the paged C{{"items": [...]}} envelope."""
        return self.route.items is not None

    @property
    def klein_path(self) -> str:
        """The path in Klein's (werkzeug's) placeholder syntax."""
        return _PATH_PARAM.sub(r"<\1>", self.route.path)


def _message_at(descriptor: Descriptor, path: str) -> tuple[FieldDescriptor, ...]:
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for segment in path.split("."):
        fd = current.fields_by_name.get(segment) if current is not None else None
        if fd is None or fd.message_type is None:
            raise ValueError(f"{path}: {segment!r} is not a message field")
        fields.append(fd)
        current = fd.message_type
    return tuple(fields)


def bind_route(route: Route, rpcs: Mapping[str, Rpc]) -> BoundRoute:
    """Check C{route} against the descriptors; raise C{ValueError} saying what is wrong."""
    rpc = rpcs.get(route.rpc)
    if rpc is None:
        raise ValueError(f"{route.path}: unknown RPC {route.rpc}")
    request = rpc.request_class.DESCRIPTOR
    placeholders = _PATH_PARAM.findall(route.path)
    if sorted(placeholders) != sorted(route.path_params):
        raise ValueError(f"{route.path}: path parameters and placeholders differ")
    targets: dict[str, FieldPath | tuple[Lookup, Rpc, FieldPath]] = {}
    for name, target in route.path_params.items():
        if isinstance(target, Lookup):
            lookup_rpc = rpcs.get(target.rpc)
            if lookup_rpc is None:
                raise ValueError(f"{route.path}: unknown lookup RPC {target.rpc}")
            key = resolve_field(lookup_rpc.request_class.DESCRIPTOR, target.key)
            taken = _message_at(lookup_rpc.response_class.DESCRIPTOR, target.take)[-1]
            into = _message_at(request, target.into)[-1]
            if taken.message_type is not into.message_type:
                raise ValueError(f"{route.path}: lookup gives {taken.message_type.full_name}")
            targets[name] = (target, lookup_rpc, key)
        else:
            targets[name] = resolve_field(request, target)
    params = tuple(BoundParam(p, resolve_field(request, p.field)) for p in route.params)
    if route.upstream_paging is not None:
        for name in ("page", "limit"):
            resolve_field(request, f"{route.upstream_paging}.{name}")
    if route.caller is not None:
        resolve_field(request, route.caller)
    reply = rpc.response_class.DESCRIPTOR
    item = unwrapped = None
    if route.items is not None:
        *parents, last = route.items.split(".")
        holder = _message_at(reply, ".".join(parents))[-1].message_type if parents else reply
        fd = holder.fields_by_name.get(last)
        if fd is None or not fd.is_repeated or fd.message_type is None:
            raise ValueError(f"{route.path}: {route.items} is not a repeated message field")
        item = fd.message_type
    if route.unwrap is not None:
        unwrapped = _message_at(reply, route.unwrap)[-1].message_type
    return BoundRoute(route, rpc, targets, params, item, unwrapped)
