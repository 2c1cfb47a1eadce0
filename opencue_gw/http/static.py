# -*- test-case-name: tests.integration.test_openapi,tests.integration.test_events_wire -*-
"""
A page and its files, vendored in the package and served under one path.

The API browser (C{/docs}, Swagger UI) and the live farm page (C{/ui}) are both a page,
a handful of files and nothing else: no build step, nothing fetched from the internet.
Only the files named in the table are served, each read once, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources as package_files

from twisted.web.iweb import IRequest

from opencue_gw.errors import GatewayError
from opencue_gw.http.router import Router

__all__ = ["VendoredPage"]


class VendoredPage:
    """
    C{path} answers the page (C{index.html} of C{folder}), C{path/} redirects to it (the
    page's file URLs are relative to C{path}), C{path/<name>} answers one of C{files}
    (name to content type); every answer carries C{headers}.
    """

    def __init__(
        self,
        folder: str,
        path: str,
        files: Mapping[str, str],
        *,
        file_cache: str,
        headers: Mapping[bytes, bytes] | None = None,
    ) -> None:
        self._folder = folder
        self._path = path
        self._files = dict(files)
        self._file_cache = file_cache
        self._headers = dict(headers or {})
        self._read: dict[str, bytes] = {}

    def install(self, router: Router, *, public: bool) -> None:
        """Add the routes (GET, and HEAD as werkzeug adds it for GET)."""
        router.add(self._path, self.page, methods=["GET"], public=public)
        router.add(self._path + "/", self.to_page, methods=["GET"], public=public)
        router.add(self._path + "/<path:name>", self.file, methods=["GET"], public=public)

    def page(self, request: IRequest) -> bytes:
        """The page itself, never cached: a new gateway version may change its files."""
        return self.answer(request, self._body("index.html"), "text/html; charset=utf-8")

    def to_page(self, request: IRequest) -> bytes:
        """A redirect to the page."""
        request.setResponseCode(301)
        request.setHeader(b"location", b"../" + self._path.rsplit("/", 1)[-1].encode("ascii"))
        return b""

    def file(self, request: IRequest, name: str) -> bytes:
        """One of the page's files; 404 for anything else."""
        content_type = self._files.get(name)
        if content_type is None:
            raise GatewayError.not_found()
        return self.answer(request, self._body(name), content_type, self._file_cache)

    def answer(
        self, request: IRequest, body: bytes, content_type: str, cache: str = "no-cache"
    ) -> bytes:
        """A 200 with C{body}, its type and length, and this page's headers."""
        request.setResponseCode(200)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", cache.encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        for name, value in self._headers.items():
            request.setHeader(name, value)
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return b"" if request.method == b"HEAD" else body

    def _body(self, name: str) -> bytes:
        body = self._read.get(name)
        if body is None:
            folder = package_files.files("opencue_gw") / self._folder
            body = self._read[name] = (folder / name).read_bytes()
        return body
