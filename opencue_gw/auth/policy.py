# -*- test-case-name: tests.test_policy -*-
"""
Which caller may call which RPC: the optional role policy file.

Without a policy every valid token may call everything, which is what the Go gateway
did and what today's clients expect. With one, a token's claims (C{role}, C{scope},
C{groups}) select roles from the file, and the call is let through only if one of those
roles allows the method (C{<package>.<Service>.<Method>}, fnmatch patterns) without that
role denying it, and no top-level C{deny} pattern matches. A token that selects no role
gets C{default_role} if the file names one, and nothing otherwise.

A role may be limited to some facilities (C{facilities = ["local"]}): in any other
facility it allows nothing, and a caller holding only such roles is refused there with
403 like any other refusal. The policy of one facility is L{Policy.for_facility}; each
facility's routes decide with their own.

The file is checked completely at start-up, including that every pattern matches at
least one RPC the gateway serves, and every facility a role names is one the gateway
serves: a mistyped deny pattern would otherwise grant quietly what it was written to
forbid.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from opencue_gw.auth.bearer import Identity

__all__ = ["Decision", "Policy", "PolicyError", "Role", "load_policy", "parse_policy"]

_TOP_KEYS = frozenset({"default_role", "deny", "roles"})
_ROLE_KEYS = frozenset(
    {
        "allow",
        "deny",
        "scopes",
        "groups",
        "facilities",
        "rate_limit_rps",
        "rate_limit_burst",
        "description",
    }
)
# Claim values are caller-controlled text; messages quote at most this much of them.
_SHOWN = 64


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the key (or line) at fault."""


@dataclass(frozen=True)
class Role:
    """One role of the file: what it may call and how fast."""

    name: str
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    rate: tuple[float, float] | None = None
    facilities: tuple[str, ...] = ()
    """The facilities this role applies in; empty: every facility."""

    def permits(self, method: str) -> bool:
        """Allowed by a pattern and not denied by one of this role's own."""
        return _matches(method, self.allow) and not _matches(method, self.deny)

    def applies_in(self, facility: str | None) -> bool:
        """Whether the role counts in C{facility} (None: no facility is known)."""
        return not self.facilities or facility is None or facility in self.facilities


@dataclass(frozen=True)
class Decision:
    """The answer for one call: allowed or not, the roles it was decided on, and why."""

    allowed: bool
    roles: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy file."""

    roles: Mapping[str, Role]
    deny: tuple[str, ...] = ()
    default_role: str | None = None
    source: str = "<policy>"
    facility: str | None = None
    """The facility this copy decides for (L{for_facility}); None: facilities ignored."""

    def for_facility(self, name: str) -> Policy:
        """
        The same policy deciding for calls to facility C{name}; itself when no role is
        limited to facilities, so a policy without them decides exactly as before.
        """
        if not any(role.facilities for role in self.roles.values()):
            return self
        return replace(self, facility=name)

    def roles_of(self, identity: Identity | None) -> tuple[str, ...]:
        """The file's roles the caller's claims select (the default role if none)."""
        if identity is None:
            return ()
        claims = identity.claims
        role_claim = set(_strings(claims.get("role")))
        scopes = set(_strings(claims.get("scope"), split=True))
        groups = set(_strings(claims.get("groups")))
        chosen = tuple(
            role.name
            for role in self.roles.values()
            if role.name in role_claim
            or scopes.intersection(role.scopes)
            or groups.intersection(role.groups)
        )
        if not chosen and self.default_role is not None:
            return (self.default_role,)
        return chosen

    def decide(self, identity: Identity | None, service: str, method: str) -> Decision:
        """Whether C{identity} may call C{service}/C{method}."""
        name = f"{service}.{method}"
        shown = f"{service}/{method}"
        roles = self.roles_of(identity)
        if not roles:
            claimed = identity.role if identity is not None else None
            who = f"role {claimed[:_SHOWN]!r}" if claimed else "a token without a role"
            return Decision(
                False, (), f"permission denied: {who} is not in the gateway's policy ({shown})"
            )
        facility = self.facility
        if facility is not None:
            usable = tuple(r for r in roles if self.roles[r].applies_in(facility))
            if not usable:
                plural = "roles" if len(roles) > 1 else "role"
                return Decision(
                    False,
                    roles,
                    f"permission denied: {plural} {', '.join(roles)} may not use facility "
                    f"{facility!r} ({shown})",
                )
            roles = usable
        label = ", ".join(roles)
        if _matches(name, self.deny):
            return Decision(False, roles, f"permission denied: {shown} is denied to every role")
        if any(self.roles[r].permits(name) for r in roles):
            return Decision(True, roles)
        plural = "roles" if len(roles) > 1 else "role"
        return Decision(False, roles, f"permission denied: {plural} {label} may not call {shown}")

    def rate_for(self, identity: Identity | None) -> tuple[float, float] | None:
        """
        The caller's rate override, C{(requests per second, burst)}, or C{None} for the
        limiter's default. With several roles the most generous rate applies.
        """
        rates = [rate for r in self.roles_of(identity) if (rate := self.roles[r].rate) is not None]
        return max(rates) if rates else None


def load_policy(
    path: str, methods: Iterable[str], facilities: Iterable[str] | None = None
) -> Policy:
    """
    Read and validate the file at C{path}; C{methods} are the served RPC names and
    C{facilities} the served facilities (None: any name is accepted).
    """
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise PolicyError(f"cannot read {path}: {error.strerror}") from None
    return parse_policy(text, methods, source=path, facilities=facilities)


def parse_policy(
    text: bytes,
    methods: Iterable[str],
    *,
    source: str = "<policy>",
    facilities: Iterable[str] | None = None,
) -> Policy:
    """Validate a policy document; every error names C{source} and the key at fault."""
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: invalid TOML: {error}") from None
    known = tuple(methods)
    _no_unknown_keys(document, _TOP_KEYS, source, "")
    tables = document.get("roles", {})
    if not isinstance(tables, dict) or not tables:
        raise PolicyError(f"{source}: [roles] must define at least one role")
    served = None if facilities is None else frozenset(facilities)
    roles = {name: _role(name, table, known, source, served) for name, table in tables.items()}
    default = document.get("default_role")
    if default is not None and default not in roles:
        raise PolicyError(f"{source}: default_role {default!r} is not a role of [roles]")
    return Policy(
        roles=roles,
        deny=_patterns(document, "deny", known, source, ""),
        default_role=default,
        source=source,
    )


def _role(
    name: str,
    table: object,
    known: Sequence[str],
    source: str,
    served: frozenset[str] | None,
) -> Role:
    where = f"roles.{name}"
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: {where} must be a table")
    _no_unknown_keys(table, _ROLE_KEYS, source, where + ".")
    if "allow" not in table:
        raise PolicyError(f"{source}: {where}.allow is missing (use [] to allow nothing)")
    return Role(
        name=name,
        allow=_patterns(table, "allow", known, source, where + "."),
        deny=_patterns(table, "deny", known, source, where + "."),
        scopes=_string_list(table, "scopes", source, where + "."),
        groups=_string_list(table, "groups", source, where + "."),
        rate=_rate(table, source, where),
        facilities=_facilities(table, source, where, served),
    )


def _facilities(
    table: Mapping[str, Any], source: str, where: str, served: frozenset[str] | None
) -> tuple[str, ...]:
    names = _string_list(table, "facilities", source, where + ".")
    if "facilities" in table and not names:
        raise PolicyError(f"{source}: {where}.facilities is empty (leave it out for every one)")
    for index, name in enumerate(names):
        if served is not None and name not in served:
            raise PolicyError(
                f"{source}: {where}.facilities[{index}] = {name!r} is not a facility the "
                f"gateway serves ({', '.join(sorted(served))})"
            )
    return names


def _rate(table: Mapping[str, Any], source: str, where: str) -> tuple[float, float] | None:
    rps = table.get("rate_limit_rps")
    burst = table.get("rate_limit_burst")
    if rps is None:
        if burst is not None:
            raise PolicyError(f"{source}: {where}.rate_limit_burst needs rate_limit_rps")
        return None
    for key, value in (("rate_limit_rps", rps), ("rate_limit_burst", burst)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise PolicyError(f"{source}: {where}.{key} must be a number above 0, got {value!r}")
    # Without a burst, a second's worth of requests may arrive at once.
    return float(rps), float(burst) if burst is not None else max(1.0, float(rps))


def _patterns(
    table: Mapping[str, Any], key: str, known: Sequence[str], source: str, where: str
) -> tuple[str, ...]:
    patterns = _string_list(table, key, source, where)
    normalised = []
    for index, pattern in enumerate(patterns):
        # "job.JobInterface/Kill" (the URL's spelling) means the same as the dotted form.
        dotted = pattern.replace("/", ".")
        if known and not any(fnmatchcase(m, dotted) for m in known):
            raise PolicyError(
                f"{source}: {where}{key}[{index}] = {pattern!r} matches no RPC the gateway "
                "serves (patterns are <package>.<Service>.<Method>, case-sensitive)"
            )
        normalised.append(dotted)
    return tuple(normalised)


def _string_list(table: Mapping[str, Any], key: str, source: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{source}: {where}{key} must be a list of non-empty strings")
    return tuple(value)


def _no_unknown_keys(
    table: Mapping[str, Any], allowed: frozenset[str], source: str, where: str
) -> None:
    for key in table:
        if key not in allowed:
            raise PolicyError(
                f"{source}: unknown key {where}{key} (expected one of {', '.join(sorted(allowed))})"
            )


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def _strings(value: object, *, split: bool = False) -> list[str]:
    """A claim as a list of strings: OAuth's C{scope} is one space-separated string."""
    if isinstance(value, str):
        return value.split() if split else [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
