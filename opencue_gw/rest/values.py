# -*- test-case-name: tests.test_resources -*-
"""
Reading parameter values (query strings, JSON body members) into request fields.

Every refusal is a L{GatewayError} with gRPC code 3 (HTTP 400) whose message names the
parameter, because the caller of a resource route never sees the protobuf field names.
Query strings and JSON values go through the same rules so C{?state=DEAD} and
C{{"state": "DEAD"}} mean the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from opencue_gw.errors import GatewayError
from opencue_gw.rest.spec import FieldPath

__all__ = ["bad_parameter", "convert_values", "set_field"]

_INTEGER = re.compile(r"^[+-]?[0-9]{1,20}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_T = FieldDescriptor
_RANGES = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
_INT64_RANGE = (-(2**63), 2**63 - 1)


def bad_parameter(name: str, problem: str) -> GatewayError:
    """The 400 answer for a parameter the gateway cannot use."""
    return GatewayError.invalid_argument(f"invalid parameter {name!r}: {problem}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _flatten(name: str, target: FieldPath, raw: Sequence[Any]) -> list[Any]:
    values: list[Any] = []
    for item in raw:
        if isinstance(item, list):
            if not target.repeated:
                raise bad_parameter(name, "takes a single value, not a list")
            values.extend(item)
        elif isinstance(item, str) and target.repeated:
            values.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            values.append(item)
    if not target.repeated and len(values) > 1:
        raise bad_parameter(name, "given more than once")
    return values


def _integer(name: str, target: FieldPath, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad_parameter(name, f"expected an integer, got {_shown(value)}")
    if isinstance(value, str):
        if not _INTEGER.match(value.strip()):
            raise bad_parameter(name, f"expected an integer, got {_shown(value)}")
        value = int(value)
    low, high = _RANGES.get(target.leaf.type, _INT64_RANGE)
    if not low <= value <= high:
        raise bad_parameter(name, f"{value} is out of range")
    return value


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
    raise bad_parameter(name, f"expected true or false, got {_shown(value)}")


def _enum(name: str, target: FieldPath, value: Any) -> int:
    enum = target.enum
    assert enum is not None
    found = enum.values_by_name.get(value.strip().upper()) if isinstance(value, str) else None
    if found is None:
        names = ", ".join(v.name for v in enum.values)
        raise bad_parameter(name, f"unknown {enum.name} {_shown(value)} (one of {names})")
    return int(found.number)


def _one(name: str, target: FieldPath, value: Any) -> Any:
    kind = target.kind
    if kind == "integer":
        return _integer(name, target, value)
    if kind == "boolean":
        return _boolean(name, value)
    if kind == "enum":
        return _enum(name, target, value)
    if not isinstance(value, str):
        raise bad_parameter(name, f"expected a string, got {_shown(value)}")
    return value


def convert_values(name: str, target: FieldPath, raw: Sequence[Any]) -> list[Any]:
    """
    The field values for parameter C{name}: list items and comma-separated parts each
    count as one value of a repeated field; a single-valued field takes exactly one.
    """
    return [_one(name, target, value) for value in _flatten(name, target, raw)]


def set_field(message: Message, target: FieldPath, values: Sequence[Any]) -> None:
    """Put converted C{values} into C{message} at C{target}."""
    holder = target.container(message)
    if target.repeated:
        getattr(holder, target.leaf.name).extend(values)
    elif values:
        setattr(holder, target.leaf.name, values[-1])
