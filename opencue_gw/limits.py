# -*- test-case-name: tests.test_limits -*-
"""
The request body limit, enforced while the body arrives.

Twisted buffers a whole body before any resource sees it, so a limit checked in a
resource would come after the memory or disk is spent. This request class refuses as
soon as the declared length, or the bytes received so far, pass the limit: it answers
413 with a JSON body, stops reading the body, and closes the connection.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.logger import Logger
from twisted.web.server import Request

from opencue_gw.errors import status_body
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = ["DEFAULT_MAX_BODY_BYTES", "body_limited_request"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# How long a refused client may keep sending before the connection is dropped.
_LINGER_SECONDS = 2.0


class _BodyLimitedRequest(Request):
    """
    A Request that refuses bodies over C{max_body} bytes as they arrive, and drops
    clients that take longer than C{header_timeout} to send the request head.

    Twisted's idle timeout restarts on every byte, so a client trickling one header
    byte at a time would hold a connection forever; the head gets one deadline.
    """

    max_body = DEFAULT_MAX_BODY_BYTES
    header_timeout: float | None = None
    log = Logger(observer=GATEWAY_OBSERVER)
    _received = 0
    _refused = False
    _head_timer: Any = None

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        reactor = getattr(getattr(channel, "site", None), "reactor", None)
        if self.header_timeout and reactor is not None:
            self._head_timer = reactor.callLater(self.header_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        transport = getattr(self.channel, "transport", None)
        if transport is not None:
            self.log.info(
                "Dropped a client still sending its request head after {timeout}s",
                timeout=self.header_timeout,
                client=getattr(transport.getPeer(), "host", None),
            )
            transport.abortConnection()

    def _head_done(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason: Any) -> None:
        """No deadline outlives its connection."""
        self._head_done()
        super().connectionLost(reason)

    def gotLength(self, length: int | None) -> None:
        """The head is complete; refuse at once if the declared length is too large."""
        self._head_done()
        if length is not None and length > self.max_body:
            self._refuse(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count what arrives; refuse the moment it passes the limit."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse(self._received)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request is never processed, whatever arrives after the refusal."""
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self, size: int) -> None:
        self._refused = True
        channel: Any = self.channel
        message = f"request body is larger than the limit of {self.max_body} bytes"
        body = status_body(8, message)
        request_id = uuid.uuid4().hex
        head = (
            "HTTP/1.1 413 Payload Too Large\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Request-ID: {request_id}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self.log.info(
            "Refused {method} {path}: body of at least {size} bytes over the limit",
            method=getattr(channel, "_command", b"?").decode("latin-1"),
            path=getattr(channel, "_path", b"?").decode("latin-1").split("?", 1)[0],
            size=size,
            request_id=request_id,
            status=413,
        )
        transport = channel.transport
        transport.write(head + body)
        # Half-close: the client reads the answer while its remaining body is drained
        # and discarded, instead of a reset that could swallow the 413.
        transport.loseWriteConnection()
        reactor = getattr(getattr(channel, "site", None), "reactor", None)
        if reactor is not None:
            reactor.callLater(_LINGER_SECONDS, transport.abortConnection)
        else:
            transport.loseConnection()


def body_limited_request(max_body: int, header_timeout: float | None = None) -> type[Request]:
    """A request class for a Site with these limits."""
    return type(
        "BodyLimitedRequest",
        (_BodyLimitedRequest,),
        {"max_body": max_body, "header_timeout": header_timeout},
    )
