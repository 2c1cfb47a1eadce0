# -*- test-case-name: tests.test_edge -*-
"""
The base of the gateway's wrapping resources.

Each layer (edge, guard, rate limit, caller, docs) answers for the whole path below
it: routing happens once, on the full path, in the Klein app further in. None of them
has children to look up or to be given.
"""

from __future__ import annotations

import abc
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

__all__ = ["LeafResource"]


@implementer(IResource)
class LeafResource(abc.ABC):
    """A resource that renders every request that reaches it, whatever the path."""

    isLeaf = True

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        """Never asked, since this is a leaf; L{IResource} requires it."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Nothing is mounted below a leaf."""
        raise ValueError(f"{type(self).__name__} does not take children")

    @abc.abstractmethod
    def render(self, request: Any) -> Any:
        """Answer the request: bytes, or C{NOT_DONE_YET} and answer later."""
