# -*- test-case-name: tests.test_api -*-
"""
Every Cuebot RPC as C{POST /<package>.<Service>/<Method>}, and the one way to call
Cuebot on behalf of an HTTP request.

Every RPC in the descriptor table (L{opencue_gw.upstream.rpcs}) is a fixed path of the router,
found by a dict lookup. L{GatewayAPI.call} is where a request becomes a Cuebot call:
the policy decision, the deadline, the metadata sent with it and the audit record are
made there, for the RPC routes and the resource routes alike. L{GatewayAPI.respond}
turns the answer back into grpc-gateway's JSON.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from google.protobuf.message import Message
from twisted.internet.defer import Deferred, fail
from twisted.web.iweb import IRequest

from opencue_gw.auth.audit import AuditLog
from opencue_gw.auth.policy import Policy
from opencue_gw.codec import decode_message
from opencue_gw.errors import GatewayError
from opencue_gw.http.answers import json_body
from opencue_gw.http.context import context_of
from opencue_gw.http.encoder import AnswerEncoder
from opencue_gw.http.router import Router
from opencue_gw.http.wire import valid_host
from opencue_gw.ops.tracing import TRACE_KEYS, traced_cuebot_call, traced_encoding
from opencue_gw.upstream.rpcs import Rpc

__all__ = ["GatewayAPI", "IUpstream", "parse_grpc_timeout"]

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_GRPC_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_METADATA_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_METADATA_PREFIX = b"grpc-metadata-"
# Keys gRPC reserves or that the gateway sets itself.
_RESERVED_KEYS = ("grpc-", ":")
_OWN_KEYS = frozenset({"x-forwarded-for", "x-forwarded-host", "x-request-id"})
# RFC 9111 §5.5 (obsoleted but still what caches and RFC 5861 clients understand).
_STALE_WARNING = b'110 - "Response is Stale"'


class IUpstream(Protocol):
    """What the API needs of the Cuebot client; tests may pass any implementation."""

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[Any]: ...


def parse_grpc_timeout(value: str) -> float:
    """
    Parse a C{Grpc-Timeout} header (gRPC's "TimeoutValue TimeoutUnit" form) in seconds.

    grpc-gateway honours the header; a malformed one is the client's error.
    """
    match = _GRPC_TIMEOUT.match(value.strip())
    if match is None:
        raise GatewayError.invalid_argument(f"invalid Grpc-Timeout header: {value[:32]!r}")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


def _canonical_header(key: str) -> bytes:
    return ("Grpc-Metadata-" + "-".join(p.capitalize() for p in key.split("-"))).encode("latin-1")


class GatewayAPI:
    """
    The HTTP face of every Cuebot RPC, and the call path every route shares.

    One instance per gateway, holding its collaborators.
    """

    def __init__(
        self,
        rpcs: Mapping[str, Rpc],
        upstream: IUpstream,
        encoder: AnswerEncoder,
        *,
        grpc_timeout: float | None = 30.0,
        strict_json: bool = False,
        allow_unknown_enums: bool = False,
        policy: Policy | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.rpcs = rpcs
        self.encoder = encoder
        self._upstream = upstream
        self._grpc_timeout = grpc_timeout
        self._discard_unknown = not strict_json
        self._allow_unknown_enums = allow_unknown_enums
        self._policy = policy
        self._audit = audit

    def install(self, router: Router) -> None:
        """Serve every RPC at its path of C{router}, behind the token."""
        for rpc in self.rpcs.values():
            router.add_path(rpc.path, partial(self._serve_rpc, rpc))

    def decode(self, body: bytes, cls: type[Message]) -> Message:
        """A request body as C{cls}, under the gateway's JSON settings."""
        return decode_message(
            body,
            cls,
            discard_unknown=self._discard_unknown,
            allow_unknown_enums=self._allow_unknown_enums,
        )

    def _serve_rpc(self, rpc: Rpc, request: IRequest) -> Deferred[Any]:
        if request.method != b"POST":
            # grpc-gateway answers 501 here; 405 with Allow is the HTTP answer (README).
            raise GatewayError.method_not_allowed("POST")
        ctx = context_of(request)
        if ctx is not None:
            ctx.rpc = rpc.path[1:]
        content = request.content
        message = self.decode(content.read() if content is not None else b"", rpc.request_class)
        return self.call(rpc, message, request).addCallback(self.respond, request)

    def call(self, rpc: Rpc, message: Message, request: IRequest) -> Deferred[Any]:
        """
        Send C{message} to Cuebot on behalf of C{request}: its deadline, metadata and
        context apply. Fires with the upstream reply (C{.message}, C{.headers}).

        A read is cancelled when its client goes away; a mutation is not: Cuebot may
        already have carried it out, and its audit record must say what really happened.
        """
        ctx = context_of(request)
        if ctx is not None and ctx.rpc is None:
            ctx.rpc = rpc.path[1:]
        roles = None
        if self._policy is not None:
            # Refused calls never reach Cuebot, and are audited whether they read or write.
            decision = self._policy.decide(ctx.identity if ctx else None, rpc.service, rpc.method)
            roles = decision.roles
            if not decision.allowed:
                refusal = GatewayError.permission_denied(decision.message)
                if self._audit is not None:
                    self._audit.record(request, rpc, message, refusal.code_name, roles)
                return fail(refusal)
        d = traced_cuebot_call(
            ctx, rpc, self._upstream.call, message, self._deadline(request), self._metadata(request)
        )
        if rpc.is_read:
            return d
        if self._audit is not None:
            d.addBoth(self._audit.observe, request, rpc, message, roles)
        return _not_cancelled_by_client(d)

    def respond(self, reply: Any, request: IRequest) -> Deferred[bytes]:
        """Cuebot's answer as grpc-gateway's JSON, with its metadata as headers."""
        ctx = context_of(request)
        if ctx is not None:
            ctx.grpc_code = "OK"
        for key, value in reply.headers:
            if isinstance(value, str) and not key.endswith("-bin"):
                request.setHeader(_canonical_header(key), value.encode("latin-1", "replace"))
        stale_age = getattr(reply, "stale_age", None)
        if stale_age is not None:
            request.setHeader(b"warning", _STALE_WARNING)
            request.setHeader(b"age", str(int(stale_age)).encode("ascii"))
            if ctx is not None:
                ctx.stale = True
        return traced_encoding(ctx, self.encoder.body(reply)).addCallback(_json_body, request)

    def _deadline(self, request: IRequest) -> float | None:
        header = request.getHeader(b"grpc-timeout")
        if header is None:
            return self._grpc_timeout
        asked = parse_grpc_timeout(header.decode("latin-1"))
        return asked if self._grpc_timeout is None else min(asked, self._grpc_timeout)

    def _metadata(self, request: IRequest) -> list[tuple[str, str | bytes]]:
        metadata: list[tuple[str, str | bytes]] = []
        for raw_name, values in request.requestHeaders.getAllRawHeaders():
            name = raw_name.lower()
            if not name.startswith(_METADATA_PREFIX):
                continue
            key = name[len(_METADATA_PREFIX) :].decode("latin-1")
            if not _METADATA_KEY.match(key) or key.startswith(_RESERVED_KEYS) or key in _OWN_KEYS:
                raise GatewayError.invalid_argument(
                    f"invalid metadata header: Grpc-Metadata-{key[:64]}"
                )
            if key in TRACE_KEYS:
                # Taken as the request's trace context, which is sent on in their place.
                continue
            for value in values:
                metadata.append((key, _metadata_value(key, value)))
        peer = getattr(request.getClientAddress(), "host", None)
        forwarded = _printable(request.getHeader(b"x-forwarded-for"))
        chain = [forwarded] if forwarded else []
        if peer:
            chain.append(peer)
        if chain:
            metadata.append(("x-forwarded-for", ", ".join(chain)))
        raw_host = request.getHeader(b"host")
        host = valid_host(raw_host) if raw_host else None
        if host:
            metadata.append(("x-forwarded-host", host))
        ctx = context_of(request)
        if ctx is not None:
            metadata.append(("x-request-id", ctx.request_id))
            if ctx.trace is not None:
                metadata.extend(ctx.trace.metadata)
        return metadata


def _json_body(body: bytes, request: IRequest) -> bytes | Deferred[bytes]:
    return json_body(request, body)


def _not_cancelled_by_client(call: Deferred[Any]) -> Deferred[Any]:
    """
    A Deferred for C{call}'s result whose cancellation leaves C{call} running.

    Klein cancels a route's Deferred when its client disconnects; for a mutation the
    call must carry on to its real outcome (which the audit observes on C{call}).
    """
    shielded: Deferred[Any] = Deferred()
    call.chainDeferred(shielded)
    return shielded


def _printable(value: bytes | None) -> str | None:
    """A header value gRPC metadata can carry, or None (a client's odd bytes are dropped)."""
    if not value:
        return None
    text = value.decode("latin-1")
    return text if text.isascii() and text.isprintable() else None


def _metadata_value(key: str, value: bytes) -> str | bytes:
    if key.endswith("-bin"):
        try:
            return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise GatewayError.invalid_argument(
                f"invalid base64 in metadata header {key}"
            ) from None
    text = value.decode("latin-1")
    if not text.isprintable() or not text.isascii():
        raise GatewayError.invalid_argument(f"invalid value in metadata header {key}")
    return text
