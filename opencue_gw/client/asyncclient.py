# -*- test-case-name: tests.test_client -*-
"""
The asynchronous client, for Twisted programs: treq underneath, Deferreds out.

The reactor and the HTTP client are injected so a program (or a test) decides which
reactor runs it; nothing blocks, retries wait with C{deferLater}.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.client import Agent

from opencue_gw.client.calls import PAGE_SIZE, FarmCalls
from opencue_gw.client.core import (
    Call,
    GatewayClientError,
    RetryPolicy,
    parse_answer,
    resolve_token,
    resolve_url,
)

__all__ = ["AsyncGatewayClient"]

_MAX_PAGES = 100_000


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

    async def _send(self, call: Call) -> Any:
        attempt = 1
        while True:
            try:
                return await self._attempt(call)
            except GatewayClientError as error:
                wait = self._retry.delay(call, error, attempt, self._rng)
                if wait is None:
                    raise
            await deferLater(self._reactor, wait, lambda: None)
            attempt += 1

    async def _attempt(self, call: Call) -> Any:
        headers: dict[bytes | str, bytes | str] = {
            k: v for k, v in call.headers(self._token).items()
        }
        sending = self._http.request(
            call.method, call.url(self.url), headers=headers, data=call.body
        )
        sending.addTimeout(self._timeout, self._reactor)
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
