# -*- test-case-name: tests.integration.test_client -*-
"""
The synchronous client, for scripts and the command line: the standard library's
C{urllib} underneath, values out.

It needs no reactor and no dependency beyond the gateway package, so a one-off script
(or C{opencue-gw}) starts instantly; it shares request building, error mapping and the
retry policy with the asynchronous client through L{opencue_gw.client.core}.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

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

__all__ = ["GatewayClient"]

_MAX_PAGES = 100_000


class GatewayClient(FarmCalls[Any]):
    """
    Calls the gateway and blocks for the answer. Helpers return the decoded JSON (lists:
    every item) or raise L{GatewayClientError}.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        token_file: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = resolve_url(url, environ)
        self._token = resolve_token(token, token_file, environ)
        self._timeout = timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()

    def _one(self, call: Call) -> Any:
        return self._retrying(call, self._timeout)

    def _all(self, call: Call) -> Any:
        items: list[Any] = []
        page: Any = 1
        for _ in range(_MAX_PAGES):
            answer = self._one(call.with_query(page=str(page), limit=str(PAGE_SIZE)))
            items.extend(answer["items"])
            page = answer.get("nextPage")
            if page is None:
                break
        return items

    def wait_for_job(self, job_id: str, timeout: float = 3600.0) -> Any:
        """
        Block until job C{job_id} has finished; its JSON (C{job}, C{frameCounts}).
        Raises L{GatewayClientError} with code 4 (HTTP 408) if C{timeout} seconds pass
        first. Long waits are a series of requests of at most L{MAX_WAIT} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            chunk = max(1.0, min(MAX_WAIT, left))
            try:
                return self._retrying(wait_call(job_id, chunk), self._timeout + chunk)
            except GatewayClientError as error:
                if error.http_status != 408 or deadline - time.monotonic() <= 0:
                    raise

    def events(
        self,
        *,
        show: Names = None,
        job: Names = None,
        types: Names = None,
        states: Names = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
    ) -> Iterator[StreamEvent]:
        """
        The gateway's events as they come (blocking iterator). The stream is resumed
        with C{Last-Event-ID} after a lost connection, a C{dropped} or a C{shutdown}
        (up to the retry policy's attempts in a row) unless C{reconnect} is false.
        """
        call = events_call(show, job, types, states)
        parser = SSEParser()
        parser.last_id = last_event_id
        failures = 0
        while True:
            headers = call.headers(self._token)
            headers["Accept"] = "text/event-stream"
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            request = urllib.request.Request(call.url(self.url), method="GET", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                    failures = 0
                    for line in answer:
                        yield from parser.feed(line)
            except urllib.error.HTTPError as error:
                with error:
                    body = error.read()
                failure = error_from_answer(error.code, body, error.headers.get("retry-after"))
                if error.code != 503 or not reconnect:
                    raise failure from None
                failures += 1
            except (urllib.error.URLError, OSError) as error:
                failures += 1
                if not reconnect or failures >= self._retry.attempts:
                    reason = getattr(error, "reason", error)
                    raise GatewayClientError(
                        14, f"cannot reach the gateway at {self.url}: {reason}"
                    ) from None
            if not reconnect:
                return
            if failures >= self._retry.attempts:
                raise GatewayClientError(14, f"the gateway at {self.url} stays unavailable")
            self._sleep((parser.retry_ms or 2000) / 1000.0 * max(1, failures))

    def _retrying(self, call: Call, timeout: float) -> Any:
        attempt = 1
        while True:
            try:
                return self._attempt(call, timeout)
            except GatewayClientError as error:
                wait = self._retry.delay(call, error, attempt, self._rng)
                if wait is None:
                    raise
            self._sleep(wait)
            attempt += 1

    def _attempt(self, call: Call, timeout: float | None = None) -> Any:
        request = urllib.request.Request(
            call.url(self.url),
            data=call.body,
            method=call.method,
            headers=call.headers(self._token),
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self._timeout) as answer:
                return parse_answer(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                body = error.read()
            return parse_answer(error.code, body, error.headers.get("retry-after"))
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise GatewayClientError(
                14, f"cannot reach the gateway at {self.url}: {reason}"
            ) from None
