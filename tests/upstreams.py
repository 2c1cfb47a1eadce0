"""
A small scripted gRPC server speaking the OpenCue API, for behaviour the simulator has
no reason to model: slow answers, response headers, chosen error codes, and seeing the
metadata and cancellations that reach the server. It is a real grpcio server on
loopback, so the gateway's side of the wire is exercised for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from opencue_gw.upstream.rpcs import load_rpcs


@dataclass
class Script:
    """How the server answers one method."""

    delay: float = 0.0
    code: grpc.StatusCode | None = None
    details: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    reply: Callable[[Any], Any] | None = None


@dataclass
class Seen:
    """What one call looked like from the server."""

    method: str
    request: Any
    metadata: dict[str, str]
    peer: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class ScriptedCuebot:
    """Every Cuebot-side RPC, answered as the test scripts it (default: empty answer)."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        """C{credentials}: serve TLS (or mutual TLS) instead of plaintext."""
        self.scripts: dict[str, Script] = {}
        self.seen: list[Seen] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for rpc in load_rpcs().values():
            by_service.setdefault(rpc.service, {})[rpc.method] = (
                grpc.unary_unary_rpc_method_handler(
                    self._handler(rpc.path, rpc.response_class),
                    request_deserializer=rpc.request_class.FromString,
                    response_serializer=rpc.response_class.SerializeToString,
                )
            )
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]
        )
        if credentials is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    @property
    def address(self) -> str:
        """Where the server listens."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop at once."""
        self._server.stop(0).wait()

    def _handler(self, path: str, response_class: type) -> Callable[[Any, Any], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            seen = Seen(path, request, dict(context.invocation_metadata()), context.peer())
            context.add_callback(seen.done.set)
            self.seen.append(seen)
            script = self.scripts.get(path, Script())
            if script.headers:
                context.send_initial_metadata(script.headers)
            deadline = time.monotonic() + script.delay
            while time.monotonic() < deadline:
                if not context.is_active():
                    seen.cancelled.set()
                    return response_class()
                time.sleep(0.005)
            if script.code is not None:
                context.abort(script.code, script.details)
            return script.reply(request) if script.reply else response_class()

        return handle
