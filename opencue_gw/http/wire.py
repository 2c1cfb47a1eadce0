# -*- test-case-name: tests.integration.test_wire_hardening,tests.integration.test_limits -*-
"""
The HTTP/1.1 connection: what the gateway accepts on the wire, and how it says no.

Twisted's L{HTTPChannel} parses request heads with limits of its own (16 KB lines, 500
headers, 16 KB of head) and answers a violation with a silent close or a bare
C{400 Bad Request} without a body. It reads framing one header at a time, accepts a
bare-LF head only by hanging until the idle timeout, and sends C{100 Continue} even
after it has refused the request. The channel here keeps Twisted's parser but checks
every head against the gateway's limits and RFC 9112 before Twisted acts on it, and
every refusal is the gateway's JSON error with a request id, the CORS headers it can
give, C{Connection: close}, a line in the access log and a count in C{/metrics}. After
a refusal nothing more is read from the connection, so no request can be smuggled
behind a malformed one.

The request class enforces the body limit while the body arrives (Twisted buffers a
whole body before any resource sees it), counts the request in flight from the moment
its head is complete, and can answer 503 when shutdown's grace period ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from opencue_gw.config import GatewayConfig
from opencue_gw.errors import Code, GatewayError, status_body
from opencue_gw.http.access import AccessLog
from opencue_gw.http.answers import finish_error
from opencue_gw.http.context import request_id_for
from opencue_gw.http.cors import CorsPolicy
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.ops.inflight import SHUTTING_DOWN, InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.settings import setting

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "GatewayChannel",
    "GatewayRequest",
    "GatewaySite",
    "HeadLimits",
    "body_limited_request",
    "build_site",
    "valid_host",
]

DEFAULT_MAX_BODY_BYTES: int = setting("max-body-bytes").default
# How long a refused client may keep sending (discarded) before the connection is
# dropped: long enough for it to read the answer instead of a reset that loses it.
_LINGER_SECONDS = 2.0
# The codings RFC 9112 names; any other is "unknown" (501), these are merely unsupported.
_KNOWN_CODINGS = frozenset({b"chunked", b"compress", b"deflate", b"gzip", b"x-compress", b"x-gzip"})
# Reason phrases of the raw answers (RFC 9110 §15), as the gateway has always sent them.
_REASONS = {
    413: b"Payload Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_DIGITS = re.compile(rb"[0-9]+\Z")
# A registered name or IPv4 address, or a bracketed IPv6 literal; an optional port.
_HOST = re.compile(
    rb"(?:\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})))"
    rb"(?::(?P<port>[0-9]{1,5}))?\Z"
)


@dataclass(frozen=True)
class HeadLimits:
    """
    Limits on one request head. The defaults fit a 16 KB bearer token with the usual
    headers (single-sign-on tokens with group claims run to 8-16 KB).
    """

    max_request_line: int = setting("max-request-line").default
    max_header_line: int = setting("max-header-line").default
    max_headers: int = setting("max-headers").default
    max_head_bytes: int = setting("max-head-bytes").default


def valid_host(value: bytes) -> str | None:
    """
    C{value} as a host (name or address, optional port) if it is a valid one, else
    C{None}. Stricter than RFC 9110's reg-name: no percent-encoding or sub-delimiters,
    so the result is safe to pass on (C{x-forwarded-host}) and to log.
    """
    match = _HOST.match(value)
    if match is None:
        return None
    port = match.group("port")
    if port is not None and int(port) > 65535:
        return None
    name = match.group("name")
    if name is not None and (b".." in name or name.endswith(b"-")):
        return None
    return value.decode("ascii")


def _request_id(request: Request | None) -> str:
    """The request id of a raw answer, by the guard's rule (L{request_id_for})."""
    offered = request.requestHeaders.getRawHeaders(b"x-request-id") if request else None
    return request_id_for(offered[0] if offered else None)


class _LimitedChunkedDecoder(http._ChunkedTransferDecoder):
    """Twisted's chunked decoder, asking C{admit(size)} about each chunk size as it is read."""

    def __init__(
        self,
        data: Callable[[bytes], None],
        finish: Callable[[bytes], None],
        admit: Callable[[int], bool],
    ) -> None:
        super().__init__(data, finish)
        self._admit = admit

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        going = super()._dataReceived_CHUNK_LENGTH()
        if going and self.state == "BODY" and not self._admit(self.length):
            return False
        return going


class GatewayChannel(http.HTTPChannel):
    """
    One HTTP/1.1 connection with the gateway's head limits, framing rules, head deadline
    and JSON refusals. Settings come from the request class (L{body_limited_request})
    and the site (C{head_timeout}).
    """

    log = Logger(namespace="opencue_gw.http.wire", observer=GATEWAY_OBSERVER)

    _refused = False
    _lost = False
    _early_answer = False
    _awaiting_head = True
    _request_line_seen = False
    _head_bytes = 0
    _header_lines = 0
    _head_started: float | None = None
    _origin: bytes | None = None
    _deadline: IDelayedCall | None = None
    _linger: IDelayedCall | None = None

    def __init__(self) -> None:
        super().__init__()
        self._lengths: list[bytes] = []
        self._codings: list[bytes] = []

    _host: Any = None

    def getHost(self) -> Any:
        """
        The local address, asked of the socket once per connection: Twisted's request
        asks for it on every request, a C{getsockname} system call each time.
        """
        if self._host is None:
            self._host = super().getHost()
        return self._host

    # --- settings ---

    _limits: HeadLimits | None = None

    @property
    def head_limits(self) -> HeadLimits:
        """The limits on each request head (the request class's, read once)."""
        if self._limits is None:
            limits = getattr(self.requestFactory, "head_limits", None)
            self._limits = limits if isinstance(limits, HeadLimits) else HeadLimits()
        return self._limits

    @property
    def max_body(self) -> int:
        """The largest request body, in bytes."""
        return int(getattr(self.requestFactory, "max_body", DEFAULT_MAX_BODY_BYTES))

    def _now(self) -> float:
        reactor = getattr(getattr(self, "site", None), "reactor", None)
        return float(reactor.seconds()) if reactor is not None else 0.0

    # --- connection life ---

    def connectionMade(self) -> None:
        """Apply the limits to Twisted's parser (ours fire first) and start the deadline."""
        limits = self.head_limits
        # Twisted's own checks stay as a backstop, never tighter than ours.
        self.MAX_LENGTH = max(limits.max_request_line, limits.max_header_line) + 1
        self.totalHeadersSize = limits.max_head_bytes
        self.maxHeaders = limits.max_headers
        super().connectionMade()
        self._arm_deadline()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No timer outlives its connection."""
        self._lost = True
        self._cancel_deadline()
        linger, self._linger = self._linger, None
        if linger is not None and linger.active():
            linger.cancel()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        """Parse, unless refused; then look at the unfinished line for a broken limit."""
        if self._refused:
            return
        if self._head_started is None and self.line_mode:
            self._head_started = self._now()
        super().dataReceived(data)
        if self._refused or not self.line_mode or not self._buffer:
            return
        partial = self._buffer
        limits = self.head_limits
        if b"\n" in partial:
            self._refuse(400, Code.INVALID_ARGUMENT, "request head lines must end with CRLF")
        elif not self._request_line_seen and len(partial) > limits.max_request_line:
            self._request_line_too_long(partial)
        elif self._request_line_seen and len(partial) > limits.max_header_line:
            self._header_line_too_long()
        elif self._head_bytes + len(partial) > limits.max_head_bytes:
            if self._request_line_seen:
                self._head_too_large()
            else:
                self._request_line_too_long(partial)

    def rawDataReceived(self, data: bytes) -> None:
        """A body (or pipelined data); nothing is read after a refusal."""
        if self._refused:
            return
        if self._handlingRequest or self._transferDecoder is None:
            super().rawDataReceived(data)
            return
        try:
            self._transferDecoder.dataReceived(data)
        except http._MalformedChunkedDataError as error:
            self._refuse(400, Code.INVALID_ARGUMENT, f"malformed chunked body: {error}")

    # --- the head ---

    def lineReceived(self, line: bytes) -> None:
        """Check each head line against the limits before Twisted parses it."""
        if self._refused:
            return
        limits = self.head_limits
        self._head_bytes += len(line) + 2
        if b"\n" in line:
            self._refuse(400, Code.INVALID_ARGUMENT, "request head lines must end with CRLF")
            return
        if not self._request_line_seen:
            if line:
                self._request_line_seen = True
                self._awaiting_head = True
                if len(line) > limits.max_request_line or self._head_bytes > limits.max_head_bytes:
                    self._request_line_too_long(line)
                    return
        elif line:
            if line[:1] in (b" ", b"\t"):
                # RFC 9112 §5.2: obsolete line folding; refusing it leaves nothing to guess.
                self._refuse(400, Code.INVALID_ARGUMENT, "folded header lines are not accepted")
                return
            self._header_lines += 1
            if line[:7].lower() == b"origin:":
                # Twisted files a header only when the next line arrives; a refusal of
                # that next line still knows the origin, for its CORS headers.
                self._origin = line[7:].strip(b" \t")
            if len(line) > limits.max_header_line:
                self._header_line_too_long()
                return
            if self._header_lines > limits.max_headers:
                self._refuse(
                    431,
                    Code.INVALID_ARGUMENT,
                    f"more than {limits.max_headers} request headers",
                )
                return
            if self._head_bytes > limits.max_head_bytes:
                self._head_too_large()
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line longer than any limit and still unfinished."""
        if self._request_line_seen:
            self._header_line_too_long()
        else:
            self._request_line_too_long(line)

    def _request_line_too_long(self, line: bytes) -> None:
        limit = self.head_limits.max_request_line
        self._refuse(414, Code.INVALID_ARGUMENT, f"request line is longer than {limit} bytes", line)

    def _header_line_too_long(self) -> None:
        limit = self.head_limits.max_header_line
        self._refuse(431, Code.INVALID_ARGUMENT, f"a request header is longer than {limit} bytes")

    def _head_too_large(self) -> None:
        limit = self.head_limits.max_head_bytes
        self._refuse(431, Code.INVALID_ARGUMENT, f"request headers are larger than {limit} bytes")

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        """Collect the framing headers; they are judged together once the head is complete."""
        if header == b"Content-Length":
            self._lengths.append(data)
        elif header == b"Transfer-Encoding":
            self._codings.append(data)
        return True

    def allHeadersReceived(self) -> None:
        """
        The head is complete: judge framing and Host, count the request in flight, and
        decide about C{100 Continue}.
        """
        request = self.requests[-1]
        self._head_complete()
        if not self._choose_framing(request) or not self._check_host(request):
            # Twisted reads a body next unless the length is 0; make it read (and drop) it.
            self.length = None
            return
        started = getattr(request, "head_complete", None)
        if started is not None and not started():
            # Draining: a request that starts now is refused before its body is read.
            self.length = None
            self._refuse(503, Code.UNAVAILABLE, SHUTTING_DOWN)
            return
        expect = request.requestHeaders.getRawHeaders(b"expect") or []
        if (
            self.length != 0
            and any(value.lower() == b"100-continue" for value in expect)
            and not request.requestHeaders.hasHeader(b"authorization")
        ):
            # A body that would be refused for want of a token: answer now, unread.
            self._early_answer = True
            self.length = 0
            self._transferDecoder = None
        super().allHeadersReceived()
        if self._early_answer:
            self.persistent = False

    def _head_complete(self) -> None:
        self._cancel_deadline()
        self._awaiting_head = False
        self._request_line_seen = False
        self._head_bytes = 0
        self._header_lines = 0
        self._origin = None

    def _choose_framing(self, request: Request) -> bool:
        """RFC 9112 §6: how long the body is, or a refusal."""
        lengths, self._lengths = self._lengths, []
        codings_lines, self._codings = self._codings, []
        if codings_lines:
            if getattr(self, "_version", None) == b"HTTP/1.0":
                # RFC 9112 §6.1: HTTP/1.0 has no transfer codings; the framing is faulty.
                return self._refuse(400, Code.INVALID_ARGUMENT, "Transfer-Encoding in HTTP/1.0")
            if lengths:
                return self._refuse(
                    400, Code.INVALID_ARGUMENT, "Content-Length with Transfer-Encoding"
                )
            codings = [c.strip().lower() for line in codings_lines for c in line.split(b",")]
            if codings[-1] != b"chunked":
                return self._refuse(
                    400, Code.INVALID_ARGUMENT, "the final transfer coding must be chunked"
                )
            others = codings[:-1]
            if b"chunked" in others or b"" in others:
                return self._refuse(400, Code.INVALID_ARGUMENT, "malformed Transfer-Encoding")
            if others:
                # RFC 9112 §6.1: a coding the gateway does not decode is 501 (none but
                # chunked is decoded; an unknown name is not even registered).
                name = others[0][:40].decode("latin-1")
                known = "not supported" if others[0] in _KNOWN_CODINGS else "unknown"
                return self._refuse(501, Code.UNIMPLEMENTED, f"transfer coding {name!r} is {known}")
            self.length = None
            self._transferDecoder = _LimitedChunkedDecoder(
                request.handleContentChunk, self._finishRequestBody, self._chunk_fits
            )
            return True
        if not lengths:
            return True
        if len(lengths) > 1:
            return self._refuse(400, Code.INVALID_ARGUMENT, "more than one Content-Length")
        text = lengths[0]
        if not _DIGITS.match(text):
            return self._refuse(400, Code.INVALID_ARGUMENT, "invalid Content-Length")
        digits = text.lstrip(b"0") or b"0"
        if len(digits) > 18 or int(digits) > self.max_body:
            return self._body_too_large()
        self.length = int(digits)
        self._transferDecoder = http._IdentityTransferDecoder(
            self.length, request.handleContentChunk, self._finishRequestBody
        )
        return True

    def _check_host(self, request: Request) -> bool:
        """RFC 9112 §3.2: one valid Host on HTTP/1.1, at most one (valid) on HTTP/1.0."""
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        version = getattr(self, "_version", b"HTTP/1.1")
        if len(hosts) > 1:
            return self._refuse(400, Code.INVALID_ARGUMENT, "more than one Host header")
        if not hosts:
            if version == b"HTTP/1.1":
                return self._refuse(400, Code.INVALID_ARGUMENT, "the Host header is required")
            return True
        if valid_host(hosts[0]) is None:
            return self._refuse(400, Code.INVALID_ARGUMENT, "invalid Host header")
        return True

    def _chunk_fits(self, size: int) -> bool:
        """A chunk size, just read: refuse at once if it would cross the body limit."""
        received = int(getattr(self.requests[-1], "received", 0)) if self.requests else 0
        if received + size > self.max_body:
            self._body_too_large()
            return False
        return True

    def _body_too_large(self) -> bool:
        return self._refuse(
            413,
            Code.RESOURCE_EXHAUSTED,
            f"request body is larger than the limit of {self.max_body} bytes",
        )

    def _send100Continue(self) -> None:
        """Never after a final answer, nor before an answer given without the body."""
        if self._refused or self._early_answer:
            return
        super()._send100Continue()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's own refusals (bad request line, bad header) as the gateway's JSON."""
        self._refuse(400, Code.INVALID_ARGUMENT, "malformed request")

    # --- answers and the end of a request ---

    def body_too_large(self) -> None:
        """The body received so far passed the limit (called by the request)."""
        self._body_too_large()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """Every answer leaves without Twisted's C{Server} header: it would name the version."""
        if isinstance(headers, Headers):
            headers.removeHeader(b"server")
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: Request) -> None:
        """An answer is out: a kept-alive connection gets a fresh deadline for its next head."""
        if self.persistent and not self._lost:
            # Armed before Twisted replays pipelined data, which may complete a head at once.
            self._awaiting_head = True
            self._head_started = None
            self._arm_deadline()
        super().requestDone(request)

    def loseConnection(self) -> None:
        """After an answer given without reading the body, close gently (see L{_refuse})."""
        if self._early_answer and not self._refused:
            self._refused = True
            self._close_gently()
            return
        super().loseConnection()

    def refuse(self, status: int, code: int, message: str) -> None:
        """Answer the request being read with a raw JSON error and close (public form)."""
        self._refuse(status, code, message)

    def _refuse(self, status: int, code: int, message: str, line: bytes | None = None) -> bool:
        """
        Answer C{status} with the gateway's JSON error, log and count it, stop reading
        and close. Always C{False}, for callers that answer "may the request go on?".
        """
        if self._refused or self._lost or self.transport is None:
            return False
        self._refused = True
        self._cancel_deadline()
        request = self.requests[-1] if self.requests else None
        settings: Any = self.requestFactory
        cors: CorsPolicy | None = getattr(settings, "cors", None)
        in_flight: InFlight | None = getattr(settings, "in_flight", None)
        request_id = _request_id(request)
        body = status_body(code, message)
        reason = _REASONS.get(status) or http.RESPONSES.get(status, b"Error")
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"X-Request-ID: " + request_id.encode("ascii") + b"\r\n",
        ]
        if cors is not None:
            # The Origin header is known only if it was read before the refusal; a
            # request line too long is refused before any header, so only Vary is sent.
            origins = request.requestHeaders.getRawHeaders(b"origin") if request else None
            origin = origins[0] if origins else self._origin
            head.extend(k + b": " + v + b"\r\n" for k, v in cors.answer_headers(origin))
        head.append(b"Connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        for pending in list(self.requests):
            if in_flight is not None:
                in_flight.leave(pending)
        self._log_refusal(status, code, len(body), request_id, line)
        self._close_gently()
        return False

    def _close_gently(self) -> None:
        """
        Half-close: the client reads the answer while the rest of what it sends is read
        and dropped; a reset now could swallow the answer. Aborted after a short linger.
        """
        transport: Any = self.transport
        if transport is None:
            return
        self.setTimeout(None)
        self._networkProducer.resumeProducing()
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is None:
            # TLS has no half-close: close after the answer is flushed.
            transport.loseConnection()
            return
        lose_write()
        if not self._lost:
            self._linger = self.callLater(_LINGER_SECONDS, transport.abortConnection)

    def _log_refusal(
        self, status: int, code: int, size: int, request_id: str, line: bytes | None
    ) -> None:
        method = getattr(self, "_command", None)
        path = getattr(self, "_path", None)
        if method is None and line:
            # The request line was too long to parse; name what it started with.
            first, _, rest = line.partition(b" ")
            method = first[:16] if http._istoken(first[:16]) else b"-"
            path = rest[:200] if rest else b""
        started = self._head_started if self._head_started is not None else self._now()
        peer = self.transport.getPeer() if self.transport is not None else None
        settings: Any = self.requestFactory
        access = getattr(settings, "access", None)
        if not isinstance(access, AccessLog):
            reactor: Any = getattr(getattr(self, "site", None), "reactor", None)
            access = AccessLog(reactor, getattr(settings, "metrics", None))
        access.refused(
            method=method or b"-",
            path=path or b"",
            status=status,
            sent=size,
            duration=max(0.0, self._now() - started),
            request_id=request_id,
            grpc_code=Code(code).name,
            client=getattr(peer, "host", None),
        )

    # --- the head deadline ---

    def _arm_deadline(self) -> None:
        timeout = getattr(getattr(self, "site", None), "head_timeout", None)
        self._cancel_deadline()
        if timeout and not self._lost and not self._refused:
            call_later: Any = self.callLater
            self._deadline = call_later(timeout, self._deadline_passed, timeout)

    def _cancel_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _deadline_passed(self, timeout: float) -> None:
        """
        Twisted's idle timeout restarts on every byte, so a client trickling a head one
        byte at a time would hold the connection forever; this deadline does not.
        """
        self._deadline = None
        if self._lost or self._refused or not self._awaiting_head or self.transport is None:
            return
        self.log.info(
            "Dropped a client that sent no complete request head in {timeout}s",
            timeout=timeout,
            client=getattr(self.transport.getPeer(), "host", None),
        )
        transport: Any = self.transport
        transport.abortConnection()


class GatewayRequest(Request):
    """
    A request that refuses a body over C{max_body} bytes as it arrives, counts itself in
    flight from the end of its head until it is answered, and can be answered 503 at
    the end of shutdown's grace period.
    """

    max_body = DEFAULT_MAX_BODY_BYTES
    head_limits = HeadLimits()
    cors: CorsPolicy | None = None
    metrics: GatewayMetrics | None = None
    in_flight: InFlight | None = None
    received = 0
    _rendered = False
    _cut_off = False

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

    def head_complete(self) -> bool:
        """
        The head is in: the request has started and counts in flight until answered.
        Answers whether it is admitted (not while the gateway drains).
        """
        if self.in_flight is None:
            return True
        if not self.in_flight.enter(self):
            return False
        self.notifyFinish().addBoth(self._left)
        return True

    def _left(self, result: object) -> None:
        if self.in_flight is not None:
            self.in_flight.leave(self)

    def handleContentChunk(self, data: bytes) -> None:
        """Count what arrives; refuse the moment it passes the limit."""
        self.received += len(data)
        if self.received > self.max_body:
            refuse = getattr(self.channel, "body_too_large", None)
            if refuse is not None:
                refuse()
                return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """A refused request is never processed, whatever arrives after the refusal."""
        if getattr(self.channel, "_refused", False):
            return
        self._rendered = True
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        """After a shutdown answer, whatever the resource writes late is dropped."""
        if self._cut_off:
            return
        super().write(data)

    def finish(self) -> None:
        """After a shutdown answer, a late finish is dropped too."""
        if self._cut_off:
            return
        super().finish()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """After a shutdown answer, a late streamed answer is not started."""
        if self._cut_off:
            return
        super().registerProducer(producer, streaming)

    def answer_shutting_down(self, message: str) -> None:
        """
        The grace period is over: answer 503 now. A request still uploading its body is
        answered on the raw connection; one being served (waiting on Cuebot) through the
        error path, so the edge logs it; one whose answer is already partly out can only
        be cut off.
        """
        channel: Any = getattr(self, "channel", None)
        if self.finished or self._disconnected or channel is None:
            return
        if not self._rendered:
            channel.refuse(503, Code.UNAVAILABLE, message)
            return
        if self.startedWriting:
            self.loseConnection()
            return
        self.setHeader(b"connection", b"close")
        channel.persistent = False
        finish_error(self, GatewayError(Code.UNAVAILABLE, message))
        self._cut_off = True


class GatewaySite(Site):
    """
    A Site whose connections are L{GatewayChannel}s: it never renders tracebacks, and
    leaves access logging to the edge (and to the channel, for raw refusals).
    """

    displayTracebacks = False
    noisy = False
    protocol = GatewayChannel  # type: ignore[assignment]

    head_timeout: float | None = None

    def __init__(self, resource: IResource, *args: Any, **kwargs: Any) -> None:
        # Every route takes JSON; Twisted's form parsing would only cost time. It builds an
        # email.message to read Content-Type on every POST (a tenth of a small call's CPU).
        kwargs.setdefault("parsePOSTFormSubmission", False)
        kwargs.setdefault("requestFactory", GatewayRequest)
        super().__init__(resource, *args, **kwargs)

    def log(self, request: Any) -> None:
        """The edge writes a richer access event; Site's own line would duplicate it."""


def body_limited_request(
    max_body: int,
    cors: CorsPolicy | None = None,
    metrics: GatewayMetrics | None = None,
    *,
    in_flight: InFlight | None = None,
    head_limits: HeadLimits | None = None,
) -> type[GatewayRequest]:
    """
    A request class for a L{GatewaySite}: bodies over C{max_body} bytes refused, the
    gateway's CORS headers on raw refusals, refusals counted in C{metrics}, requests
    counted in C{in_flight} from the end of their head.
    """
    attrs = {
        "max_body": max_body,
        "cors": cors,
        "metrics": metrics,
        "in_flight": in_flight,
        "head_limits": head_limits or HeadLimits(),
    }
    return type("GatewayRequest", (GatewayRequest,), attrs)


def build_site(
    resource: IResource, config: GatewayConfig, reactor: Any, in_flight: InFlight
) -> GatewaySite:
    """
    The site the gateway listens with, around the root resource (the guard, whose CORS
    policy and metrics the raw refusals share) and the settings.
    """
    limits = HeadLimits(
        max_request_line=config.max_request_line,
        max_header_line=config.max_header_line,
        max_headers=config.max_headers,
        max_head_bytes=config.max_head_bytes,
    )
    site = GatewaySite(resource, timeout=config.http_timeout, reactor=reactor)
    site.requestFactory = body_limited_request(
        config.max_body_bytes,
        cors=getattr(resource, "cors", None),
        metrics=getattr(resource, "metrics", None),
        in_flight=in_flight,
        head_limits=limits,
    )
    site.head_timeout = config.http_timeout
    return site
