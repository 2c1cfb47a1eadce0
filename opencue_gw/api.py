# -*- test-case-name: tests.test_api -*-
"""
The Klein application: one C{POST /<package>.<Service>/<Method>} route per RPC.

Routes come from the descriptor table in L{opencue_gw.rpcs}; this module only knows how
to turn an HTTP request into a protobuf request, hand it to the upstream, and turn the
answer (or the failure) back into grpc-gateway's JSON.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from google.protobuf.message import Message
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from opencue_gw.audit import AuditLog
from opencue_gw.auth import Identity
from opencue_gw.bodywriter import write_body
from opencue_gw.coalesce import SharedReply, wire_size
from opencue_gw.codec import RequestDecodeError, decode_message, encode
from opencue_gw.context import context_of, request_id_of
from opencue_gw.errors import GatewayError
from opencue_gw.leaf import LeafResource
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.policy import Policy
from opencue_gw.respond import error_bytes, set_json_headers
from opencue_gw.rpcs import Rpc

__all__ = ["CallerResource", "GatewayAPI", "IUpstream", "parse_grpc_timeout"]

# Answers whose protobuf encoding is larger than this are turned into JSON on the
# codec thread pool, so one huge GetJobs does not stall every other request.
INLINE_ENCODE_LIMIT = 256 * 1024

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_GRPC_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_METADATA_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_METADATA_PREFIX = b"grpc-metadata-"
# Keys gRPC reserves or that the gateway sets itself.
_RESERVED_KEYS = ("grpc-", ":")
_OWN_KEYS = frozenset({"x-forwarded-for", "x-forwarded-host", "x-request-id"})


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
        raise GatewayError(3, f"invalid Grpc-Timeout header: {value[:32]!r}")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


def _canonical_header(key: str) -> bytes:
    return ("Grpc-Metadata-" + "-".join(p.capitalize() for p in key.split("-"))).encode("latin-1")


class GatewayAPI:
    """
    The HTTP face of every Cuebot RPC.

    One instance per gateway, holding its collaborators; the Klein app is per instance
    because its routes depend on the descriptor table it was given.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        rpcs: Mapping[str, Rpc],
        upstream: IUpstream,
        reactor: IReactorThreads,
        *,
        grpc_timeout: float | None = 30.0,
        strict_json: bool = False,
        codec_pool: ThreadPool | None = None,
        policy: Policy | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._policy = policy
        self._audit = audit
        self._upstream = upstream
        self._reactor = reactor
        self._grpc_timeout = grpc_timeout
        self._discard_unknown = not strict_json
        self._codec_pool = codec_pool
        self.rpcs = rpcs
        self.app = Klein()
        # werkzeug would answer "//a//b" with a 308 redirect that has no Location here.
        self.app.url_map.merge_slashes = False
        for rpc in rpcs.values():
            self.app.route(rpc.path, methods=["POST"], endpoint=rpc.path)(self._route_for(rpc))
        self.app.handle_errors(NotFound)(self._not_found)
        self.app.handle_errors(MethodNotAllowed)(self._method_not_allowed)
        self.app.handle_errors(HTTPException)(self._http_exception)
        self.app.handle_errors(GatewayError)(self._gateway_error)
        self.app.handle_errors(CancelledError)(self._cancelled)
        self.app.handle_errors(Exception)(self._unexpected)
        self._resource = self.app.resource()

    def resource(self) -> IResource:
        """The bare route tree (no authentication): for tests and for the realm."""
        return self._resource

    def resource_for(self, identity: Identity) -> IResource:
        """The avatar the realm hands out: the route tree, knowing who calls."""
        return CallerResource(identity, self._resource)

    def _route_for(self, rpc: Rpc) -> Callable[[IRequest], Deferred[bytes]]:
        def route(request: IRequest) -> Deferred[bytes]:
            return self._call(rpc, request)

        route.__name__ = rpc.path
        return route

    def _call(self, rpc: Rpc, request: IRequest) -> Deferred[bytes]:
        ctx = context_of(request)
        if ctx is not None:
            ctx.rpc = rpc.path[1:]
        content = request.content
        body = content.read() if content is not None else b""
        try:
            message = decode_message(body, rpc.request_class, discard_unknown=self._discard_unknown)
        except RequestDecodeError as error:
            raise GatewayError(3, str(error)) from None
        return self.call(rpc, message, request).addCallback(self._respond, request)

    def call(self, rpc: Rpc, message: Message, request: IRequest) -> Deferred[Any]:
        """
        Send C{message} to Cuebot on behalf of C{request}: its deadline, metadata and
        context apply. Fires with the upstream reply (C{.message}, C{.headers}).

        Other route tables (the resource-style routes) call RPCs through here so they
        behave exactly like the RPC routes.
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
                refusal = GatewayError(7, decision.message)
                if self._audit is not None:
                    self._audit.record(request, rpc, message, refusal.code_name, roles)
                return fail(refusal)
        d = self._upstream.call(
            rpc,
            message,
            timeout=self._deadline(request),
            metadata=self._metadata(request),
        )
        if self._audit is not None and not rpc.is_read:
            d.addBoth(self._audit.observe, request, rpc, message, roles)
        return d

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
                raise GatewayError(3, f"invalid metadata header: Grpc-Metadata-{key[:64]}")
            for value in values:
                metadata.append((key, _metadata_value(key, value)))
        peer = getattr(request.getClientAddress(), "host", None)
        forwarded = _printable(request.getHeader(b"x-forwarded-for"))
        chain = [forwarded] if forwarded else []
        if peer:
            chain.append(peer)
        if chain:
            metadata.append(("x-forwarded-for", ", ".join(chain)))
        host = _printable(request.getHeader(b"host"))
        if host:
            metadata.append(("x-forwarded-host", host))
        ctx = context_of(request)
        if ctx is not None:
            metadata.append(("x-request-id", ctx.request_id))
        return metadata

    def _respond(self, reply: Any, request: IRequest) -> Deferred[bytes]:
        ctx = context_of(request)
        if ctx is not None:
            ctx.grpc_code = "OK"
        for key, value in reply.headers:
            if isinstance(value, str) and not key.endswith("-bin"):
                request.setHeader(_canonical_header(key), value.encode("latin-1", "replace"))
        known = reply.json_or_none() if isinstance(reply, SharedReply) else None
        message: Message = reply.message
        if known is not None:
            encoded = succeed(known)
        elif self._codec_pool is not None and wire_size(reply) > INLINE_ENCODE_LIMIT:
            encoded = deferToThreadPool(self._reactor, self._codec_pool, encode, message)
        else:
            encoded = succeed(encode(message))
        if isinstance(reply, SharedReply) and known is None:
            encoded.addCallback(_remember_json, reply)
        return encoded.addCallback(self._write_json, request)

    def _write_json(self, body: bytes, request: IRequest) -> bytes | Deferred[bytes]:
        set_json_headers(request, 200)
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return write_body(request, body)

    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        return error_bytes(request, GatewayError(5, "Not Found"))

    def _method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        # grpc-gateway answers 501 here; 405 with Allow is the HTTP answer (README).
        error = failure.value
        allowed = sorted(getattr(error, "valid_methods", None) or ["POST"])
        return error_bytes(
            request,
            GatewayError(
                12, "Method Not Allowed", http_status=405, headers={"Allow": ", ".join(allowed)}
            ),
        )

    def _http_exception(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)
        status = error.code or 400
        return error_bytes(
            request, GatewayError(3, error.name or "Bad Request", http_status=status)
        )

    def _gateway_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, GatewayError)
        if error.upstream:
            self.log.info(
                "Cuebot answered {code} to {rpc}: {message}",
                code=error.code_name,
                rpc=request.path.decode("latin-1"),
                message=error.message,
                request_id=request_id_of(request),
            )
        return error_bytes(request, error)

    def _cancelled(self, request: IRequest, failure: Failure) -> bytes:
        # The client went away (Klein cancelled us) or the channel closed under us.
        return error_bytes(request, GatewayError(1, "request cancelled"))

    def _unexpected(self, request: IRequest, failure: Failure) -> bytes:
        self.log.failure(
            "Unexpected failure serving {path}",
            failure,
            path=request.path,
            request_id=request_id_of(request),
        )
        return error_bytes(request, GatewayError(13, "internal gateway error"))


def _printable(value: bytes | None) -> str | None:
    """A header value gRPC metadata can carry, or None (a client's odd bytes are dropped)."""
    if not value:
        return None
    text = value.decode("latin-1")
    return text if text.isascii() and text.isprintable() else None


def _remember_json(body: bytes, reply: SharedReply) -> bytes:
    reply.remember_json(body)
    return body


def _metadata_value(key: str, value: bytes) -> str | bytes:
    if key.endswith("-bin"):
        try:
            return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise GatewayError(3, f"invalid base64 in metadata header {key}") from None
    text = value.decode("latin-1")
    if not text.isprintable() or not text.isascii():
        raise GatewayError(3, f"invalid value in metadata header {key}")
    return text


class CallerResource(LeafResource):
    """The route tree as one caller's avatar: notes the identity, then routes."""

    def __init__(self, identity: Identity, resource: IResource) -> None:
        self.identity = identity
        self._resource = resource

    def render(self, request: IRequest) -> Any:
        """Route the request on behalf of this caller."""
        ctx = context_of(request)
        if ctx is not None:
            ctx.identity = self.identity
        if not _utf8_url(request):
            # Klein would answer with an HTML page and log a traceback.
            return error_bytes(request, GatewayError(3, "the URL is not valid UTF-8"))
        return self._resource.render(request)


def _utf8_url(request: IRequest) -> bool:
    """Whether the decoded path and the host name are UTF-8, as Klein's routing needs."""
    try:
        b"/".join(request.prepath + request.postpath).decode("utf-8")  # type: ignore[attr-defined]
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
