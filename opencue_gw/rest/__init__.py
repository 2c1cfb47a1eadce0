"""
Resource-style routes under C{/api/v1/}: the farm as shows, jobs, frames, layers and
hosts, for people and scripts that should not need the .proto files.

They are a second face of the same RPCs, declared as one table
(L{opencue_gw.rest.table}) and served by one handler, so they share the RPC routes'
authentication, deadlines, error bodies and JSON codec.
"""

from opencue_gw.rest.handler import bind_routes, install_resource_routes
from opencue_gw.rest.paging import DEFAULT_LIMIT, MAX_LIMIT
from opencue_gw.rest.spec import BoundRoute, Lookup, Param, Route
from opencue_gw.rest.table import ROUTES

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ROUTES",
    "BoundRoute",
    "Lookup",
    "Param",
    "Route",
    "bind_routes",
    "install_resource_routes",
]
