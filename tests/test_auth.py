"""
Tests for L{opencue_gw.auth.bearer} and L{opencue_gw.auth.tokens}: a hostile-token suite.

Time comes from a L{Clock}; every hostile token is crafted by hand or signed with a
real key so the verifier, not a helper, decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource
from zope.interface.verify import verifyObject

from opencue_gw.auth.bearer import (
    MAX_TOKEN_BYTES,
    BearerCredentialFactory,
    BearerToken,
    GatewayRealm,
    Identity,
    IIdentity,
    JWTChecker,
    JWTVerifier,
    TokenRejected,
    split_authorization,
)
from opencue_gw.auth.tokens import mint_token

SECRET = b"unit-test-secret" + b"0123456789abcdef" * 3  # 64 bytes: no HS512 key warning
NOW = 1_700_000_000


_RSA_KEY: list[rsa.RSAPrivateKey] = []


def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key for the module; generating one costs a noticeable fraction of a second."""
    if not _RSA_KEY:
        _RSA_KEY.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA_KEY[0]


def clock_at(when: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(when)
    return clock


def verifier(when: float = NOW, **kwargs: Any) -> JWTVerifier:
    return JWTVerifier(SECRET, clock_at(when), **kwargs)


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hs256_by_hand(header: dict[str, Any], payload: bytes, key: bytes = SECRET) -> bytes:
    """A token whose signature is a correct HMAC-SHA256, whatever the header claims."""
    signing_input = b64url(json.dumps(header).encode()) + b"." + b64url(payload)
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return signing_input + b"." + b64url(signature)


def token(claims: dict[str, Any], *, key: bytes = SECRET, algorithm: str = "HS256") -> bytes:
    return jwt.encode(claims, key, algorithm=algorithm).encode("ascii")


def valid_claims(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "alice", "role": "admin", "exp": NOW + 600}
    claims.update(extra)
    return claims


def rejection(v: JWTVerifier, tok: bytes) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        v.verify(tok)
    return info.value


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms_accepted(algorithm: str) -> None:
    """A valid HS256/384/512 token yields an Identity with its sub and role."""
    identity = verifier().verify(token(valid_claims(), algorithm=algorithm))
    assert identity == Identity(sub="alice", role="admin")
    assert identity.claims["exp"] == NOW + 600


def test_alg_none_rejected() -> None:
    """An unsigned token with alg none is refused as a bad algorithm."""
    header = b64url(b'{"alg":"none","typ":"JWT"}')
    payload = b64url(json.dumps(valid_claims()).encode())
    rejected = rejection(verifier(), header + b"." + payload + b".")
    assert rejected.reason == "algorithm"


def test_rs256_rejected() -> None:
    """A token properly signed with RS256 is refused: only HMAC is allowed."""
    tok = token(valid_claims(), key=rsa_key(), algorithm="RS256")  # type: ignore[arg-type]
    rejected = rejection(verifier(), tok)
    assert rejected.reason == "algorithm"
    assert "RS256" in rejected.message


def test_hs_rs_confusion_rejected() -> None:
    """A header claiming RS256 but HMAC-signed with the secret is refused."""
    tok = hs256_by_hand({"alg": "RS256", "typ": "JWT"}, json.dumps(valid_claims()).encode())
    assert rejection(verifier(), tok).reason == "algorithm"


def test_es256_rejected() -> None:
    """A token properly signed with ES256 is refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    tok = token(valid_claims(), key=key, algorithm="ES256")  # type: ignore[arg-type]
    assert rejection(verifier(), tok).reason == "algorithm"


def test_absurd_alg_not_echoed() -> None:
    """A long or non-string alg is shown as 'unknown', not echoed back."""
    long_alg = hs256_by_hand({"alg": "X" * 200}, json.dumps(valid_claims()).encode())
    list_alg = hs256_by_hand({"alg": ["HS256"]}, json.dumps(valid_claims()).encode())
    for tok in (long_alg, list_alg):
        rejected = rejection(verifier(), tok)
        assert rejected.reason == "algorithm"
        assert rejected.message.endswith(": unknown")


def test_wrong_secret() -> None:
    """A token signed with another secret fails the signature check."""
    tok = token(valid_claims(), key=b"another-secret-of-a-decent-length-0123456789")
    assert rejection(verifier(), tok).reason == "signature"


def test_tampered_payload() -> None:
    """Changing a claim while keeping the signature fails the signature check."""
    header, _, signature = token(valid_claims(role="viewer")).split(b".")
    forged = b64url(json.dumps(valid_claims(role="admin")).encode())
    assert rejection(verifier(), header + b"." + forged + b"." + signature).reason == "signature"


def test_missing_exp_rejected_by_default() -> None:
    """A token without exp is refused unless the operator opts out."""
    tok = token({"sub": "alice"})
    assert rejection(verifier(), tok).reason == "missing_exp"


def test_missing_exp_allowed_when_not_required() -> None:
    """With require_exp=False a token without exp never expires, as in Go."""
    tok = token({"sub": "alice"})
    assert verifier(NOW + 10**9, require_exp=False).verify(tok).sub == "alice"


def test_expired() -> None:
    """Once the clock passes exp the token is expired."""
    clock = clock_at()
    v = JWTVerifier(SECRET, clock)
    tok = token(valid_claims(exp=NOW + 10))
    assert v.verify(tok).sub == "alice"
    clock.advance(11)
    assert rejection(v, tok).reason == "expired"


def test_exactly_at_exp_is_expired() -> None:
    """At exactly exp the token is already expired."""
    tok = token(valid_claims(exp=NOW))
    assert rejection(verifier(NOW), tok).reason == "expired"
    assert verifier(NOW - 0.001).verify(tok).sub == "alice"


def test_leeway_admits_just_expired() -> None:
    """Leeway lets a token through shortly after exp, but not beyond it."""
    tok = token(valid_claims(exp=NOW - 5))
    assert verifier(NOW, leeway=10).verify(tok).sub == "alice"
    assert rejection(verifier(NOW + 6, leeway=10), tok).reason == "expired"


def test_nbf_in_future() -> None:
    """A token whose nbf is still ahead is not valid yet; once reached it is."""
    tok = token(valid_claims(nbf=NOW + 60))
    assert rejection(verifier(NOW), tok).reason == "not_yet_valid"
    assert verifier(NOW + 60).verify(tok).sub == "alice"


def test_nbf_with_leeway() -> None:
    """Leeway also covers a slightly-future nbf."""
    tok = token(valid_claims(nbf=NOW + 5))
    assert verifier(NOW, leeway=10).verify(tok).sub == "alice"
    assert rejection(verifier(NOW, leeway=2), tok).reason == "not_yet_valid"


@pytest.mark.parametrize("exp", ["1900000000", None, True, [1], {"t": 1}])
def test_exp_not_a_number(exp: Any) -> None:
    """An exp that is not a JSON number is invalid (null counts as missing)."""
    tok = token({"sub": "alice", "exp": exp})
    expected = "missing_exp" if exp is None else "invalid_claims"
    assert rejection(verifier(), tok).reason == expected


def test_nbf_not_a_number() -> None:
    """An nbf that is not a number is invalid."""
    assert rejection(verifier(), token(valid_claims(nbf="soon"))).reason == "invalid_claims"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1" + b"0" * 400])
def test_non_finite_exp_rejected(literal: bytes) -> None:
    """An exp of NaN, Infinity or beyond float range is invalid, not an immortal token."""
    tok = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, b'{"sub":"a","exp":' + literal + b"}")
    assert rejection(verifier(), tok).reason == "invalid_claims"


@pytest.mark.parametrize(
    "garbage",
    [
        b"abc",
        b"a.b",
        b"a.b.c",
        b"!!!.###.$$$",
        b"",
        b"a.b.c.d",
        b64url(b"[1]") + b"." + b64url(b"{}") + b".sig",
    ],
)
def test_garbage_is_malformed(garbage: bytes) -> None:
    """Anything that is not a JWS compact token is malformed."""
    assert rejection(verifier(), garbage).reason == "malformed"


@pytest.mark.parametrize(
    "header",
    [{"alg": "HS256", "crit": ["x"]}, {"alg": "HS256", "kid": 5}, {"alg": "HS256", "crit": "x"}],
)
def test_invalid_header_parameters_are_malformed(header: dict[str, Any]) -> None:
    """Header parameters PyJWT refuses before any signature check are a 401, not a crash."""
    tok = b64url(json.dumps(header).encode()) + b"." + b64url(b"{}") + b".AAAA"
    assert rejection(verifier(), tok).reason == "malformed"


def test_payload_not_an_object() -> None:
    """A correctly signed payload that is not a JSON object is malformed."""
    tok = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, b"[1,2]")
    assert rejection(verifier(), tok).reason == "malformed"


def test_oversized_token() -> None:
    """The credential factory refuses a token above MAX_TOKEN_BYTES."""
    factory = BearerCredentialFactory()
    assert factory.decode(b"x" * MAX_TOKEN_BYTES, None).token == b"x" * MAX_TOKEN_BYTES
    with pytest.raises(TokenRejected) as info:
        factory.decode(b"x" * (MAX_TOKEN_BYTES + 1), None)
    assert info.value.reason == "oversized"


def test_factory_empty_token() -> None:
    """An empty or blank token is malformed, and surrounding spaces are dropped."""
    factory = BearerCredentialFactory()
    with pytest.raises(TokenRejected) as info:
        factory.decode(b"   ", None)
    assert info.value.reason == "malformed"
    assert factory.decode(b"  tok  ", None) == BearerToken(b"tok")


def test_messages_never_contain_the_token() -> None:
    """No rejection message or reason contains the token or its segments."""
    secret_sub = "needle-subject-0123456789"
    base = valid_claims(sub=secret_sub)
    cases = [
        token(base, key=b"wrong-secret-wrong-secret-wrong-secret"),
        token(dict(base, exp=NOW - 1)),
        token(dict(base, nbf=NOW + 100)),
        token({"sub": secret_sub}),
        token(dict(base, exp="x")),
        token(base, key=rsa_key(), algorithm="RS256"),  # type: ignore[arg-type]
        b64url(json.dumps({"alg": "none"}).encode()) + b"." + b64url(json.dumps(base).encode()),
        b"not-a-token-" + secret_sub.encode(),
    ]
    for tok in cases:
        rejected = rejection(verifier(), tok)
        text = f"{rejected.message} {rejected.reason} {rejected}"
        assert secret_sub not in text
        for segment in tok.split(b"."):
            if len(segment) > 8:
                assert segment.decode() not in text


def test_bearer_token_repr_hides_token() -> None:
    """The credentials' repr never shows the token."""
    assert "sekrit" not in repr(BearerToken(b"sekrit-token"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Bearer abc.def.ghi", b"abc.def.ghi"),
        (b"bearer abc.def.ghi", b"abc.def.ghi"),
        (b"BEARER abc.def.ghi", b"abc.def.ghi"),
        (b"abc.def.ghi", b"abc.def.ghi"),
        (b"  Bearer abc.def.ghi  ", b"abc.def.ghi"),
    ],
)
def test_split_authorization(header: bytes, expected: bytes) -> None:
    """Bearer in any case, or a raw token as Go accepted, yields the token."""
    assert split_authorization(header) == expected


@pytest.mark.parametrize("header", [b"Basic dXNlcjpwYXNz", b"Token abc", b"Digest x=y"])
def test_split_authorization_other_scheme(header: bytes) -> None:
    """Any scheme other than Bearer is refused as malformed."""
    with pytest.raises(TokenRejected) as info:
        split_authorization(header)
    assert info.value.reason == "malformed"


def test_checker_success() -> None:
    """requestAvatarId fires with the caller's Identity for a good token."""
    checker = JWTChecker(verifier())
    d = checker.requestAvatarId(BearerToken(token(valid_claims())))
    identity = SynchronousTestCase().successResultOf(d)
    assert identity == Identity(sub="alice", role="admin")


def test_checker_failure() -> None:
    """requestAvatarId fails with TokenRejected (an UnauthorizedLogin) for a bad token."""
    checker = JWTChecker(verifier())
    d = checker.requestAvatarId(BearerToken(token(valid_claims(exp=NOW - 1))))
    failure = SynchronousTestCase().failureResultOf(d, UnauthorizedLogin)
    assert isinstance(failure.value, TokenRejected)
    assert failure.value.reason == "expired"


def test_realm_hands_out_the_identity_itself() -> None:
    """requestAvatar answers IIdentity, the very identity the checker built, and a logout."""
    realm = GatewayRealm()
    assert verifyObject(IRealm, realm)
    identity = Identity(sub="bob", role="viewer")
    interface, avatar, logout = realm.requestAvatar(identity, None, IIdentity)
    assert interface is IIdentity
    assert avatar is identity
    assert logout() is None


def test_realm_refuses_other_interfaces() -> None:
    """Only IIdentity avatars are offered (a per-caller resource is never built)."""
    with pytest.raises(ValueError):
        GatewayRealm().requestAvatar(Identity(sub=None, role=None), None, IResource)


def test_iat_in_future_accepted() -> None:
    """iat is not checked, as in the Go gateway."""
    assert verifier().verify(token(valid_claims(iat=NOW + 10**6))).sub == "alice"


def test_aud_iss_not_checked() -> None:
    """aud and iss are accepted without any configuration, as in Go."""
    tok = token(valid_claims(aud="someone-else", iss="elsewhere"))
    assert verifier().verify(tok).role == "admin"


def test_non_string_sub_and_role_become_text() -> None:
    """Numeric sub/role are carried as text; absent ones as None."""
    assert verifier().verify(token(valid_claims(sub=42, role=7))) == Identity("42", "7")
    assert verifier().verify(token({"exp": NOW + 1})) == Identity(None, None)


def test_empty_secret_refused() -> None:
    """A verifier cannot be built with an empty secret."""
    with pytest.raises(ValueError):
        JWTVerifier(b"", Clock())


def test_mint_token_round_trip() -> None:
    """mint_token makes a token the verifier accepts, with sub, role and exp as asked."""
    tok = mint_token(SECRET, sub="carol", now=NOW, ttl=120, role="operator")
    identity = verifier(NOW + 119).verify(tok.encode())
    assert identity == Identity(sub="carol", role="operator")
    assert identity.claims["exp"] == NOW + 120
    assert identity.claims["iat"] == NOW
    assert rejection(verifier(NOW + 120), tok.encode()).reason == "expired"


def test_mint_token_without_role_and_other_alg() -> None:
    """Without a role the claim is absent; HS512 minting is accepted too."""
    tok = mint_token(SECRET, sub="dave", now=NOW, algorithm="HS512")
    assert jwt.get_unverified_header(tok)["alg"] == "HS512"
    identity = verifier().verify(tok.encode())
    assert identity.role is None
    assert "role" not in identity.claims


class VerifiedTokenMemoryTests(SynchronousTestCase):
    """A token verified a moment ago is not verified again, but its times still are."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.verifier = JWTVerifier(SECRET, self.clock)
        self.decodes: list[bytes] = []
        real = jwt.decode

        def counting(token: Any, *args: Any, **kwargs: Any) -> Any:
            self.decodes.append(token)
            return real(token, *args, **kwargs)

        self.patch(jwt, "decode", counting)
        self.token = mint_token(SECRET, sub="poller", now=NOW, ttl=300).encode()

    def test_repeated_token_is_verified_once(self) -> None:
        """The second use of the same token answers from memory, with the same identity."""
        first = self.verifier.verify(self.token)
        second = self.verifier.verify(self.token)
        self.assertEqual(first, second)
        self.assertEqual(len(self.decodes), 1)

    def test_remembered_token_still_expires(self) -> None:
        """Once the clock passes exp, the remembered token is refused like any other."""
        self.verifier.verify(self.token)
        self.clock.advance(301)
        with self.assertRaises(TokenRejected) as caught:
            self.verifier.verify(self.token)
        self.assertEqual(caught.exception.reason, "expired")

    def test_memory_lasts_at_most_the_ttl(self) -> None:
        """After VERIFIED_TTL seconds the signature is checked again."""
        from opencue_gw.auth.bearer import VERIFIED_TTL

        self.verifier.verify(self.token)
        self.clock.advance(VERIFIED_TTL + 1)
        self.verifier.verify(self.token)
        self.assertEqual(len(self.decodes), 2)

    def test_a_different_signature_is_not_remembered(self) -> None:
        """A token that differs from a verified one in any byte is checked in full."""
        self.verifier.verify(self.token)
        head, payload, signature = self.token.split(b".")
        forged = b".".join(
            [head, payload, signature[:-2] + (b"AA" if signature[-2:] != b"AA" else b"BB")]
        )
        with self.assertRaises(TokenRejected):
            self.verifier.verify(forged)
        self.assertEqual(len(self.decodes), 2)
