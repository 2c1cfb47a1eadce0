# -*- test-case-name: tests.test_rpcs -*-
"""
The table of RPCs the gateway serves, read from the OpenCue API descriptors at start-up.

Nothing here is written per RPC: the pinned C{opencue-proto} package carries the
descriptors Cuebot is built from, and every unary method of every Cuebot-side service
becomes a route. A new Cuebot release therefore needs a version bump, not code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

__all__ = [
    "PER_REQUEST_KEYS",
    "RQD_SIDE_SERVICES",
    "Rpc",
    "is_read_method",
    "load_rpcs",
    "opencue_proto_modules",
    "read_key",
]

# Served by RQD on the render hosts (or called by RQD), never by Cuebot.
RQD_SIDE_SERVICES = frozenset({"rqd.RqdInterface", "rqd.RunningFrame", "report.RqdReportInterface"})

_READ_PREFIXES = ("Get", "Find", "Is")
# Metadata the gateway adds per request (its id, where it came from, its trace); it does
# not make two reads different.
PER_REQUEST_KEYS = frozenset(
    {"x-request-id", "x-forwarded-for", "x-forwarded-host", "traceparent", "tracestate"}
)


def is_read_method(method: str) -> bool:
    """
    Whether a method only reads Cuebot's state.

    OpenCue names its reads Get*, Find* and Is*; everything else changes the farm. The
    distinction decides what may be coalesced, cached and audited.
    """
    return method.startswith(_READ_PREFIXES)


@dataclass(frozen=True)
class Rpc:
    """One unary RPC as the gateway exposes it."""

    service: str
    """Fully qualified service name, C{<proto package>.<Service>}."""
    method: str
    path: str
    """Both the HTTP path and the gRPC method path: C{/<package>.<Service>/<Method>}."""
    request_class: type[Message]
    response_class: type[Message]
    is_read: bool


def opencue_proto_modules() -> list[ModuleType]:
    """Import every C{*_pb2} module of the installed C{opencue_proto} package."""
    import opencue_proto

    names = sorted(
        info.name
        for info in pkgutil.iter_modules(opencue_proto.__path__)
        if info.name.endswith("_pb2")
    )
    return [importlib.import_module(f"opencue_proto.{name}") for name in names]


def _rpc_for(method: MethodDescriptor) -> Rpc:
    service = method.containing_service.full_name
    return Rpc(
        service=service,
        method=method.name,
        path=f"/{service}/{method.name}",
        request_class=message_factory.GetMessageClass(method.input_type),
        response_class=message_factory.GetMessageClass(method.output_type),
        is_read=is_read_method(method.name),
    )


def load_rpcs(
    modules: Iterable[ModuleType] | None = None,
    exclude: frozenset[str] = RQD_SIDE_SERVICES,
) -> Mapping[str, Rpc]:
    """
    Build the route table: HTTP path to L{Rpc}, for every Cuebot-side unary method.

    Streaming methods are skipped because a unary HTTP request cannot carry them; the
    OpenCue API has none today, so this only guards against a future release.
    """
    table: dict[str, Rpc] = {}
    for module in modules if modules is not None else opencue_proto_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in exclude:
                continue
            for method in service.methods:
                if method.client_streaming or method.server_streaming:
                    continue
                rpc = _rpc_for(method)
                table[rpc.path] = rpc
    return dict(sorted(table.items()))


def read_key(
    rpc: Rpc, request: Message, metadata: Sequence[tuple[str, str | bytes]]
) -> tuple[Any, ...]:
    """
    What makes two reads the same question: the method, the request's canonical bytes
    and the caller-supplied metadata, without the keys the gateway sets per request.
    """
    extra = tuple(sorted((k, v) for k, v in metadata if k not in PER_REQUEST_KEYS))
    return (rpc.path, request.SerializeToString(deterministic=True), extra)
