# -*- test-case-name: tests.test_auth -*-
"""
Minting tokens the gateway accepts: for the demo's ready-made token and for tests.

Same shape as CueWeb's (C{sub}, C{role}, C{iat}, C{exp}, HS256), so what works here
works from CueWeb too.
"""

from __future__ import annotations

import jwt

__all__ = ["mint_token"]


def mint_token(
    secret: bytes,
    *,
    sub: str,
    now: float,
    ttl: float = 3600.0,
    role: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """A signed token for C{sub}, valid from C{now} for C{ttl} seconds."""
    claims: dict[str, object] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm=algorithm)
