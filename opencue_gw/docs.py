# -*- test-case-name: tests.test_openapi -*-
"""
C{GET /openapi.json} and the C{/docs} API browser, public or behind the token.

The document is built once, when the gateway starts, from the same tables the routes
come from. The browser is Swagger UI, vendored in C{docs_static/} so the page works on a
farm network with no internet. By default both are public (they describe the API, not
the farm); C{--no-public-docs} serves them only to callers with a token.
"""

from __future__ import annotations

from importlib import resources as package_files
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request

from opencue_gw.api import GatewayAPI
from opencue_gw.errors import GatewayError
from opencue_gw.leaf import LeafResource
from opencue_gw.openapi import openapi_bytes
from opencue_gw.resources import bind_routes
from opencue_gw.respond import error_bytes

__all__ = ["DocsResource", "docs_public_paths", "install_docs_routes"]

SPEC_PATH = b"/openapi.json"
PAGE_PATH = b"/docs"
ASSET_PREFIX = b"/docs/"

# The files the page may load, with their types; nothing else under /docs/ is served.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs-init.js": "text/javascript; charset=utf-8",
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}


def _static(name: str) -> bytes:
    return (package_files.files("opencue_gw") / "docs_static" / name).read_bytes()


class DocsResource(LeafResource):
    """
    Answers the document, the page and its assets by the request's full path, so the
    same resource works as a public path of the edge and as a route behind the guard.
    """

    def __init__(self, api: GatewayAPI) -> None:
        self._rpcs = api.rpcs
        self._routes = bind_routes(api)
        self._spec: bytes | None = None
        self._page = _static("index.html")
        self._assets: dict[str, bytes] = {}

    @property
    def spec(self) -> bytes:
        """
        The OpenAPI document as served, generated when first asked for: most gateways
        never serve it, and the tables it comes from are fixed once the gateway starts.
        """
        if self._spec is None:
            self._spec = openapi_bytes(self._rpcs, self._routes)
        return self._spec

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        """Serve the document, the page or one asset; 404/405 as JSON otherwise."""
        if request.method not in (b"GET", b"HEAD"):
            return error_bytes(
                request,
                GatewayError(12, "Method Not Allowed", http_status=405, headers={"Allow": "GET"}),
            )
        path = request.path
        if path == SPEC_PATH:
            return self._answer(request, self.spec, "application/json", "no-cache")
        if path == PAGE_PATH:
            return self._answer(request, self._page, "text/html; charset=utf-8", "no-cache")
        if path == ASSET_PREFIX:
            request.setResponseCode(301)
            request.setHeader(b"location", b"../docs")
            return b""
        name = path[len(ASSET_PREFIX) :].decode("latin-1") if path.startswith(ASSET_PREFIX) else ""
        content_type = _ASSETS.get(name)
        if content_type is None:
            return error_bytes(request, GatewayError(5, "Not Found"))
        if name not in self._assets:
            self._assets[name] = _static(name)
        return self._answer(request, self._assets[name], content_type, "public, max-age=3600")

    def _answer(self, request: Request, body: bytes, content_type: str, cache: str) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", cache.encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return b"" if request.method == b"HEAD" else body


def docs_public_paths(docs: DocsResource) -> dict[bytes, IResource]:
    """The edge's public entries for the documentation."""
    return {SPEC_PATH: docs, PAGE_PATH: docs, ASSET_PREFIX: docs}


def install_docs_routes(api: GatewayAPI, docs: DocsResource) -> None:
    """Serve the documentation behind the guard (C{--no-public-docs})."""

    def serve(request: IRequest, **_: Any) -> IResource:
        return docs

    for path in ("/openapi.json", "/docs", "/docs/", "/docs/<path:name>"):
        api.app.route(path, methods=["GET", "HEAD"], endpoint=f"docs {path}")(serve)
