# -*- test-case-name: tests.test_resources -*-
"""
The one paging scheme of the resource routes' list answers.

Every list answer is C{{"items": [...], "page": P, "limit": L, "nextPage": N}}:
C{page} counts from 1, C{limit} defaults to L{DEFAULT_LIMIT} and may not exceed
L{MAX_LIMIT}, and C{nextPage} is the page to ask for next or C{null} at the end. Frame
lists are paged by Cuebot (C{FrameSearchCriteria.page}/C{limit}), which does not say how
many frames match, so their C{nextPage} is given whenever a page came back full (the
page after a full last page is then empty). Every other list is fetched whole from
Cuebot and sliced here, where the end is known exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from opencue_gw.codec import encode
from opencue_gw.rest.spec import resolve_field
from opencue_gw.rest.values import bad_parameter

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "PAGING_PARAMS", "Paging", "envelope"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PAGING_PARAMS = ("page", "limit")


@dataclass(frozen=True)
class Paging:
    """The page a caller asked for."""

    page: int = 1
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_params(cls, raw: Mapping[str, Sequence[Any]]) -> Paging:
        """Read C{page} and C{limit}; refuse non-integers and out-of-range values."""
        page = _positive(raw, "page", 1, None)
        limit = _positive(raw, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        return cls(page, limit)

    @property
    def offset(self) -> int:
        """Items before this page."""
        return (self.page - 1) * self.limit

    def ask_upstream(self, request: Message, criteria: str) -> None:
        """Let Cuebot page: set C{page} and C{limit} of the criteria at C{criteria}."""
        for name, value in (("page", self.page), ("limit", self.limit)):
            target = resolve_field(request.DESCRIPTOR, f"{criteria}.{name}")
            setattr(target.container(request), name, value)


def _positive(raw: Mapping[str, Sequence[Any]], name: str, default: int, most: int | None) -> int:
    values = raw.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise bad_parameter(name, "given more than once")
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad_parameter(name, f"expected an integer, got {value!r}")
    text = str(value).strip()
    if not text.isdigit() or len(text) > 9:
        raise bad_parameter(name, f"expected a positive integer, got {text[:40]!r}")
    number = int(text)
    if number < 1:
        raise bad_parameter(name, "must be at least 1")
    if most is not None and number > most:
        raise bad_parameter(name, f"must be at most {most}")
    return number


def envelope(items: Sequence[Message], paging: Paging, *, sliced: bool) -> bytes:
    """
    The list answer. C{sliced} means C{items} is the whole list and this page is cut
    from it; otherwise C{items} already is the page Cuebot returned.
    """
    if sliced:
        page = items[paging.offset : paging.offset + paging.limit]
        more = paging.offset + paging.limit < len(items)
    else:
        page = items
        more = len(items) >= paging.limit
    next_page = str(paging.page + 1) if more else "null"
    return b"".join(
        (
            b'{"items":[',
            b",".join(encode(item) for item in page),
            b'],"page":%d,"limit":%d,"nextPage":%s}'
            % (paging.page, paging.limit, next_page.encode("ascii")),
        )
    )
