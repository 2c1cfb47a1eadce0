"""
Helpers for integration tests that drive the gateway's real resource tree in front of a
real gRPC server.

Requests go through StubTreq (no socket on the HTTP side) while the upstream is a real
gRPC server on loopback, so the test has to let the real reactor run until grpcio's
answer arrives; L{GatewayHarness.request} does that by flushing StubTreq's in-memory
connection until the response is complete.

Handler-level tests do not need any of this: L{opencue_gw.testing.GatewayUnderTest}
runs the same tree synchronously in front of a fake upstream, on a fake clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from opencue_gw.auth.tokens import mint_token
from opencue_gw.config import resolve_config
from opencue_gw.ops.health import PROBE_PATH, ReadinessProbe
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.tap import build_root_resource, cuebot_client_for, upstream_chain
from opencue_gw.testing import TEST_SECRET, HTTPReply
from opencue_gw.upstream.rpcs import load_rpcs

SECRET = TEST_SECRET
Reply = HTTPReply


def token(sub: str = "tester", role: str | None = "admin", ttl: float = 600.0, **kw: Any) -> str:
    """A valid token for the test secret."""
    return mint_token(kw.pop("secret", SECRET), sub=sub, role=role, now=time.time(), ttl=ttl, **kw)


class GatewayHarness:
    """The gateway's root resource wired to a real Cuebot client."""

    def __init__(self, target: str, **settings: Any) -> None:
        options: dict[str, Any] = {"cuebot": target}
        options.update(settings.pop("options", {}))
        env = {"JWT_SECRET": SECRET.decode()}
        config = resolve_config(options, env)
        config = replace(config, **settings)
        self.client = cuebot_client_for(config, reactor)
        self.client.open()
        self.in_flight = InFlight()
        self.config = config
        self.metrics = GatewayMetrics()
        self.probe = ReadinessProbe(self.client, load_rpcs()[PROBE_PATH], reactor)
        self.upstream = upstream_chain(config, self.client, reactor, self.metrics)
        self.resource = build_root_resource(
            config,
            reactor,
            self.upstream,
            self.in_flight,
            None,
            metrics=self.metrics,
            probe=self.probe,
        )
        self.stub = StubTreq(self.resource)

    def close(self) -> None:
        """Close the gRPC channel."""
        self.client.close()

    async def _settle(self, d: Deferred[Any], limit: float = 10.0) -> Any:
        outcome: list[Any] = []
        d.addBoth(lambda result: outcome.append(result))
        deadline = time.monotonic() + limit
        while True:
            self.stub.flush()
            if outcome:
                break
            if time.monotonic() > deadline:
                raise AssertionError("no answer from the gateway in time")
            await deferLater(reactor, 0.001, lambda: None)
        result = outcome[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        *,
        auth: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request through the tree and wait for the whole answer."""
        sent = dict(headers or {})
        if auth == "default":
            sent["Authorization"] = f"Bearer {token()}"
        elif auth is not None:
            sent["Authorization"] = auth
        if isinstance(body, dict):
            data: bytes | None = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        response = await self._settle(
            self.stub.request(method, "http://gateway.test" + path, data=data, headers=sent)
        )
        content = await self._settle(self.stub.content(response))
        return Reply(response.code, response.headers, content)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        """POST, the only method an RPC route takes."""
        return await self.request("POST", path, body if body is not None else b"{}", **kw)
