# -*- test-case-name: tests.integration.test_client -*-
"""
What the asynchronous and the synchronous client share: where the gateway and the token
come from, how a call becomes an HTTP request, how an answer becomes a value or an
exception, and when a failed call is tried again.

Keeping this free of any I/O is what lets the two clients be thin: each only sends the
L{Call}s built here, with its own transport (treq or the standard library).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from opencue_gw.errors import GRPC_CODE_NAMES
from opencue_gw.upstream.rpcs import is_read_method

__all__ = [
    "DEFAULT_URL",
    "NO_RETRY",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "URL_ENV",
    "Call",
    "GatewayClientError",
    "RetryPolicy",
    "error_from_answer",
    "parse_answer",
    "resolve_token",
    "resolve_url",
]

DEFAULT_URL = "http://localhost:8448"
URL_ENV = "OPENCUE_GATEWAY_URL"
TOKEN_ENV = "OPENCUE_GATEWAY_TOKEN"
TOKEN_FILE_ENV = "OPENCUE_GATEWAY_TOKEN_FILE"

UNAVAILABLE = 14
# When an answer carries no gRPC code (a proxy's HTML error page), infer one from the
# HTTP status the way grpc-gateway's table maps them.
_CODE_FOR_STATUS = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 10, 429: 8, 499: 1}
_CODE_FOR_STATUS.update({500: 13, 501: 12, 502: 14, 503: 14, 504: 4})


class GatewayClientError(Exception):
    """
    A call that did not succeed: the gateway's error answer, or no answer at all.

    C{code} is the gRPC status code (14, UNAVAILABLE, when the gateway could not be
    reached) and C{http_status} the HTTP status, or C{None} without an answer.
    """

    def __init__(
        self,
        code: int,
        message: str,
        http_status: int | None = None,
        details: Sequence[Any] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, http_status)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.details = list(details)
        self.retry_after = retry_after

    @property
    def code_name(self) -> str:
        """The symbolic gRPC code, such as C{NOT_FOUND}."""
        return GRPC_CODE_NAMES.get(self.code, str(self.code))

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}, " if self.http_status is not None else ""
        return f"{self.message} ({status}{self.code_name})"


def resolve_url(url: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The gateway's base URL: the argument, else C{OPENCUE_GATEWAY_URL}, else the default."""
    env = os.environ if environ is None else environ
    return (url or env.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def resolve_token(
    token: str | None = None,
    token_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """
    The bearer token: the argument, else the file, else C{OPENCUE_GATEWAY_TOKEN}, else
    the file named by C{OPENCUE_GATEWAY_TOKEN_FILE}; C{None} when there is none (the
    gateway then answers 401, which says more than a client-side refusal would).
    """
    env = os.environ if environ is None else environ
    if token:
        return token.strip()
    path = token_file or None
    if path is None and env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = path or env.get(TOKEN_FILE_ENV)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise GatewayClientError(
                16, f"cannot read token file {path}: {error.strerror}"
            ) from None
    return None


@dataclass(frozen=True)
class Call:
    """One HTTP request to the gateway, independent of how it is sent."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    idempotent: bool = False

    @classmethod
    def resource(
        cls,
        method: str,
        segments: Sequence[str],
        params: Mapping[str, Any] | None = None,
    ) -> Call:
        """
        A resource route: path segments are quoted; C{None} parameters are left out,
        lists repeat the parameter, booleans are C{true}/C{false}. GET parameters go in
        the query, POST ones in a JSON body.
        """
        path = "/api/v1/" + "/".join(quote(str(s), safe="") for s in segments)
        given = {k: v for k, v in (params or {}).items() if v is not None}
        if method == "GET":
            query: list[tuple[str, str]] = []
            for key, value in given.items():
                for one in value if isinstance(value, list | tuple) else [value]:
                    text = str(one).lower() if isinstance(one, bool) else str(one)
                    query.append((key, text))
            return cls("GET", path, tuple(query), None, idempotent=True)
        return cls("POST", path, (), json.dumps(given).encode("utf-8"), idempotent=False)

    @classmethod
    def rpc(cls, rpc: str, body: Mapping[str, Any] | str | bytes | None = None) -> Call:
        """
        An RPC route, C{job.JobInterface/GetJobs} (leading slash optional). Only
        Get*/Find*/Is* methods count as idempotent.
        """
        path = "/" + rpc.lstrip("/")
        if body is None:
            data = b"{}"
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        return cls("POST", path, (), data, idempotent=is_read_method(path.rsplit("/", 1)[-1]))

    def with_query(self, **extra: str) -> Call:
        """The same call with query parameters replaced or added (for paging)."""
        kept = tuple((k, v) for k, v in self.query if k not in extra)
        return Call(self.method, self.path, kept + tuple(extra.items()), self.body, self.idempotent)

    def url(self, base: str) -> str:
        """The absolute URL against the gateway's base URL."""
        return base + self.path + ("?" + urlencode(self.query) if self.query else "")

    def headers(self, token: str | None) -> dict[str, str]:
        """Request headers; the token goes only into C{Authorization}."""
        headers = {"Accept": "application/json", "User-Agent": "opencue-gw-client"}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def error_from_answer(
    status: int, body: bytes, retry_after: str | None = None
) -> GatewayClientError:
    """The exception for a non-2xx answer, from its C{{code, message, details}} body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    code = _CODE_FOR_STATUS.get(status, 2)
    if isinstance(parsed, dict) and isinstance(parsed.get("code"), int):
        message = str(parsed.get("message", ""))
        details = parsed.get("details") or []
        return GatewayClientError(
            parsed["code"], message, status, details, _retry_after(retry_after)
        )
    text = body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    return GatewayClientError(code, text, status, (), _retry_after(retry_after))


def parse_answer(status: int, body: bytes, retry_after: str | None = None) -> Any:
    """The decoded JSON of a 2xx answer; raises L{GatewayClientError} otherwise."""
    if not 200 <= status < 300:
        raise error_from_answer(status, body, retry_after)
    try:
        return json.loads(body) if body else None
    except ValueError:
        raise GatewayClientError(
            13, "the gateway answered something that is not JSON", status
        ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """
    When to try a call again: after UNAVAILABLE (HTTP 503, or no answer), only for
    idempotent calls unless C{retry_writes}, at most C{attempts} tries in all, waiting a
    random time up to an exponentially growing bound ("full jitter", so many clients
    retrying at once spread out) and never less than a C{Retry-After} the gateway gave.

    Also after the gateway's rate limiter refused the call (HTTP 429 with C{Retry-After}),
    for writes too: a refused call never reached Cuebot. A 429 without C{Retry-After} is
    Cuebot's RESOURCE_EXHAUSTED (an answer too large, say), which a retry cannot fix; and
    a wait longer than C{max_delay} is left to the caller rather than retried too early.
    """

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 5.0
    retry_writes: bool = False

    def delay(
        self, call: Call, error: GatewayClientError, attempt: int, rng: random.Random
    ) -> float | None:
        """Seconds to wait before try C{attempt + 1}, or C{None} to give up."""
        if attempt >= self.attempts:
            return None
        if error.http_status == 429 and error.retry_after is not None:
            if error.retry_after > self.max_delay:
                return None
            return error.retry_after + rng.uniform(0, self.base_delay)
        if error.code != UNAVAILABLE:
            return None
        if not (call.idempotent or self.retry_writes):
            return None
        wait = rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.max_delay))
        return wait


NO_RETRY = RetryPolicy(attempts=1)
