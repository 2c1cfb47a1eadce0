"""
Python clients of the gateway: L{AsyncGatewayClient} for Twisted programs and
L{GatewayClient} for scripts.

Both speak the resource routes for the common calls and the RPC routes for anything
else, find the gateway and the token in C{OPENCUE_GATEWAY_URL} and
C{OPENCUE_GATEWAY_TOKEN} (or C{OPENCUE_GATEWAY_TOKEN_FILE}) unless told, retry reads
that met an unavailable gateway and calls the rate limiter refused, and raise
L{GatewayClientError} carrying the gRPC code and the HTTP status.
"""

from opencue_gw.client.asyncclient import AsyncGatewayClient
from opencue_gw.client.core import (
    DEFAULT_URL,
    NO_RETRY,
    Call,
    GatewayClientError,
    RetryPolicy,
    resolve_token,
    resolve_url,
)
from opencue_gw.client.sse import StreamEvent
from opencue_gw.client.syncclient import GatewayClient

__all__ = [
    "DEFAULT_URL",
    "NO_RETRY",
    "AsyncGatewayClient",
    "Call",
    "GatewayClient",
    "GatewayClientError",
    "RetryPolicy",
    "StreamEvent",
    "resolve_token",
    "resolve_url",
]
