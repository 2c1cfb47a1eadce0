# -*- test-case-name: tests.integration.test_keys -*-
"""
Which signing algorithms each kind of key may verify.

Algorithm confusion (an HS256 token "signed" with an RSA public key used as an HMAC
secret, or C{alg: none}) is only possible when the token's header chooses how the key is
used. Here the key decides: every L{VerifyingKey} carries the closed set of algorithms
its type supports, and the verifier refuses a token whose C{alg} is outside the set of
the key it was routed to. C{none} belongs to no set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "KNOWN_ALGORITHMS",
    "VerifyingKey",
    "hmac_key",
    "key_from_jwk",
    "load_public_key",
]

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# Each curve signs with exactly one ES algorithm (RFC 7518 section 3.4).
_EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
EDDSA_ALGORITHMS = ("EdDSA",)
ASYMMETRIC_ALGORITHMS = (*RSA_ALGORITHMS, *_EC_ALGORITHM_BY_CURVE.values(), *EDDSA_ALGORITHMS)
KNOWN_ALGORITHMS = frozenset((*HMAC_ALGORITHMS, *ASYMMETRIC_ALGORITHMS))

# JWK key types the gateway takes from a JWKS. "oct" (a shared secret) is left out on
# purpose: a symmetric key published at a URL is no secret.
_JWK_TYPES = frozenset({"RSA", "EC", "OKP"})


@dataclass(frozen=True)
class VerifyingKey:
    """A key and the only algorithms it may verify; C{kid} when it came from a JWKS."""

    key: Any = field(repr=False)
    algorithms: frozenset[str]
    kid: str | None = None


def hmac_key(secret: bytes) -> VerifyingKey:
    """The shared secret, for HS* tokens only."""
    return VerifyingKey(secret, frozenset(HMAC_ALGORITHMS))


def algorithms_for(key: object) -> frozenset[str]:
    """The algorithms a public key's type can verify; empty for anything else."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset(RSA_ALGORITHMS)
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHM_BY_CURVE.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset(EDDSA_ALGORITHMS)
    return frozenset()


def load_public_key(pem: bytes) -> VerifyingKey:
    """
    A PEM public key (or an X.509 certificate carrying one) as a L{VerifyingKey}.

    Raises C{ValueError} with a reason fit for a configuration error; a private key is
    refused so that an operator notices they copied the wrong file.
    """
    if b"PRIVATE KEY" in pem:
        raise ValueError("holds a private key; give the gateway the public key only")
    try:
        if b"BEGIN CERTIFICATE" in pem:
            key: object = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ValueError("is not a PEM public key or certificate") from None
    algorithms = algorithms_for(key)
    if not algorithms:
        raise ValueError(
            "holds a key type the gateway cannot verify with (use RSA, EC P-256/384/521 or Ed25519)"
        )
    return VerifyingKey(key, algorithms)


def key_from_jwk(jwk: Mapping[str, Any]) -> VerifyingKey | None:
    """
    One JWKS entry as a L{VerifyingKey}, or C{None} for an entry the gateway must not
    or cannot use (symmetric, encryption-only, unknown type or malformed).

    A JWK's own C{alg}, when present, narrows the key to that one algorithm.
    """
    if jwk.get("kty") not in _JWK_TYPES or jwk.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(dict(jwk)).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    algorithms = algorithms_for(key)
    declared = jwk.get("alg")
    if declared is not None:
        algorithms = algorithms & {declared}
    if not algorithms:
        return None
    kid = jwk.get("kid")
    return VerifyingKey(key, algorithms, kid if isinstance(kid, str) else None)
