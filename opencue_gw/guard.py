# -*- test-case-name: tests.test_auth -*-
"""
The resource that stands in front of the API and lets only authenticated callers in.

Modelled on L{twisted.web.guard.HTTPAuthSessionWrapper}, which does the same dance with
a portal, but answers failures the way this gateway's clients expect: a JSON body with
gRPC code 16 and a message saying what was wrong, never the HTML page the stock wrapper
renders, and never the token.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request

from opencue_gw.auth import BearerCredentialFactory, TokenRejected, split_authorization
from opencue_gw.context import context_of, request_id_of
from opencue_gw.errors import GatewayError
from opencue_gw.leaf import LeafResource
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.respond import finish_error

__all__ = ["UNAUTHENTICATED", "BearerGuard"]

UNAUTHENTICATED = 16
_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def unauthenticated(message: str) -> GatewayError:
    """The 401 answer for any authentication failure."""
    return GatewayError(UNAUTHENTICATED, message, headers=_CHALLENGE)


class BearerGuard(LeafResource):
    """
    Authenticates every request, then renders the caller's avatar resource.

    A leaf resource: the avatar (a Klein resource) routes on the full path itself.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, portal: Portal, factory: BearerCredentialFactory) -> None:
        self._portal = portal
        self._factory = factory

    def render(self, request: IRequest) -> Any:
        """Check the token; on success hand the request to the avatar."""
        header = request.getHeader(b"authorization")
        if not header:
            return self._refuse(request, "missing", "Authorization header required")
        try:
            credentials = self._factory.decode(split_authorization(header), request)
        except TokenRejected as rejected:
            return self._refuse(request, rejected.reason, rejected.message)
        d = self._portal.login(credentials, None, IResource)
        d.addCallbacks(
            self._render_avatar, self._login_failed, callbackArgs=(request,), errbackArgs=(request,)
        )
        # The avatar renders inside this Deferred, out of the edge's reach: an exception
        # there must still answer the client, not leave the request open forever.
        d.addErrback(self._render_failed, request)
        return NOT_DONE_YET

    def _render_avatar(self, result: tuple[Any, IResource, Any], request: Request) -> None:
        _, avatar, logout = result
        request.notifyFinish().addBoth(lambda _: logout())
        body = avatar.render(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _login_failed(self, failure: Failure, request: IRequest) -> None:
        if failure.check(TokenRejected):
            rejected = failure.value
            assert isinstance(rejected, TokenRejected)
            self._refuse(request, rejected.reason, rejected.message)
        elif failure.check(UnauthorizedLogin):
            self._refuse(request, "unauthorized", "unauthorized")
        else:
            self.log.failure(
                "Authentication failed unexpectedly", failure, request_id=request_id_of(request)
            )
            finish_error(request, GatewayError(13, "internal error while authenticating"))

    def _render_failed(self, failure: Failure, request: IRequest) -> None:
        self.log.failure(
            "Unexpected failure rendering {path}",
            failure,
            path=request.path,
            request_id=request_id_of(request),
        )
        if getattr(request, "startedWriting", False):
            # Part of an answer is out; a JSON error now would corrupt it.
            if not getattr(request, "finished", False) and not getattr(
                request, "_disconnected", False
            ):
                request.loseConnection()  # type: ignore[attr-defined]
            return
        finish_error(request, GatewayError(13, "internal gateway error"))

    def _refuse(self, request: IRequest, reason: str, message: str) -> Any:
        ctx = context_of(request)
        if ctx is not None:
            ctx.auth_failure = reason
        self.log.info(
            "Refused {method} {path}: {reason}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            reason=reason,
            client=_client_host(request),
            request_id=ctx.request_id if ctx else None,
        )
        finish_error(request, unauthenticated(message))
        return NOT_DONE_YET


def _client_host(request: IRequest) -> str | None:
    peer = request.getClientAddress()
    return getattr(peer, "host", None)
