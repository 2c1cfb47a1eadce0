# -*- test-case-name: tests.test_client -*-
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
from collections.abc import Callable, Mapping
from typing import Any

from opencue_gw.client.calls import PAGE_SIZE, FarmCalls
from opencue_gw.client.core import (
    Call,
    GatewayClientError,
    RetryPolicy,
    parse_answer,
    resolve_token,
    resolve_url,
)

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
        attempt = 1
        while True:
            try:
                return self._attempt(call)
            except GatewayClientError as error:
                wait = self._retry.delay(call, error, attempt, self._rng)
                if wait is None:
                    raise
            self._sleep(wait)
            attempt += 1

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

    def _attempt(self, call: Call) -> Any:
        request = urllib.request.Request(
            call.url(self.url),
            data=call.body,
            method=call.method,
            headers=call.headers(self._token),
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
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
