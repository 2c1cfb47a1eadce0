# -*- test-case-name: tests.integration.test_bodywriter -*-
"""
Writing large answers in slices, at the pace the client reads them.

Handing Twisted a 35 MB body in one C{write} puts all of it in the transport's buffer at
once, and a slow reader keeps it there. A pull producer instead writes one slice each
time the transport has room, so the gateway holds the encoded body once and the socket
buffer holds a slice.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPullProducer
from twisted.web.iweb import IRequest
from zope.interface import implementer

__all__ = ["SLICE_BYTES", "STREAM_ABOVE", "write_body"]

SLICE_BYTES = 256 * 1024
# Smaller answers go out in one write; slicing them would only add overhead.
STREAM_ABOVE = 1024 * 1024


@implementer(IPullProducer)
class _SlicedBody:
    """Feeds C{body} to C{request} one slice per C{resumeProducing}."""

    def __init__(self, request: IRequest, body: bytes, done: Deferred[bytes]) -> None:
        self._request = request
        self._view: memoryview | None = memoryview(body)
        self._offset = 0
        self._done = done

    def resumeProducing(self) -> None:
        """The transport has room: write the next slice, or finish."""
        view = self._view
        if view is None:
            return
        if self._offset >= len(view):
            self._finish()
            return
        end = self._offset + SLICE_BYTES
        self._request.write(view[self._offset : end].tobytes())
        self._offset = end

    def stopProducing(self) -> None:
        """The connection went away: drop the body."""
        self._view = None

    def _finish(self) -> None:
        self._view = None
        self._request.unregisterProducer()  # type: ignore[attr-defined]
        if not self._done.called:
            self._done.callback(b"")


def write_body(request: IRequest, body: bytes) -> bytes | Deferred[bytes]:
    """
    Return small bodies for the caller to write; stream large ones.

    For a streamed body the Deferred fires with C{b""} once the last slice is written,
    which lets Klein finish the request as it does for any other answer.
    """
    if len(body) <= STREAM_ABOVE:
        return body
    producer: _SlicedBody | None = None

    def cancel(d: Deferred[bytes]) -> None:
        if producer is not None:
            producer.stopProducing()

    done: Deferred[bytes] = Deferred(cancel)
    producer = _SlicedBody(request, body, done)
    request.registerProducer(producer, False)  # type: ignore[attr-defined]
    return done
