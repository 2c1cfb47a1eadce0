# -*- test-case-name: tests.test_upstream -*-
"""
The gRPC side: one channel to Cuebot, and gRPC futures turned into Deferreds.

This is the only module that imports C{grpc}. A call never blocks a thread: grpcio
completes the future on its own completion-queue thread, the callback reads the result
there and hops to the reactor with C{callFromThread}. Cancelling the Deferred (Klein
does so when the client disconnects) cancels the RPC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from opencue_gw.errors import GatewayError
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.rpcs import Rpc

__all__ = ["CuebotClient", "UpstreamReply", "channel_options", "tls_credentials"]

MiB = 1024 * 1024
# Cuebot refuses requests above 100 MiB (grpc.max_message_bytes); failing on our side
# gives the client a clear message instead of a reset stream.
CUEBOT_MAX_INBOUND = 100 * MiB


@dataclass(frozen=True)
class UpstreamReply:
    """A successful answer and the response headers Cuebot sent with it."""

    message: Message
    headers: Sequence[tuple[str, str | bytes]]
    # The answer's size on the wire. Deciding where to encode a large answer needs it,
    # and message.ByteSize() would walk the whole message again (5 ms for 2,000 jobs).
    wire_size: int = -1


def _sized(parse: Callable[[bytes], Message]) -> Callable[[bytes], tuple[Message, int]]:
    """A response deserializer that also keeps the answer's size on the wire."""

    def deserialize(data: bytes) -> tuple[Message, int]:
        return parse(data), len(data)

    return deserialize


def channel_options(max_receive_bytes: int) -> list[tuple[str, Any]]:
    """
    Channel arguments for talking to Cuebot.

    The reconnect backoff is capped at a few seconds (grpc's default grows to two
    minutes), so a restarted Cuebot is back in service promptly; until then calls fail
    fast with UNAVAILABLE instead of waiting.
    """
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", CUEBOT_MAX_INBOUND),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 3000),
        ("grpc.primary_user_agent", "opencue-gateway"),
        ("grpc.enable_retries", 0),
    ]


class CuebotClient:
    """
    Calls any OpenCue RPC over a single shared channel.

    The channel is opened by L{open}, not by the constructor, so that a process which
    forks workers never shares a channel across the fork.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        reactor: IReactorFromThreads,
        target: str,
        *,
        max_receive_bytes: int = 256 * MiB,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
    ) -> None:
        self._reactor = reactor
        self.target = target
        self._max_receive_bytes = max_receive_bytes
        self._credentials = credentials
        self._server_name = server_name
        self._channel: grpc.Channel | None = None
        self._callables: dict[str, grpc.UnaryUnaryMultiCallable] = {}

    def open(self) -> None:
        """Create the channel. It connects lazily, on the first call."""
        if self._channel is not None:
            return
        options = channel_options(self._max_receive_bytes)
        if self._server_name:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.target, self._credentials, options=options)
        self.log.info("Cuebot channel to {target}", target=self.target)

    def close(self) -> None:
        """Close the channel; calls still in flight fail with CANCELLED."""
        channel, self._channel = self._channel, None
        self._callables.clear()
        if channel is not None:
            channel.close()

    def _callable(self, rpc: Rpc) -> grpc.UnaryUnaryMultiCallable:
        found = self._callables.get(rpc.path)
        if found is None:
            if self._channel is None:
                raise GatewayError(14, "the gateway is not connected to Cuebot")
            found = self._channel.unary_unary(
                rpc.path,
                request_serializer=rpc.request_class.SerializeToString,
                response_deserializer=_sized(rpc.response_class.FromString),
                _registered_method=True,
            )
            self._callables[rpc.path] = found
        return found

    def call(
        self,
        rpc: Rpc,
        request: Message,
        *,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> Deferred[UpstreamReply]:
        """
        Start C{rpc}; the Deferred fires with an L{UpstreamReply} or fails with a
        L{GatewayError} carrying Cuebot's status.
        """
        future = self._callable(rpc).future(request, timeout=timeout, metadata=metadata)

        def cancel(d: Deferred[UpstreamReply]) -> None:
            future.cancel()

        d: Deferred[UpstreamReply] = Deferred(cancel)

        def deliver(outcome: UpstreamReply | GatewayError) -> None:
            if d.called:
                return
            if isinstance(outcome, GatewayError):
                d.errback(outcome)
            else:
                d.callback(outcome)

        def done(completed: Any) -> None:
            # On grpc's thread: read everything here, touch Twisted only via the reactor.
            if completed.cancelled():
                return
            outcome: UpstreamReply | GatewayError
            try:
                message, size = completed.result()
                headers = tuple(completed.initial_metadata() or ())
                outcome = UpstreamReply(message, headers, size)
            except grpc.RpcError as error:
                outcome = _gateway_error(error)
            except Exception as error:  # a deserialisation failure, for instance
                outcome = GatewayError(13, f"bad answer from Cuebot: {error}")
            self._reactor.callFromThread(deliver, outcome)

        future.add_done_callback(done)
        return d


def tls_credentials(
    ca: bytes | None, client_cert: bytes | None, client_key: bytes | None
) -> grpc.ChannelCredentials:
    """
    TLS (or mutual TLS) credentials for a Cuebot behind a TLS terminator.

    Without a CA bundle the system's trust store is used.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=client_key, certificate_chain=client_cert
    )


def _gateway_error(error: grpc.RpcError) -> GatewayError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else None
    return GatewayError(int(code.value[0]), details or code.name, upstream=True)
