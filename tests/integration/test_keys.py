"""
Tests for L{opencue_gw.auth.keys}, L{opencue_gw.auth.jwks} and the key sources of
L{opencue_gw.auth.bearer.JWTVerifier}: public keys, a JWKS served over a real local HTTP
server (cache ages on a L{Clock}), and hostile tokens through the real gateway tree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import Site

from opencue_gw.auth.bearer import JWTVerifier, TokenRejected
from opencue_gw.auth.jwks import JWKSCache, parse_jwks
from opencue_gw.auth.keys import VerifyingKey, key_from_jwk, load_public_key

from gwtest import SECRET, GatewayHarness
from upstreams import ScriptedCuebot

NOW = 1_700_000_000
_KEYS: dict[str, Any] = {}


def private_key(kind: str) -> Any:
    """One key of each kind per module: RSA generation is slow."""
    if kind not in _KEYS:
        _KEYS[kind] = {
            "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "rsa2": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate,
        }[kind]()
    return _KEYS[kind]


def public_pem(kind: str) -> bytes:
    return bytes(
        private_key(kind)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "role": "admin", "exp": NOW + 600}
    base.update(extra)
    return base


def signed(kind: str, alg: str, kid: str | None = None, **extra: Any) -> bytes:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**extra), private_key(kind), algorithm=alg, headers=headers).encode()


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hs256_by_hand(payload: dict[str, Any], key: bytes, alg: str = "HS256") -> bytes:
    """An HMAC-SHA256 signature over the token, whatever the key looks like."""
    signing_input = (
        b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        + b"."
        + b64url(json.dumps(payload).encode())
    )
    return signing_input + b"." + b64url(hmac.new(key, signing_input, hashlib.sha256).digest())


def clock_at(when: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(when)
    return clock


def reason(verifier: JWTVerifier, token: bytes) -> str:
    with pytest.raises(TokenRejected) as info:
        verifier.verify(token)
    return info.value.reason


@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("rsa", "RS256"),
        ("rsa", "RS512"),
        ("rsa", "PS256"),
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("ed25519", "EdDSA"),
    ],
)
def test_public_key_verifies_its_own_family(kind: str, alg: str) -> None:
    """A PEM public key verifies tokens of its own algorithm family."""
    verifier = JWTVerifier(None, clock_at(), public_key=load_public_key(public_pem(kind)))
    assert verifier.verify(signed(kind, alg)).sub == "alice"


@pytest.mark.parametrize(
    ("kind", "token_kind", "alg"),
    [
        ("rsa", "p256", "ES256"),  # an RSA key never checks an EC signature
        ("p256", "p384", "ES384"),  # a P-256 key signs ES256 only
        ("ed25519", "rsa", "RS256"),
    ],
)
def test_public_key_refuses_other_families(kind: str, token_kind: str, alg: str) -> None:
    """A token whose alg is outside the configured key's family is refused before any check."""
    verifier = JWTVerifier(None, clock_at(), public_key=load_public_key(public_pem(kind)))
    assert reason(verifier, signed(token_kind, alg)) == "algorithm"


def test_hmac_refused_without_a_secret() -> None:
    """With only a public key, an HS256 token is refused whatever its signature."""
    verifier = JWTVerifier(None, clock_at(), public_key=load_public_key(public_pem("rsa")))
    assert reason(verifier, jwt.encode(claims(), SECRET, algorithm="HS256").encode()) == "algorithm"


def test_hs_rs_confusion_with_public_key_pem_as_secret() -> None:
    """An HS256 token 'signed' with the RSA public PEM is refused, with or without a secret."""
    forged = hs256_by_hand(claims(), public_pem("rsa"))
    key = load_public_key(public_pem("rsa"))
    assert reason(JWTVerifier(None, clock_at(), public_key=key), forged) == "algorithm"
    assert reason(JWTVerifier(SECRET, clock_at(), public_key=key), forged) == "signature"


def test_issuer_and_audience_required_when_configured() -> None:
    """Configured iss/aud must be present and equal; aud may be a list containing ours."""
    verifier = JWTVerifier(
        None,
        clock_at(),
        public_key=load_public_key(public_pem("rsa")),
        issuer="https://idp.test",
        audience="opencue",
    )
    good = dict(iss="https://idp.test", aud=["other", "opencue"])
    assert verifier.verify(signed("rsa", "RS256", **good)).sub == "alice"
    assert reason(verifier, signed("rsa", "RS256", aud="opencue")) == "missing_iss"
    assert reason(verifier, signed("rsa", "RS256", iss="https://idp.test")) == "missing_aud"
    assert reason(verifier, signed("rsa", "RS256", iss="https://evil", aud="opencue")) == "issuer"
    assert reason(verifier, signed("rsa", "RS256", iss="https://idp.test", aud="x")) == "audience"


def test_issuer_not_checked_when_not_configured() -> None:
    """Without configured iss/aud, any values pass, as with the Go gateway."""
    verifier = JWTVerifier(None, clock_at(), public_key=load_public_key(public_pem("rsa")))
    assert verifier.verify(signed("rsa", "RS256", iss="anyone", aud="anything")).sub == "alice"


def test_private_key_file_refused() -> None:
    """A private key given as the public key is refused with a reason."""
    pem = private_key("p256").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="private key"):
        load_public_key(pem)


def test_jwks_entries_filtered() -> None:
    """Symmetric, encryption-only and malformed JWKs are dropped; a JWK's alg narrows its key."""
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key("rsa").public_key()))
    keys = parse_jwks(
        json.dumps(
            {
                "keys": [
                    {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},
                    {**rsa_jwk, "kid": "enc", "use": "enc"},
                    {"kty": "RSA", "kid": "broken", "n": "!!"},
                    {**rsa_jwk, "kid": "sig", "alg": "PS256"},
                ]
            }
        ).encode()
    )
    assert [(k.kid, k.algorithms) for k in keys] == [("sig", frozenset({"PS256"}))]
    assert key_from_jwk({"kty": "oct", "k": "c2VjcmV0"}) is None


# --- a JWKS over a real local HTTP server ---


def jwk(kind: str, kid: str) -> dict[str, Any]:
    public = private_key(kind).public_key()
    algorithm = (
        jwt.algorithms.RSAAlgorithm if kind.startswith("rsa") else jwt.algorithms.ECAlgorithm
    )
    return {**json.loads(algorithm.to_jwk(public)), "kid": kid, "use": "sig"}


class JWKSResource(Resource):
    """Serves whatever JWKS the test sets, counting fetches."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.hits = 0

    def render_GET(self, request: Any) -> bytes:
        self.hits += 1
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"keys": self.keys}).encode()


@pytest.fixture
def idp() -> Iterator[tuple[JWKSResource, str]]:
    """A JWKS endpoint on 127.0.0.1, and its URL."""
    resource = JWKSResource()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")  # type: ignore[attr-defined]
    yield resource, f"http://127.0.0.1:{port.getHost().port}/jwks.json"
    port.stopListening()


def cache(url: str, clock: Clock, **kw: Any) -> JWKSCache:
    return JWKSCache(url, clock, HTTPClient(Agent(reactor)), max_age=600, min_interval=30, **kw)


async def outcome(d: Deferred[VerifyingKey]) -> VerifyingKey | str:
    """The key, or the rejection reason."""
    try:
        return await d
    except TokenRejected as rejected:
        return rejected.reason


@pytest_twisted.ensureDeferred
async def test_jwks_cached_until_max_age(idp: tuple[JWKSResource, str]) -> None:
    """Keys are fetched once, served from the cache within the max age, refetched after it."""
    server, url = idp
    server.keys = [jwk("rsa", "k1")]
    clock = clock_at()
    keys = cache(url, clock)
    first = await outcome(keys.key_for("k1", "RS256"))
    assert isinstance(first, VerifyingKey) and first.kid == "k1"
    clock.advance(599)
    assert await outcome(keys.key_for("k1", "RS256")) is first
    assert server.hits == 1
    clock.advance(1)
    assert isinstance(await outcome(keys.key_for("k1", "RS256")), VerifyingKey)
    assert server.hits == 2


@pytest_twisted.ensureDeferred
async def test_unknown_kid_refresh_is_rate_limited(idp: tuple[JWKSResource, str]) -> None:
    """An unknown kid refetches at most once per min interval; a rotated key is then found."""
    server, url = idp
    server.keys = [jwk("rsa", "k1")]
    clock = clock_at()
    keys = cache(url, clock)
    await outcome(keys.key_for("k1", "RS256"))
    clock.advance(30)
    assert await outcome(keys.key_for("random-1", "RS256")) == "unknown_kid"
    assert server.hits == 2
    for n in range(20):
        assert await outcome(keys.key_for(f"random-{n}", "RS256")) == "unknown_kid"
    assert server.hits == 2
    server.keys = [jwk("rsa", "k1"), jwk("rsa2", "k2")]
    clock.advance(29)
    assert await outcome(keys.key_for("k2", "RS256")) == "unknown_kid"
    clock.advance(1)
    rotated = await outcome(keys.key_for("k2", "RS256"))
    assert isinstance(rotated, VerifyingKey) and rotated.kid == "k2"
    assert server.hits == 3


@pytest_twisted.ensureDeferred
async def test_concurrent_lookups_share_one_fetch(idp: tuple[JWKSResource, str]) -> None:
    """Lookups made while a fetch is under way wait for it instead of starting their own."""
    server, url = idp
    server.keys = [jwk("p256", "e1")]
    keys = cache(url, clock_at())
    pending = [keys.key_for("e1", "ES256") for _ in range(5)]
    found = [await outcome(d) for d in pending]
    assert all(isinstance(k, VerifyingKey) and k.kid == "e1" for k in found)
    assert server.hits == 1


@pytest_twisted.ensureDeferred
async def test_idp_outage_keeps_known_keys(idp: tuple[JWKSResource, str]) -> None:
    """A failed refetch keeps the stale keys; with no keys ever fetched, tokens are refused."""
    server, url = idp
    server.status = 500
    clock = clock_at()
    keys = cache(url, clock)
    assert await outcome(keys.key_for("k1", "RS256")) == "keys_unavailable"
    server.status = 200
    server.keys = [jwk("rsa", "k1")]
    clock.advance(30)
    assert isinstance(await outcome(keys.key_for("k1", "RS256")), VerifyingKey)
    server.status = 500
    clock.advance(601)
    assert isinstance(await outcome(keys.key_for("k1", "RS256")), VerifyingKey)
    assert server.hits == 3


@pytest_twisted.ensureDeferred
async def test_jwks_key_bound_to_its_family(idp: tuple[JWKSResource, str]) -> None:
    """A kid naming an RSA key cannot be used with an ES256 or HS256 token."""
    server, url = idp
    server.keys = [jwk("rsa", "k1")]
    keys = cache(url, clock_at())
    assert await outcome(keys.key_for("k1", "ES256")) == "algorithm"
    verifier = JWTVerifier(None, clock_at(), jwks=keys)
    hs = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "k1"}).encode()
    assert reason(verifier, hs) == "algorithm"


# --- hostile tokens through the gateway ---


def gateway_token(raw: bytes) -> str:
    return "Bearer " + raw.decode()


def now_claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "mallory",
        "role": "admin",
        "exp": int(time.time()) + 600,
        "iss": "https://idp.test",
        "aud": "opencue",
    }
    base.update(extra)
    return base


def rs256(payload: dict[str, Any], kind: str = "rsa", kid: str | None = None) -> bytes:
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, private_key(kind), algorithm="RS256", headers=headers).encode()


def tampered() -> bytes:
    header, _, signature = rs256(now_claims(role="viewer")).split(b".")
    return header + b"." + b64url(json.dumps(now_claims()).encode()) + b"." + signature


HOSTILE = {
    "hs_rs_confusion": lambda: hs256_by_hand(now_claims(), public_pem("rsa")),
    "wrong_key": lambda: rs256(now_claims(), kind="rsa2"),
    "expired": lambda: rs256(now_claims(exp=int(time.time()) - 5)),
    "wrong_issuer": lambda: rs256(now_claims(iss="https://evil.test")),
    "wrong_audience": lambda: rs256(now_claims(aud="someone-else")),
    "tampered_payload": tampered,
    "alg_none": lambda: (
        b64url(b'{"alg":"none","typ":"JWT"}')
        + b"."
        + b64url(json.dumps(now_claims()).encode())
        + b"."
    ),
}


@pytest.fixture
def keyed_gateway(scripted: ScriptedCuebot, tmp_path: Path) -> Iterator[GatewayHarness]:
    """The gateway with the HMAC secret and an RSA public key, issuer and audience set."""
    pem = tmp_path / "idp.pem"
    pem.write_bytes(public_pem("rsa"))
    harness = GatewayHarness(
        scripted.address,
        options={"jwt-public-key": str(pem), "jwt-issuer": "https://idp.test"},
        jwt_audience="opencue",
    )
    yield harness
    harness.close()


@pytest_twisted.ensureDeferred
async def test_public_key_token_reaches_cuebot(
    scripted: ScriptedCuebot, keyed_gateway: GatewayHarness
) -> None:
    """A well-formed RS256 token with the right iss and aud is let through."""
    reply = await keyed_gateway.post(
        "/show.ShowInterface/GetShows", auth=gateway_token(rs256(now_claims()))
    )
    assert reply.status == 200, reply.body
    assert [s.method for s in scripted.seen] == ["/show.ShowInterface/GetShows"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest_twisted.ensureDeferred
async def test_hostile_token_is_401_and_never_reaches_cuebot(
    name: str, scripted: ScriptedCuebot, keyed_gateway: GatewayHarness
) -> None:
    """Each hostile token gets 401 code 16 and Cuebot sees nothing."""
    raw = HOSTILE[name]()
    reply = await keyed_gateway.post("/job.JobInterface/Kill", auth=gateway_token(raw))
    assert reply.status == 401, reply.body
    assert reply.json()["code"] == 16
    assert raw.decode() not in reply.body.decode()
    assert scripted.seen == []


@pytest_twisted.ensureDeferred
async def test_jwks_gateway_unknown_kid(
    scripted: ScriptedCuebot, idp: tuple[JWKSResource, str]
) -> None:
    """Through the gateway, a JWKS-signed token passes and one with an unknown kid is 401."""
    server, url = idp
    server.keys = [jwk("rsa", "k1")]
    harness = GatewayHarness(scripted.address, options={"jwks-url": url})
    try:
        good = await harness.post(
            "/show.ShowInterface/GetShows", auth=gateway_token(rs256(now_claims(), kid="k1"))
        )
        bad = await harness.post(
            "/job.JobInterface/Kill",
            auth=gateway_token(rs256(now_claims(), kind="rsa2", kid="nope")),
        )
    finally:
        harness.close()
    assert good.status == 200, good.body
    assert bad.status == 401 and bad.json()["message"] == "token is unverifiable: unknown key id"
    assert [s.method for s in scripted.seen] == ["/show.ShowInterface/GetShows"]
