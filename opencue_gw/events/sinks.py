# -*- test-case-name: tests.test_events -*-
"""
The two kinds of subscriber: an SSE stream to a client, and a wait for one job.

L{EventStream} writes each event as it comes while the connection keeps up. It is the
request's push producer, so when the transport's write buffer is full Twisted pauses it;
what arrives meanwhile is queued up to a byte bound, past which the stream is ended with
a final C{dropped} event rather than buffered further. L{JobWait} answers once, when its
job has finished, failed to be found, or its time is up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opencue_proto import job_pb2
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.web.iweb import IRequest
from zope.interface import implementer

from opencue_gw.codec import encode
from opencue_gw.errors import Code, GatewayError
from opencue_gw.events.model import Event, ScopeKey, comment, control
from opencue_gw.http.answers import set_json_headers

__all__ = ["EventStream", "JobWait", "frame_counts"]

_PING = comment("ping")


@implementer(IPushProducer)
class EventStream:
    """
    One C{text/event-stream} answer. C{ended} fires (with C{None}) when the stream is
    over for any reason but the client leaving, which cancels it instead; C{on_end} is
    called once either way, with whether the client was too slow.
    """

    def __init__(
        self,
        request: IRequest,
        *,
        max_buffer: int,
        retry_ms: int,
        on_end: Callable[[bool], None],
    ) -> None:
        self._request = request
        self._max_buffer = max_buffer
        self._on_end = on_end
        self._paused = False
        self._queue: list[bytes] = []
        self._queued = 0
        self._over = False
        self.ended: Deferred[None] = Deferred(self._cancelled)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.registerProducer(self, True)  # type: ignore[attr-defined]
        # The head goes out now; "retry" tells EventSource how soon to reconnect.
        request.write(b"retry: %d\n\n" % retry_ms)

    @property
    def request(self) -> IRequest:
        """The request this stream answers."""
        return self._request

    # IPushProducer: the transport's say on how fast we may write.

    def pauseProducing(self) -> None:
        """The write buffer is full: queue from now on."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The buffer drained: write what was queued."""
        self._paused = False
        queued, self._queue, self._queued = self._queue, [], 0
        if queued and not self._over:
            self._request.write(b"".join(queued))

    def stopProducing(self) -> None:
        """The connection is gone."""
        self._end(False, None)

    # Sink

    def deliver(self, events: Sequence[Event], wire: bytes) -> None:
        """Write C{wire}, or queue it while paused; past the bound, drop the client."""
        if self._over:
            return
        if not self._paused:
            self._request.write(wire)
            return
        self._queue.append(wire)
        self._queued += len(wire)
        if self._queued > self._max_buffer:
            self._queue, self._queued = [], 0
            payload = {
                "message": "the client read too slowly; events were dropped, reconnect "
                "with Last-Event-ID to resume",
                "lastEventId": events[-1].id,
            }
            self._end(True, control("dropped", payload))

    def failed(self, key: ScopeKey, error: GatewayError) -> None:
        """A poll failed: say so in the stream (no id: not part of the history)."""
        payload = {"code": error.code, "message": error.message, "scope": ":".join(key)}
        self._write(control("error", payload))

    def ping(self) -> None:
        """A heartbeat comment, unless the client is already behind."""
        if not self._paused:
            self._write(_PING)

    def close(self, name: str, payload: Mapping[str, Any]) -> None:
        """The hub ends the stream (shutdown)."""
        self._end(False, control(name, payload))

    def _write(self, data: bytes) -> None:
        if self._over:
            return
        if self._paused:
            self._queue.append(data)
            self._queued += len(data)
        else:
            self._request.write(data)

    def _end(self, slow: bool, last: bytes | None) -> None:
        if self._over:
            return
        self._over = True
        self._on_end(slow)
        request = self._request
        gone = getattr(request, "_disconnected", False) or getattr(request, "finished", False)
        if gone:
            return
        if last is not None:
            request.write(last)
        request.unregisterProducer()  # type: ignore[attr-defined]
        if not self.ended.called:
            self.ended.callback(None)

    def _cancelled(self, d: Deferred[None]) -> None:
        # The client went away (Klein cancels the route's Deferred).
        self._over = True
        self._on_end(False)


def frame_counts(job: Any) -> dict[str, int]:
    """A job's frame counts by state, as the wait answer and the CLI report them."""
    stats = job.job_stats
    return {
        "total": stats.total_frames,
        "waiting": stats.waiting_frames,
        "running": stats.running_frames,
        "depend": stats.depend_frames,
        "dead": stats.dead_frames,
        "eaten": stats.eaten_frames,
        "succeeded": stats.succeeded_frames,
    }


class JobWait:
    """
    Waits for one job to finish, on the job's scope of the hub. C{answer} fires with the
    JSON body, or fails with a L{GatewayError} (404, 503, or 408 when time is up).
    """

    def __init__(
        self,
        job_id: str,
        timeout: float,
        clock: IReactorTime,
        request: IRequest,
        on_end: Callable[[], None],
    ) -> None:
        self._job_id = job_id
        self._timeout = timeout
        self._request = request
        self._on_end = on_end
        self._last: Any = None
        self.answer: Deferred[bytes] = Deferred(self._cancelled)
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._time_up)

    def deliver(self, events: Sequence[Event], wire: bytes) -> None:
        """Job events: answer once one says the job is finished."""
        for event in events:
            if event.item.kind == "job" and event.item.id == self._job_id:
                self._seen(event)

    def _seen(self, event: Event) -> None:
        if self.answer.called:
            return
        job = event.item.message
        self._last = job
        if event.item.fingerprint[0] == "FINISHED":
            body = b'{"job":%s,"frameCounts":%s}' % (
                encode(job),
                json.dumps(frame_counts(job), separators=(",", ":")).encode(),
            )
            set_json_headers(self._request, 200)
            self._request.setHeader(b"content-length", str(len(body)).encode("ascii"))
            self._settle(body)

    def failed(self, key: ScopeKey, error: GatewayError) -> None:
        """The job cannot be read: not found (404), or Cuebot unavailable."""
        if error.code == Code.NOT_FOUND:
            missing = GatewayError.not_found(f"job {self._job_id!r}: not found")
            missing.upstream = True
            self._settle(missing)
        else:
            self._settle(error)

    def ping(self) -> None:
        """Nothing to do: the answer is one JSON body."""

    def close(self, name: str, payload: Mapping[str, Any]) -> None:
        """Shutdown: the caller may retry against another gateway."""
        self._settle(GatewayError.unavailable(str(payload.get("message", name)), retry_after=1))

    def _time_up(self) -> None:
        self._timer = None
        where = ""
        if self._last is not None:
            counts = frame_counts(self._last)
            where = (
                f" (still {job_pb2.JobState.Name(self._last.state)}: "
                f"{counts['running']} running, {counts['waiting']} waiting, "
                f"{counts['dead']} dead, {counts['succeeded']} succeeded "
                f"of {counts['total']})"
            )
        self._settle(
            GatewayError(
                Code.DEADLINE_EXCEEDED,
                f"job {self._job_id!r} did not finish within {self._timeout:g}s{where}",
                http_status=408,
            )
        )

    def _settle(self, outcome: bytes | GatewayError) -> None:
        if self.answer.called:
            return
        self._stop_timer()
        self._on_end()
        if isinstance(outcome, GatewayError):
            self.answer.errback(outcome)
        else:
            self.answer.callback(outcome)

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _cancelled(self, d: Deferred[bytes]) -> None:
        self._stop_timer()
        self._on_end()
