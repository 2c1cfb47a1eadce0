"""The benchmark's floors: the least a Twisted HTTP server can do for one FindShow.

``python -m bench.floors {web,klein} --port P --body FILE`` serves the bytes of FILE (the
gateway's real FindShow answer, taken by :mod:`bench.run` in the same run) as
``application/json`` to every ``POST`` on the FindShow path, in its own process, like the
gateway. ``web`` is a bare ``twisted.web`` resource; ``klein`` is one bare Klein route.
The gateway's CPU per request is judged against these, so they show how much of its cost
is the request pipeline rather than Twisted's HTTP itself.

Both use what the gateway's Site uses and nothing more: the default reactor, no access
log, no form parsing of POST bodies (twisted.web's default parses them, which the gateway
turns off, so leaving it on would flatter the gateway), and a Content-Length on the answer
(Klein would otherwise send it chunked). Neither reads a token nor calls anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

FIND_SHOW = "/show.ShowInterface/FindShow"


class QuietSite(Site):
    """A Site with the gateway's settings: no access log line, no POST form parsing."""

    def __init__(self, resource: Any) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False)

    def log(self, request: Any) -> None:
        """The gateway writes no Site access line either."""


class ConstantAnswer(Resource):
    """A bare twisted.web leaf: the same bytes for every POST."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self.body  # Request.render sets Content-Length for a bytes answer


def klein_resource(body: bytes) -> Any:
    """One bare Klein route answering ``body``."""
    from klein import Klein

    app = Klein()
    length = str(len(body)).encode()

    @app.route(FIND_SHOW, methods=["POST"])
    def find_show(request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", length)
        return body

    return app.resource()


def main(argv: list[str] | None = None) -> int:
    """Listen on 127.0.0.1:PORT and serve until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__)
    p.add_argument("kind", choices=("web", "klein"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body", type=Path, required=True, help="file holding the answer bytes")
    a = p.parse_args(argv)
    body = a.body.read_bytes()
    resource = ConstantAnswer(body) if a.kind == "web" else klein_resource(body)
    endpoint = TCP4ServerEndpoint(reactor, a.port, interface="127.0.0.1")
    endpoint.listen(QuietSite(resource))
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
