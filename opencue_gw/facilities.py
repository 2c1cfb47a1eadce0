# -*- test-case-name: tests.test_facilities -*-
"""
Facilities: the OpenCue sites one gateway serves, each with its own Cuebot replicas.

A facility is a name and a list of Cuebot replicas (C{HOST:PORT}, each possibly a DNS
name with several addresses). The default facility is C{--cuebot}'s, named by
C{--default-facility}; the others come from C{--facility NAME=HOST:PORT[,...]}
(repeatable), C{CUEBOT_FACILITIES} (C{NAME=...;NAME=...}) and a TOML file
(C{--facilities-file}):

    [facilities.local]
    cuebots = ["cuebot-a:8443", "cuebot-b:8443"]

    [facilities.cloud]
    cuebots = ["cuebot-c:8443"]

A request chooses its facility by a path prefix, C{/<facility>/<package>.<Service>/<Method>}
or C{/<facility>/api/v1/...}, so each of CueWeb's per-facility gateway URLs can be this
one gateway with its prefix. A request without a prefix goes to the default facility,
exactly as before facilities existed. The router strips the prefix
(L{opencue_gw.http.router.Router.resolve}) and each facility has its own routes, upstream
chain and event source (L{opencue_gw.tap}).

This module only reads and checks the settings: it builds nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opencue_gw.settings import FacilityName, HostPortList

__all__ = ["FacilitySpec", "load_facilities_file", "resolve_facilities"]

_FILE_KEYS = frozenset({"facilities"})
_FACILITY_KEYS = frozenset({"cuebots", "description"})


@dataclass(frozen=True)
class FacilitySpec:
    """One facility as configured: its name and its Cuebot replicas."""

    name: str
    replicas: tuple[str, ...]

    @property
    def target(self) -> str:
        """The replicas as C{--cuebot} takes them: C{HOST:PORT[,HOST:PORT...]}."""
        return ",".join(self.replicas)


def load_facilities_file(path: str) -> tuple[tuple[str, str], ...]:
    """
    The facilities of a TOML file as C{(name, "HOST:PORT,...")} pairs, in file order.
    Raises C{ValueError} naming the file and the key at fault.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: invalid TOML: {error}") from None
    for key in document:
        if key not in _FILE_KEYS:
            raise ValueError(f"{path}: unknown key {key} (expected [facilities.NAME] tables)")
    tables = document.get("facilities")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{path}: [facilities.NAME] must define at least one facility")
    found = []
    for name, table in tables.items():
        where = f"facilities.{name}"
        if not isinstance(table, dict):
            raise ValueError(f"{path}: {where} must be a table")
        for key in table:
            if key not in _FACILITY_KEYS:
                raise ValueError(f"{path}: unknown key {where}.{key} (expected cuebots)")
        cuebots = table.get("cuebots")
        if not isinstance(cuebots, list) or not cuebots:
            raise ValueError(f'{path}: {where}.cuebots must list "HOST:PORT" strings')
        if not all(isinstance(c, str) for c in cuebots):
            raise ValueError(f'{path}: {where}.cuebots must list "HOST:PORT" strings')
        try:
            found.append((FacilityName()(name), HostPortList()(",".join(cuebots))))
        except ValueError as error:
            raise ValueError(f"{path}: {where}: {error}") from None
    return tuple(found)


def resolve_facilities(
    default_name: str,
    cuebot: str,
    *,
    cuebot_given: bool,
    named: Iterable[tuple[str, str]],
) -> tuple[FacilitySpec, ...]:
    """
    Every facility, the default first. C{cuebot} is C{--cuebot}'s replica list and
    C{cuebot_given} whether it was set (not defaulted); C{named} are the other sources.

    The default facility is C{--cuebot}'s unless a facility of the default's name is
    given elsewhere, in which case C{--cuebot} must not be set as well: which of the two
    was meant could only be guessed.
    """
    others: dict[str, FacilitySpec] = {}
    for name, replicas in named:
        if name in others:
            raise ValueError(f"facility {name!r} is given twice")
        others[name] = FacilitySpec(name, tuple(replicas.split(",")))
    default = others.pop(default_name, None)
    if default is None:
        default = FacilitySpec(default_name, tuple(cuebot.split(",")))
    elif cuebot_given:
        raise ValueError(
            f"facility {default_name!r} is the default facility and is also given with "
            "--cuebot (CUEBOT_ENDPOINT); give its Cuebots once"
        )
    return (default, *others.values())
