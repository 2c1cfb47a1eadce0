# -*- test-case-name: tests.integration.test_openapi -*-
"""
C{GET /openapi.json} and the C{/docs} API browser, public or behind the token.

The document is built once, when the gateway starts, from the same tables the routes
come from. The browser is Swagger UI, vendored in C{docs_static/} so the page works on a
farm network with no internet. By default both are public (they describe the API, not
the farm); C{--no-public-docs} serves them only to callers with a token.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from opencue_gw.api import GatewayAPI
from opencue_gw.http.router import Router
from opencue_gw.http.static import VendoredPage
from opencue_gw.openapi import openapi_bytes
from opencue_gw.rest import bind_routes

__all__ = ["DocsRoutes"]

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


class DocsRoutes:
    """
    The document, the page and its assets as routes of the router, public unless
    C{--no-public-docs}.
    """

    def __init__(self, api: GatewayAPI) -> None:
        self._rpcs = api.rpcs
        self._routes = bind_routes(api)
        self._spec: bytes | None = None
        self._page = VendoredPage(
            "docs_static", "/docs", _ASSETS, file_cache="public, max-age=3600"
        )

    def install(self, router: Router, *, public: bool) -> None:
        """Add the routes (GET, and HEAD as werkzeug adds it for GET)."""
        router.add("/openapi.json", self.document, methods=["GET"], public=public)
        self._page.install(router, public=public)

    @property
    def spec(self) -> bytes:
        """
        The OpenAPI document as served, generated when first asked for: most gateways
        never serve it, and the tables it comes from are fixed once the gateway starts.
        """
        if self._spec is None:
            self._spec = openapi_bytes(self._rpcs, self._routes)
        return self._spec

    def document(self, request: IRequest) -> bytes:
        """C{/openapi.json}."""
        return self._page.answer(request, self.spec, "application/json")
