# -*- test-case-name: tests.integration.test_keys -*-
"""
The identity provider's signing keys, fetched from its JWKS URL and cached.

The cache is what stands between hostile traffic and the IdP: every token names a
C{kid}, and a token with a random one must not turn into a request to the IdP. Keys are
therefore fetched when the cache is older than its max age, or when a token names an
unknown C{kid} and the last fetch is at least C{min_interval} seconds old; otherwise the
token is refused straight away. Concurrent lookups share one fetch, and a failed fetch
keeps the keys already known, so an IdP outage does not lock everyone out at once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from opencue_gw.auth.bearer import TokenRejected
from opencue_gw.auth.keys import VerifyingKey, key_from_jwk
from opencue_gw.logs import GATEWAY_OBSERVER

if TYPE_CHECKING:
    # treq (and its HTTP client stack) loads only when a JWKS URL is configured.
    from treq.client import HTTPClient

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MIN_INTERVAL", "JWKSCache", "JWKSError", "parse_jwks"]

DEFAULT_MAX_AGE = 600.0
DEFAULT_MIN_INTERVAL = 30.0
DEFAULT_TIMEOUT = 10.0
# A JWKS is a few kilobytes; anything far larger is not one.
MAX_JWKS_BYTES = 1024 * 1024


class JWKSError(Exception):
    """The JWKS could not be fetched or holds no usable key."""


def parse_jwks(body: bytes) -> tuple[VerifyingKey, ...]:
    """The usable signing keys of a JWKS document; raises L{JWKSError} if there is none."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise JWKSError("the JWKS is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JWKSError("the JWKS has no 'keys' list")
    keys = tuple(
        key for key in (key_from_jwk(e) for e in entries if isinstance(e, dict)) if key is not None
    )
    if not keys:
        raise JWKSError("the JWKS holds no usable signing key")
    return keys


class JWKSCache:
    """
    The keys at one JWKS URL, with the refresh rules described in the module.

    C{http} is a real C{treq} client (tests point it at a local server); C{clock} times
    the cache and the fetch timeout.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        url: str,
        clock: IReactorTime,
        http: HTTPClient,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self._clock = clock
        self._http = http
        self._max_age = max_age
        self._min_interval = min_interval
        self._timeout = timeout
        self._keys: tuple[VerifyingKey, ...] = ()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._pending: Deferred[None] | None = None
        self._waiters: list[Deferred[None]] = []

    def cached(self, kid: str | None, alg: str) -> VerifyingKey | None:
        """The key for C{kid} among the keys already held, without any fetch."""
        return self._find(kid, alg)

    def key_for(self, kid: str | None, alg: str) -> Deferred[VerifyingKey]:
        """
        The key that must verify a token with this C{kid} and C{alg}; fails with
        L{TokenRejected} when there is none (and a fetch is not allowed or did not help).
        """
        now = self._clock.seconds()
        try:
            key = self._find(kid, alg)
        except TokenRejected:
            return fail()
        fresh = self._fetched_at is not None and now - self._fetched_at < self._max_age
        if key is not None and fresh:
            return succeed(key)
        if not self._may_fetch(now):
            return succeed(key) if key is not None else fail(self._unknown())
        waiter = self._refresh(now)
        return waiter.addCallback(lambda _: self._found_after_refresh(kid, alg))

    def _may_fetch(self, now: float) -> bool:
        return (
            self._pending is not None
            or self._attempted_at is None
            or now - self._attempted_at >= self._min_interval
        )

    def _find(self, kid: str | None, alg: str) -> VerifyingKey | None:
        if kid is None:
            matching = [k for k in self._keys if alg in k.algorithms]
            if len(matching) > 1:
                raise TokenRejected("unknown_kid", "token is unverifiable: token has no kid")
            return matching[0] if matching else None
        for key in self._keys:
            if key.kid == kid:
                if alg not in key.algorithms:
                    raise TokenRejected(
                        "algorithm", "token is unverifiable: signing method does not match its key"
                    )
                return key
        return None

    def _found_after_refresh(self, kid: str | None, alg: str) -> VerifyingKey:
        key = self._find(kid, alg)
        if key is None:
            raise self._unknown()
        return key

    def _unknown(self) -> TokenRejected:
        if self._fetched_at is None:
            return TokenRejected(
                "keys_unavailable", "token is unverifiable: signing keys are unavailable"
            )
        return TokenRejected("unknown_kid", "token is unverifiable: unknown key id")

    def _refresh(self, now: float) -> Deferred[None]:
        # Registered before the fetch starts: a fetch that settles synchronously releases
        # the waiters at once, and one added after that would never fire.
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self._pending is None:
            self._attempted_at = now
            fetching = self._fetch()
            self._pending = fetching.addCallbacks(self._fetched, self._fetch_failed)
            self._pending.addCallback(self._release)
        return waiter

    def _fetch(self) -> Deferred[tuple[VerifyingKey, ...]]:
        response: Deferred[Any] = self._http.get(
            self.url,
            headers=Headers({b"accept": [b"application/json"]}),
            timeout=self._timeout,
            reactor=self._clock,  # type: ignore[arg-type]
        )
        body: Deferred[bytes] = response.addCallback(_read_body)
        return body.addCallback(parse_jwks)

    def _fetched(self, keys: tuple[VerifyingKey, ...]) -> None:
        self._keys = keys
        self._fetched_at = self._clock.seconds()
        self.log.info("Fetched {count} signing keys from {url}", count=len(keys), url=self.url)

    def _fetch_failed(self, failure: Failure) -> None:
        self.log.error(
            "Cannot fetch signing keys from {url}: {error}; keeping {count} known keys",
            url=self.url,
            error=failure.getErrorMessage() or failure.type.__name__,
            count=len(self._keys),
        )

    def _release(self, _: None) -> None:
        self._pending = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


def _read_body(response: IResponse) -> Deferred[bytes]:
    # The body is read (within the cap) even on an error status, to free the connection.
    chunks: list[bytes] = []
    size = [0]

    def collect(data: bytes) -> None:
        size[0] += len(data)
        if size[0] > MAX_JWKS_BYTES:
            raise JWKSError("the JWKS is larger than 1 MiB")
        chunks.append(data)

    def check(_: None) -> bytes:
        if response.code != 200:
            raise JWKSError(f"HTTP {response.code}")
        return b"".join(chunks)

    import treq

    done: Deferred[None] = treq.collect(response, collect)
    return done.addCallback(check)
