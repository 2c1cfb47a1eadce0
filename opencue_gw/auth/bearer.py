# -*- test-case-name: tests.test_auth -*-
"""
Bearer-token authentication, in twisted.cred's terms.

A credential factory turns the C{Authorization} header into L{BearerToken}
credentials, L{JWTChecker} verifies the token and answers with the caller's
L{Identity}, and L{GatewayRealm} hands out the API resource bound to that identity. The
guard resource in L{opencue_gw.http.guard} drives them.

The rules are the Go gateway's (HMAC, C{nbf} honoured) made stricter where it was
unsafe: C{alg: none} and every algorithm outside the configured keys' families are
refused and C{exp} is required unless the operator opts out. Public keys and an identity
provider's JWKS (L{opencue_gw.auth.keys}, L{opencue_gw.auth.jwks}) can stand beside the secret.
Expiry is checked against the injected clock rather than inside PyJWT, so tests can
move time and the messages say exactly what was wrong.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import ICredentialFactory
from zope.interface import Attribute, Interface, implementer

from opencue_gw.auth.keys import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    KNOWN_ALGORITHMS,
    VerifyingKey,
    hmac_key,
)

if TYPE_CHECKING:
    from opencue_gw.auth.jwks import JWKSCache

__all__ = [
    "HMAC_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "BearerCredentialFactory",
    "BearerToken",
    "GatewayRealm",
    "IBearerToken",
    "IIdentity",
    "Identity",
    "JWTChecker",
    "JWTVerifier",
    "TokenRejected",
]

# Verified tokens remembered, and for how long (seconds): see JWTVerifier._remembered.
VERIFIED_CACHE_SIZE = 10_000
VERIFIED_TTL = 60.0

# Single-sign-on tokens with group claims run to 8-16 KB; the request head limit
# (64 KiB by default) is what really bounds them, and the token is never sent on to
# Cuebot, so its size costs Cuebot nothing.
MAX_TOKEN_BYTES = 64 * 1024


@dataclass(frozen=True)
class Identity:
    """Who is calling, as the token says. Used for logs and, later, for policy."""

    sub: str | None
    role: str | None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


class TokenRejected(UnauthorizedLogin):
    """
    A token that must not be let through, with a client-safe reason.

    C{reason} is a short machine key (for metrics and logs); C{message} is what the
    client reads. Neither ever contains the token.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class IBearerToken(ICredentials):
    """A bearer token taken from an C{Authorization} header."""

    token = Attribute("The token, as bytes.")


@implementer(IBearerToken)
@dataclass(frozen=True)
class BearerToken:
    """Credentials: the raw token. C{repr} hides it so it cannot leak into a log."""

    token: bytes = field(repr=False)


@implementer(ICredentialFactory)
class BearerCredentialFactory:
    """
    Decodes C{Authorization: Bearer <token>}.

    The Go gateway stripped an optional C{"Bearer "} prefix, so a bare JWT in the header
    worked there; it keeps working here (see README, "Differences").
    """

    scheme = b"bearer"

    def __init__(self, max_token_bytes: int = MAX_TOKEN_BYTES) -> None:
        self._max_token_bytes = max_token_bytes

    def getChallenge(self, request: object) -> dict[str, bytes]:
        """Bearer auth has no challenge parameters beyond the error the guard adds."""
        return {}

    def decode(self, response: bytes, request: object) -> BearerToken:
        """Wrap the header value (already stripped of its scheme) as credentials."""
        token = response.strip()
        if not token:
            raise TokenRejected("malformed", "malformed Authorization header: empty token")
        if len(token) > self._max_token_bytes:
            raise TokenRejected("oversized", "token is too large")
        return BearerToken(token)


def split_authorization(header: bytes) -> bytes:
    """
    Return the token part of an C{Authorization} header value.

    The scheme is case-insensitive (RFC 7235). A bare value with no scheme is taken as
    the token, as the Go gateway did; any other scheme is refused.
    """
    scheme, sep, rest = header.strip().partition(b" ")
    if not sep:
        return scheme
    if scheme.lower() != BearerCredentialFactory.scheme:
        raise TokenRejected(
            "malformed", "malformed Authorization header: expected 'Bearer <token>'"
        )
    return rest


class JWTVerifier:
    """
    Verifies JWTs against the configured key sources.

    Up to three sources: the shared HMAC secret (HS*), one public key (its own family
    only) and an identity provider's JWKS. A token is routed to a source by its C{alg}
    (and, for the JWKS, its C{kid}); a source never sees an algorithm outside its family,
    which is what rules algorithm confusion out. Issuer and audience are checked on every
    token when configured, and not at all otherwise, as the Go gateway did.
    """

    def __init__(
        self,
        secret: bytes | None,
        clock: IReactorTime,
        *,
        require_exp: bool = True,
        leeway: float = 0.0,
        public_key: VerifyingKey | None = None,
        jwks: JWKSCache | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("the JWT secret is empty")
        if secret is None and public_key is None and jwks is None:
            raise ValueError("no key source: give a secret, a public key or a JWKS")
        self._hmac = hmac_key(secret) if secret else None
        self._public_key = public_key
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._require_exp = require_exp
        self._leeway = leeway
        self._verified: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        # PyJWT would warn on every decode with a short HMAC key; the gateway warns once
        # at start-up instead (see the configuration), so the per-decode one is noise.
        warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

    def _remembered(self, token: bytes) -> Identity | None:
        """
        The identity of a token whose signature was verified in the last
        L{VERIFIED_TTL} seconds, after checking its times again against the clock.

        Scripts and dashboards send the same token on every call; verifying its
        signature again each time is most of what authentication costs. Only a token
        byte-for-byte identical to a verified one hits, and never for longer than
        the TTL, so a key taken out of a JWKS stops working within that time.
        """
        digest = hashlib.sha256(token).digest()
        found = self._verified.get(digest)
        if found is None:
            return None
        verified_at, identity = found
        if self._clock.seconds() - verified_at > VERIFIED_TTL:
            del self._verified[digest]
            return None
        self._check_times(identity.claims)
        return identity

    def _remember(self, token: bytes, identity: Identity) -> Identity:
        self._verified[hashlib.sha256(token).digest()] = (self._clock.seconds(), identity)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    def verify(self, token: bytes) -> Identity:
        """
        Check signature and claims; answer the identity or raise L{TokenRejected}.

        Synchronous: a JWKS token is checked against the keys already fetched only.
        L{verify_deferred} is the complete check.
        """
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered
        alg, kid = _algorithm_and_kid(token)
        key = self._static_key(alg, kid)
        if key is None:
            assert self._jwks is not None
            key = self._jwks.cached(kid, alg)
            if key is None:
                raise TokenRejected("unknown_kid", "token is unverifiable: unknown key id")
        return self._remember(token, self._check(token, alg, key))

    def verify_deferred(self, token: bytes) -> Deferred[Identity]:
        """Like L{verify}, fetching the JWKS when the token needs a key not yet known."""
        try:
            remembered = self._remembered(token)
            if remembered is not None:
                return succeed(remembered)
            alg, kid = _algorithm_and_kid(token)
            key = self._static_key(alg, kid)
            if key is None:
                assert self._jwks is not None
                return self._jwks.key_for(kid, alg).addCallback(
                    lambda found: self._remember(token, self._check(token, alg, found))
                )
            return succeed(self._remember(token, self._check(token, alg, key)))
        except TokenRejected:
            return fail()

    def _static_key(self, alg: str, kid: str | None) -> VerifyingKey | None:
        """The secret or public key for C{alg}; C{None} means "ask the JWKS"."""
        if alg in HMAC_ALGORITHMS:
            if self._hmac is not None:
                return self._hmac
        elif self._public_key is not None and alg in self._public_key.algorithms:
            if self._jwks is None or kid is None:
                return self._public_key
            return None
        elif self._jwks is not None and alg in ASYMMETRIC_ALGORITHMS:
            return None
        raise TokenRejected("algorithm", f"token is unverifiable: unexpected signing method: {alg}")

    def _check(self, token: bytes, alg: str, key: VerifyingKey) -> Identity:
        if alg not in key.algorithms:
            raise TokenRejected(
                "algorithm", "token is unverifiable: signing method does not match its key"
            )
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("signature", "token signature is invalid") from None
        except jwt.DecodeError:
            raise TokenRejected("malformed", "token is malformed") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid", "token is invalid") from None
        if not isinstance(claims, dict):
            raise TokenRejected("malformed", "token is malformed: claims are not an object")
        self._check_times(claims)
        self._check_issuer_audience(claims)
        return _identity_from(claims)

    def _check_issuer_audience(self, claims: Mapping[str, Any]) -> None:
        if self._issuer is not None:
            issuer = claims.get("iss")
            if issuer is None:
                raise TokenRejected("missing_iss", "token has no iss claim")
            if issuer != self._issuer:
                raise TokenRejected("issuer", "token has invalid claims: wrong issuer")
        if self._audience is not None:
            audience = claims.get("aud")
            if audience is None:
                raise TokenRejected("missing_aud", "token has no aud claim")
            audiences = audience if isinstance(audience, list) else [audience]
            if self._audience not in audiences:
                raise TokenRejected("audience", "token has invalid claims: wrong audience")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock.seconds()
        exp = claims.get("exp")
        if exp is None:
            if self._require_exp:
                raise TokenRejected("missing_exp", "token has no exp claim")
        elif not _is_number(exp):
            raise TokenRejected("invalid_claims", "token has invalid claims: exp is not a number")
        elif now >= exp + self._leeway:
            raise TokenRejected("expired", "token has invalid claims: token is expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                raise TokenRejected(
                    "invalid_claims", "token has invalid claims: nbf is not a number"
                )
            if now + self._leeway < nbf:
                raise TokenRejected(
                    "not_yet_valid", "token has invalid claims: token is not valid yet"
                )


def _algorithm_and_kid(token: bytes) -> tuple[str, str | None]:
    """The header's C{alg} (one the gateway knows) and C{kid}, before any key is touched."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        # DecodeError, and also the header checks (crit, non-string kid) that PyJWT
        # raises as a bare InvalidTokenError before any signature is checked.
        raise TokenRejected("malformed", "token is malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in KNOWN_ALGORITHMS:
        shown = alg if isinstance(alg, str) and len(alg) <= 16 else "unknown"
        raise TokenRejected(
            "algorithm", f"token is unverifiable: unexpected signing method: {shown}"
        )
    kid = header.get("kid")
    return alg, kid if isinstance(kid, str) else None


def _is_number(value: object) -> bool:
    # Finite only: PyJWT's json accepts NaN/Infinity (a NaN exp would never expire) and
    # an int beyond float range would raise OverflowError in the comparisons.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _claim_text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _identity_from(claims: Mapping[str, Any]) -> Identity:
    return Identity(
        sub=_claim_text(claims.get("sub")),
        role=_claim_text(claims.get("role")),
        claims=claims,
    )


@implementer(ICredentialsChecker)
class JWTChecker:
    """Adapts L{JWTVerifier} to twisted.cred; the avatar id is the caller's L{Identity}."""

    credentialInterfaces = (IBearerToken,)

    def __init__(self, verifier: JWTVerifier) -> None:
        self._verifier = verifier

    def requestAvatarId(self, credentials: BearerToken) -> Deferred[Identity]:  # type: ignore[override]
        """
        Verify; synchronous unless the token needs JWKS keys not fetched yet (an HMAC
        or public-key check is microseconds and needs no thread).

        The avatar id is an L{Identity} rather than the customary bytes, because the
        realm needs the claims; cred hands the id through untouched.
        """
        return self._verifier.verify_deferred(credentials.token)


class IIdentity(Interface):
    """The avatar interface: an authenticated caller is just its L{Identity}."""


@implementer(IRealm)
class GatewayRealm:
    """
    Hands out the caller's L{Identity} as the avatar.

    The avatar is the identity the checker already built (and the verifier remembers),
    so logging in builds nothing per request; what the caller may do is decided by the
    guard (rate limit) and at the RPC call (policy), not by a per-caller resource.
    """

    def requestAvatar(  # type: ignore[override]
        self, avatarId: Identity, mind: object, *interfaces: type
    ) -> tuple[type, Identity, Callable[[], None]]:
        """Only L{IIdentity} avatars exist here."""
        if IIdentity not in interfaces:
            raise ValueError("GatewayRealm only provides IIdentity avatars")
        return IIdentity, avatarId, _no_logout


def _no_logout() -> None:
    """Nothing is held per login, so logging out has nothing to release."""
