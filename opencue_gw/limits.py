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

from opencue_gw.cors import CorsPolicy
from opencue_gw.errors import status_body
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.metrics import GatewayMetrics

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HeadDeadline", "body_limited_request"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# How long a refused client may keep sending before the connection is dropped.
_LINGER_SECONDS = 2.0


class HeadDeadline:
    """
    One deadline for a connection to deliver a complete request head.

    Twisted's idle timeout restarts on every byte, so a client trickling a request
    line or headers one byte at a time would hold a connection forever. The deadline
    is armed when the connection opens and again after each answer; it drops the
    connection if, when it fires, no request on it has a complete head.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, channel: Any, reactor: Any, timeout: float) -> None:
        self._channel = channel
        self._reactor = reactor
        self._timeout = timeout
        self._call: Any = None
        channel._opencue_head_deadline = self

    def arm(self) -> None:
        """Start (or restart) the countdown."""
        self.disarm()
        self._call = self._reactor.callLater(self._timeout, self._fire)

    def disarm(self) -> None:
        """Stop the countdown (the connection went away)."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        requests = getattr(self._channel, "requests", [])
        if any(getattr(r, "_head_complete", False) for r in requests):
            return
        transport = getattr(self._channel, "transport", None)
        if transport is None:
            return
        self.log.info(
            "Dropped a client that sent no complete request head in {timeout}s",
            timeout=self._timeout,
            client=getattr(transport.getPeer(), "host", None),
        )
        transport.abortConnection()


def _deadline_of(channel: Any) -> HeadDeadline | None:
    deadline = getattr(channel, "_opencue_head_deadline", None)
    return deadline if isinstance(deadline, HeadDeadline) else None


class _BodyLimitedRequest(Request):
    """
    A Request that refuses bodies over C{max_body} bytes as they arrive, and tells the
    connection's L{HeadDeadline} when its head is complete and when it is answered.
    """

    max_body = DEFAULT_MAX_BODY_BYTES
    cors: CorsPolicy | None = None
    metrics: GatewayMetrics | None = None
    log = Logger(observer=GATEWAY_OBSERVER)
    _received = 0
    _refused = False
    _head_complete = False

    def isSecure(self) -> bool:
        """
        Whether the connection is TLS, asked of the connection once: Klein asks on every
        request, and Twisted answers by adapting the transport to ISSLTransport each time.
        """
        channel = getattr(self, "channel", None)
        if self._forceSSL or channel is None:
            return bool(super().isSecure())
        known: bool | None = getattr(channel, "_gateway_secure", None)
        if known is None:
            known = channel._gateway_secure = bool(super().isSecure())
        return known

    def finish(self) -> None:
        """Answered: the connection gets a fresh deadline for its next request head."""
        # Twisted forgets the channel when the request is done: look it up first.
        deadline = _deadline_of(getattr(self, "channel", None))
        super().finish()
        if deadline is not None and not getattr(self, "_disconnected", False):
            deadline.arm()

    def connectionLost(self, reason: Any) -> None:
        """No deadline outlives its connection."""
        deadline = _deadline_of(getattr(self, "channel", None))
        if deadline is not None:
            deadline.disarm()
        super().connectionLost(reason)

    def gotLength(self, length: int | None) -> None:
        """The head is complete; refuse at once if the declared length is too large."""
        self._head_complete = True
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
        extra = b""
        if self.cors is not None:
            origins = self.requestHeaders.getRawHeaders(b"origin")
            origin = origins[0] if origins else None
            extra = b"".join(k + b": " + v + b"\r\n" for k, v in self.cors.answer_headers(origin))
        head = (
            (
                "HTTP/1.1 413 Payload Too Large\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Request-ID: {request_id}\r\n"
            ).encode("ascii")
            + extra
            + b"Connection: close\r\n\r\n"
        )
        if self.metrics is not None:
            self.metrics.refused_unrouted(413)
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


def body_limited_request(
    max_body: int, cors: CorsPolicy | None = None, metrics: GatewayMetrics | None = None
) -> type[Request]:
    """
    A request class for a Site that refuses bodies over C{max_body} bytes, with the
    gateway's CORS headers on the refusal and the refusal counted in C{metrics}.
    """
    attrs = {"max_body": max_body, "cors": cors, "metrics": metrics}
    return type("BodyLimitedRequest", (_BodyLimitedRequest,), attrs)
