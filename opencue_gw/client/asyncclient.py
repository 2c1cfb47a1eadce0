# -*- test-case-name: tests.integration.test_client -*-
"""
The asynchronous client, for Twisted programs: treq underneath, Deferreds out.

The reactor and the HTTP client are injected so a program (or a test) decides which
reactor runs it; nothing blocks, retries wait with C{deferLater}.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent

from opencue_gw.client.calls import MAX_WAIT, PAGE_SIZE, FarmCalls, Names, events_call, wait_call
from opencue_gw.client.core import (
    Call,
    GatewayClientError,
    RetryPolicy,
    error_from_answer,
    parse_answer,
    resolve_token,
    resolve_url,
)
from opencue_gw.client.sse import SSEParser, StreamEvent

__all__ = ["AsyncGatewayClient"]

_MAX_PAGES = 100_000
_END = object()


class _Chunks(Protocol):
    """Hands each piece of a streamed body to a queue; C{_END} when it is over."""

    def __init__(self, queue: DeferredQueue[Any]) -> None:
        self._queue = queue

    def dataReceived(self, data: bytes) -> None:
        self._queue.put(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._queue.put(_END)

    def stop(self) -> None:
        """The reader is done with the stream: close the connection."""
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


class AsyncGatewayClient(FarmCalls[Deferred[Any]]):
    """
    Calls the gateway without blocking. Every helper returns a Deferred firing with the
    decoded JSON (lists: every item), or failing with L{GatewayClientError}.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        token_file: str | None = None,
        reactor: Any = None,
        http: HTTPClient | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.url = resolve_url(url, environ)
        self._token = resolve_token(token, token_file, environ)
        self._reactor = reactor
        self._http = http if http is not None else HTTPClient(Agent(reactor))
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._rng = rng if rng is not None else random.Random()

    def wait_for_job(self, job_id: str, timeout: float = 3600.0) -> Deferred[Any]:
        """
        Fires when job C{job_id} has finished, with its JSON (C{job}, C{frameCounts});
        fails with L{GatewayClientError} code 4 (HTTP 408) if C{timeout} passes first.
        """
        return Deferred.fromCoroutine(self._wait(job_id, timeout))

    async def _wait(self, job_id: str, timeout: float) -> Any:
        deadline = self._reactor.seconds() + timeout
        while True:
            chunk = max(1.0, min(MAX_WAIT, deadline - self._reactor.seconds()))
            try:
                return await self._send(wait_call(job_id, chunk), self._timeout + chunk)
            except GatewayClientError as error:
                if error.http_status != 408 or deadline - self._reactor.seconds() <= 0:
                    raise

    async def events(
        self,
        *,
        show: Names = None,
        job: Names = None,
        types: Names = None,
        states: Names = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[StreamEvent]:
        """
        The gateway's events as they come: C{async for event in client.events(...)}.
        Resumes with C{Last-Event-ID} after a lost connection, C{dropped} or
        C{shutdown} unless C{reconnect} is false; leaving the loop closes the stream.
        """
        call = events_call(show, job, types, states)
        parser = SSEParser()
        parser.last_id = last_event_id
        failures = 0
        while True:
            headers: dict[bytes | str, bytes | str] = dict(call.headers(self._token).items())
            headers["Accept"] = "text/event-stream"
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                opening = self._http.request("GET", call.url(self.url), headers=headers)
                opening.addTimeout(self._timeout, self._reactor)
                response = await opening
            except Exception as error:
                failures += 1
                if not reconnect or failures >= self._retry.attempts:
                    raise GatewayClientError(
                        14, f"cannot reach the gateway at {self.url}: {error}"
                    ) from error
            else:
                if response.code != 200:
                    body = await response.content()
                    retry_after = response.headers.getRawHeaders(b"retry-after", [None])[0]
                    failure = error_from_answer(
                        response.code, body, retry_after.decode() if retry_after else None
                    )
                    if response.code != 503 or not reconnect:
                        raise failure
                    failures += 1
                else:
                    failures = 0
                    queue: DeferredQueue[Any] = DeferredQueue()
                    reader = _Chunks(queue)
                    response.deliverBody(reader)
                    try:
                        while (chunk := await queue.get()) is not _END:
                            for event in parser.feed(chunk):
                                yield event
                    finally:
                        reader.stop()
            if not reconnect:
                return
            if failures >= self._retry.attempts:
                raise GatewayClientError(14, f"the gateway at {self.url} stays unavailable")
            delay = (parser.retry_ms or 2000) / 1000.0 * max(1, failures)
            await deferLater(self._reactor, delay, lambda: None)

    def _one(self, call: Call) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._send(call))

    def _all(self, call: Call) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._collect(call))

    async def _collect(self, call: Call) -> list[Any]:
        items: list[Any] = []
        page: Any = 1
        for _ in range(_MAX_PAGES):
            answer = await self._send(call.with_query(page=str(page), limit=str(PAGE_SIZE)))
            items.extend(answer["items"])
            page = answer.get("nextPage")
            if page is None:
                break
        return items

    async def _send(self, call: Call, timeout: float | None = None) -> Any:
        attempt = 1
        while True:
            try:
                return await self._attempt(call, timeout)
            except GatewayClientError as error:
                wait = self._retry.delay(call, error, attempt, self._rng)
                if wait is None:
                    raise
            await deferLater(self._reactor, wait, lambda: None)
            attempt += 1

    async def _attempt(self, call: Call, timeout: float | None = None) -> Any:
        headers: dict[bytes | str, bytes | str] = {
            k: v for k, v in call.headers(self._token).items()
        }
        sending = self._http.request(
            call.method, call.url(self.url), headers=headers, data=call.body
        )
        sending.addTimeout(timeout or self._timeout, self._reactor)
        try:
            response = await sending
            body = await response.content()
        except GatewayClientError:
            raise
        except Exception as error:
            raise GatewayClientError(
                14, f"cannot reach the gateway at {self.url}: {error}"
            ) from error
        retry_after = response.headers.getRawHeaders(b"retry-after", [None])[0]
        return parse_answer(
            response.code, body, retry_after.decode("latin-1") if retry_after else None
        )
