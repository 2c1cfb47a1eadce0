# -*- test-case-name: tests.test_api -*-
"""
The one router behind the guard: every route the gateway serves, and its one error handler.

Two kinds of route live here. The 293 RPC paths are fixed strings, so they are a dict
lookup on the request path (L{Router.add_path}); nothing else is done per request to
find them. Routes with parameters in their path (the C{/api/v1} resource routes, the
API browser's assets) and the few fixed public paths (health, metrics, the API
description) are a Klein app (L{Router.add}); werkzeug matches those. Measured on
FindShow, werkzeug's matching and Klein's per-request set-up (a URL map bound to the
request, a C{getsockname} for the port) were a fifth of the gateway's CPU per call,
which is why the RPC paths do not go through them.

Whether a route needs a token is a flag given when it is added; the guard asks
L{Router.resolve} and learns it with the route. Every error any route raises is answered
by L{Router.answer_error}, through L{opencue_gw.errors.error_for}.

Facilities (L{opencue_gw.facilities}): each facility has a router of its own, added
under its name (L{Router.add_facility}). A path without a facility prefix is found as
before, by the one dict lookup; only a path no route has is looked at for a prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from opencue_gw.errors import GatewayError, error_for
from opencue_gw.http.answers import error_bytes, finish_error
from opencue_gw.http.context import RequestContext, request_id_of
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = ["Route", "Router"]

Handler = Callable[[IRequest], "bytes | Deferred[Any]"]


class Route:
    """A way to answer a request, and whether it needs a token."""

    __slots__ = ("_serve", "public")

    def __init__(self, serve: Callable[[IRequest], Any], public: bool) -> None:
        self._serve = serve
        self.public = public

    def serve(self, request: IRequest) -> Any:
        """Answer C{request}: bytes, or C{NOT_DONE_YET} and answer later."""
        return self._serve(request)


class Router:
    """The routes, which of them are public, and the single error handler."""

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, facility: str = "") -> None:
        self.facility = facility
        """The facility whose routes these are (recorded on each request's context)."""
        self._facilities: dict[bytes, Router] = {}
        self.app = Klein()
        # werkzeug would answer "//a//b" with a 308 redirect that has no Location here.
        self.app.url_map.merge_slashes = False
        self.app.handle_errors(Exception)(self.answer_error)
        self._paths: dict[bytes, Route] = {}
        self._public_paths: set[bytes] = set()
        self._public_prefixes: list[bytes] = []
        self._klein_public = Route(self._serve_klein, public=True)
        self._klein_private = Route(self._serve_klein, public=False)
        self._klein: Any = None

    def add_path(self, path: str, handler: Handler, *, public: bool = False) -> None:
        """
        Serve C{handler} at exactly C{path}, for any method (the handler decides). It
        takes the request and answers bytes or a Deferred of them; cancelling that
        Deferred when the client goes away is the handler's to allow or not.
        """
        self._paths[path.encode("ascii")] = Route(partial(self._serve_path, handler), public)

    def add(
        self,
        path: str,
        handler: Callable[..., Any],
        *,
        methods: Iterable[str],
        public: bool = False,
        endpoint: str | None = None,
    ) -> None:
        """Serve C{handler} at C{path} (werkzeug syntax, parameters as keywords)."""
        self.app.route(path, methods=list(methods), endpoint=endpoint or path)(handler)
        static, parameter, _ = path.partition("<")
        if not public:
            return
        if parameter:
            # "/docs/<path:name>": everything under the static part is this route's.
            self._public_prefixes.append(static.encode("ascii"))
        else:
            self._public_paths.add(path.encode("ascii"))

    def add_facility(self, name: str, router: Router) -> None:
        """
        Serve C{router}'s routes under C{/name/}. The name may not be the first segment
        of a route of this router's own, which it would hide.
        """
        taken = {rule.rule.lstrip("/").split("/", 1)[0] for rule in self.app.url_map.iter_rules()}
        if name in taken:
            raise ValueError(f"facility {name!r} would hide the gateway's own /{name}/ paths")
        self._facilities[name.encode("ascii")] = router

    def resolve(self, request: IRequest, ctx: RequestContext) -> Route:
        """
        The route for C{request}, its facility recorded on C{ctx}. A facility prefix is
        moved from the path Klein matches to the path it was found under (the request's
        C{prepath}), so the facility's routes see the path without it. A known RPC path
        or C{/api/} path under an unknown prefix is a 404 naming the prefix.
        """
        path = request.path
        route = self._paths.get(path)
        if route is not None:
            ctx.facility = self.facility
            return route
        if self._facilities:
            head, slash, rest = path[1:].partition(b"/")
            facility = self._facilities.get(head) if slash else None
            if facility is not None:
                ctx.facility = facility.facility
                postpath = request.postpath  # type: ignore[attr-defined]
                if postpath and postpath[0] == head:
                    request.prepath.append(postpath.pop(0))  # type: ignore[attr-defined]
                return facility.find(b"/" + rest)
            if slash and (b"/" + rest in self._paths or rest.startswith(b"api/")):
                return Route(partial(self._no_facility, head), public=False)
        ctx.facility = self.facility
        return self.find(path)

    def _no_facility(self, name: bytes, request: IRequest) -> bytes:
        known = ", ".join(sorted(k.decode("ascii") for k in self._facilities))
        shown = name[:64].decode("latin-1")
        error = GatewayError.not_found(f"no facility named {shown!r} (facilities: {known})")
        return error_bytes(request, error)

    def find(self, path: bytes) -> Route:
        """The route for C{path}; unknown paths go to Klein, which answers 404 or 405."""
        route = self._paths.get(path)
        if route is not None:
            return route
        if path in self._public_paths or any(path.startswith(p) for p in self._public_prefixes):
            return self._klein_public
        return self._klein_private

    def answer_error(self, request: IRequest, failure: Failure) -> bytes:
        """The answer to any failure of any route (its headers set, its body returned)."""
        return error_bytes(request, self.error_of(request, failure))

    def error_of(self, request: IRequest, failure: Failure) -> GatewayError:
        """The error table's answer to C{failure}, or a 500 whose failure is logged."""
        error = error_for(failure)
        if error is None:
            self.log.failure(
                "Unexpected failure serving {path}",
                failure,
                path=request.path.decode("latin-1", "replace"),
                request_id=request_id_of(request),
            )
            error = GatewayError.internal()
        elif error.upstream:
            self.log.info(
                "Cuebot answered {code} to {path}: {message}",
                code=error.code_name,
                path=request.path.decode("latin-1", "replace"),
                message=error.message,
                request_id=request_id_of(request),
            )
        return error

    def fail(self, failure: Failure, request: IRequest) -> None:
        """
        Answer C{failure} and finish the request: the path for failures that happen
        after a route returned C{NOT_DONE_YET}, and for the guard's own refusals.
        """
        if getattr(request, "startedWriting", False) and not _gone(request):
            # finish_error cuts the connection: part of the answer is out, and a JSON
            # error now would corrupt it. Say why in the log.
            self.log.failure("Failed while writing an answer", failure)
        finish_error(request, self.error_of(request, failure))

    def _serve_path(self, handler: Handler, request: IRequest) -> Any:
        try:
            answer = handler(request)
        except Exception:
            return self.answer_error(request, Failure())
        if not isinstance(answer, Deferred):
            return answer
        # As Klein does: a client that goes away cancels what its answer waits for.
        request.notifyFinish().addErrback(_cancel, answer)  # type: ignore[attr-defined]
        answer.addCallbacks(
            _write_and_finish, self.fail, callbackArgs=(request,), errbackArgs=(request,)
        )
        return NOT_DONE_YET

    def _serve_klein(self, request: IRequest) -> Any:
        if not _utf8_url(request):
            # Klein would answer with an HTML page and log a traceback.
            return error_bytes(request, GatewayError.invalid_argument("the URL is not valid UTF-8"))
        if self._klein is None:
            self._klein = self.app.resource()
        return self._klein.render(request)


def _cancel(reason: Failure, answer: Deferred[Any]) -> None:
    answer.cancel()


def _gone(request: IRequest) -> bool:
    return bool(getattr(request, "_disconnected", False) or getattr(request, "finished", False))


def _write_and_finish(body: bytes | None, request: IRequest) -> None:
    if body is None or _gone(request):
        return
    if body:
        request.write(body)
    request.finish()


def _utf8_url(request: IRequest) -> bool:
    """Whether the decoded path and the host name are UTF-8, as Klein's routing needs."""
    try:
        b"/".join(request.prepath + request.postpath).decode("utf-8")  # type: ignore[attr-defined]
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
