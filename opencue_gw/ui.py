# -*- test-case-name: tests.integration.test_ui_browser,tests.integration.test_events_wire -*-
"""
C{GET /ui}: the live farm page, public like C{/docs} (the page is code, not data: every
farm fact it shows comes from C{/api/v1} with the token the user enters).

Plain ES modules and a style sheet vendored in C{ui_static/}: no build step, nothing
fetched from the internet. The page keeps the token in the tab's C{sessionStorage} and
sends it only in C{Authorization} headers; its event stream is read with C{fetch},
because C{EventSource} cannot send headers and a token in the URL would be written to
access logs and browser history. The content security policy lets the page talk only to
the gateway and run only its own scripts.
"""

from __future__ import annotations

from opencue_gw.http.static import VendoredPage

__all__ = ["ui_page"]

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def ui_page() -> VendoredPage:
    """The page and its three files, with the content security policy on every answer."""
    return VendoredPage(
        "ui_static",
        "/ui",
        _ASSETS,
        file_cache="no-cache",
        headers={b"content-security-policy": _POLICY, b"referrer-policy": b"no-referrer"},
    )
