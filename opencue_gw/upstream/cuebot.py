# -*- test-case-name: tests.integration.test_recovery,tests.integration.test_replicas -*-
"""
The gRPC side: channels to Cuebot's replicas, and gRPC futures turned into Deferreds.

This is the only module that imports C{grpc}. A call never blocks a thread: grpcio
completes the future on its own completion-queue thread, the callback reads the result
there and hops to the reactor with C{callFromThread}. Cancelling the Deferred (Klein
does so when the client disconnects) cancels the RPC.

Replicas. C{--cuebot} takes several C{HOST:PORT} (C{cuebot1:8443,cuebot2:8443}), each
possibly a DNS name with several addresses. The balancing is gRPC's own C{round_robin}
policy (L{ROUND_ROBIN}), chosen over C{pick_first} after measuring both with two
simulators as replicas, one stopped and started again on its port under a load of reads:

 - C{round_robin} keeps a connection to every address and sends each call to the next
   one that is connected; a replica whose connection fails drops out of the rotation at
   once (its in-flight calls fail with UNAVAILABLE, later calls go to the others) and is
   back in it as soon as it reconnects: within 30 ms of listening again, since the channel
   retries every 180 ms (L{channel_options}). The load is spread over every replica.
 - C{pick_first} (gRPC's default) sends everything to one address and moves to the next
   only when that one fails; it never returns to the first, so a restarted replica stays
   idle and one replica carries the whole load.

gRPC's Python API has no way to give one channel several DNS names, only several literal
addresses (C{ipv4:a:p,b:p}). So L{grpc_targets} makes one channel of all the literal IPv4
addresses, one of the IPv6 ones, and one per DNS name (balanced over that name's
addresses); a single C{HOST:PORT} is one channel, as before. With several channels, the
client goes round them itself, leaving out a channel on which a call failed with
UNAVAILABLE before Cuebot answered until that channel is ready again
(C{grpc.channel_ready_future}); that is the only balancing written here.

A read that failed that way is sent once more, to another channel when there is one
that has not failed, else to the same one once it is ready again (with C{round_robin}
that is as soon as any of its addresses is connected, and the retry goes there). A
mutation is never sent twice: Cuebot may have carried it out.
"""

from __future__ import annotations

import ipaddress
import json
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
from opencue_gw.upstream.rpcs import Rpc

__all__ = [
    "ROUND_ROBIN",
    "CuebotClient",
    "UpstreamReply",
    "channel_options",
    "grpc_targets",
    "tls_credentials",
]

MiB = 1024 * 1024
# Cuebot refuses requests above 100 MiB (grpc.max_message_bytes); failing on our side
# gives the client a clear message instead of a reset stream.
CUEBOT_MAX_INBOUND = 100 * MiB
# Reconnection while Cuebot is away: an attempt every 180 ms (jittered to 144-216 ms),
# so a Cuebot that listens again answers within 250 ms; each attempt may take 5 s.
RECONNECT_INTERVAL_MS = 180
CONNECT_TIMEOUT_MS = 5000
# How long a read that failed with UNAVAILABLE waits for the channel to be ready before
# its one retry: a little more than the longest reconnection interval (216 ms).
READ_RETRY_WAIT = 0.3
# gRPC's round_robin policy over every address of a channel's target (module docstring).
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def grpc_targets(target: str) -> list[str]:
    """
    The channel targets for C{HOST:PORT[,HOST:PORT...]}: one for all the literal IPv4
    addresses (C{ipv4:a:p,b:p}), one for the IPv6 ones, one per DNS name. A single
    replica is its own target, unchanged.
    """
    replicas = [part.strip() for part in target.split(",") if part.strip()]
    if len(replicas) <= 1:
        return replicas
    ipv4: list[str] = []
    ipv6: list[str] = []
    names: list[str] = []
    for replica in replicas:
        host = replica.rpartition(":")[0]
        if host.startswith("["):
            ipv6.append(replica)
            continue
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            names.append(replica)
        else:
            ipv4.append(replica)
    targets = [f"ipv4:{','.join(ipv4)}"] if ipv4 else []
    if ipv6:
        targets.append(f"ipv6:{','.join(ipv6)}")
    return targets + names


@dataclass(frozen=True)
class UpstreamReply:
    """A successful answer and the response headers Cuebot sent with it."""

    message: Message
    headers: Sequence[tuple[str, str | bytes]]
    # The answer's size on the wire. Deciding where to encode a large answer needs it,
    # and message.ByteSize() would walk the whole message again (5 ms for 2,000 jobs).
    wire_size: int = -1


def wire_size(reply: Any) -> int:
    """A reply's protobuf size: as received when the upstream kept it, else computed."""
    size: int = getattr(reply, "wire_size", -1)
    return size if size >= 0 else int(reply.message.ByteSize())


def _sized(parse: Callable[[bytes], Message]) -> Callable[[bytes], tuple[Message, int]]:
    """A response deserializer that also keeps the answer's size on the wire."""

    def deserialize(data: bytes) -> tuple[Message, int]:
        return parse(data), len(data)

    return deserialize


def channel_options(max_receive_bytes: int) -> list[tuple[str, Any]]:
    """
    Channel arguments for talking to Cuebot.

    While Cuebot is away the channel tries to reconnect every L{RECONNECT_INTERVAL_MS}
    (grpc adds +/-20% jitter), without growing: at most about six attempts a second, and
    a restarted Cuebot is in service again within a quarter of a second of listening.
    grpc's default backoff grows to two minutes, and even a 3 s cap left the first
    answer 0.2-1 s after Cuebot was back. Calls fail fast with UNAVAILABLE meanwhile.

    C{grpc.min_reconnect_backoff_ms} is, despite its name, the least time one connection
    attempt may take (the connect deadline), not a pause: it stays long enough for a TLS
    handshake to a distant Cuebot. grpc's own retries stay off: a mutation must never be
    sent twice; L{CuebotClient} retries reads itself.
    """
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", CUEBOT_MAX_INBOUND),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_INTERVAL_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_INTERVAL_MS),
        ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ("grpc.primary_user_agent", "opencue-gateway"),
        ("grpc.enable_retries", 0),
        ("grpc.service_config", ROUND_ROBIN),
    ]


class CuebotClient:
    """
    Calls any OpenCue RPC over shared channels to C{target}'s replicas (usually one
    channel; see L{grpc_targets}).

    The channels are opened by L{open}, not by the constructor, so that a process which
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
        self._channels: list[grpc.Channel] = []
        self._callables: list[dict[str, grpc.UnaryUnaryMultiCallable]] = []
        # Channels on which a call failed before Cuebot answered, and the readiness
        # each waits for to come back into the rotation.
        self._failed: dict[int, Any] = {}
        self._next = 0

    @property
    def _channel(self) -> grpc.Channel | None:
        """The first channel (the only one for a single replica), or None when closed."""
        return self._channels[0] if self._channels else None

    def open(self) -> None:
        """Create the channels. They connect lazily, on the first call."""
        if self._channels:
            return
        options = channel_options(self._max_receive_bytes)
        if self._server_name:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        for target in grpc_targets(self.target):
            if self._credentials is None:
                channel = grpc.insecure_channel(target, options=options)
            else:
                channel = grpc.secure_channel(target, self._credentials, options=options)
            self._channels.append(channel)
            self._callables.append({})
        self.log.info("Cuebot channel to {target}", target=self.target)

    def close(self) -> None:
        """Close the channels; calls still in flight fail with CANCELLED."""
        channels, self._channels = self._channels, []
        self._callables = []
        failed, self._failed = self._failed, {}
        for waiting in failed.values():
            waiting.cancel()
        for channel in channels:
            channel.close()

    def _pick(self, avoid: int | None = None) -> int | None:
        """
        The channel for the next call: the next in turn that has not failed (and is not
        C{avoid}). Without C{avoid}, the next in turn if all have failed; with it, None.
        """
        count = len(self._channels)
        if count <= 1:
            return 0 if avoid is None else None
        start = self._next
        self._next = (start + 1) % count
        for step in range(count):
            index = (start + step) % count
            if index != avoid and index not in self._failed:
                return index
        return start if avoid is None else None

    def _failed_on(self, index: int) -> None:
        """
        A call on channel C{index} failed before Cuebot answered: leave the channel out
        until gRPC reports it ready (connected) again. Only with several channels; one
        channel's addresses are balanced by gRPC itself.
        """
        if len(self._channels) <= 1 or index in self._failed:
            return
        waiting = grpc.channel_ready_future(self._channels[index])
        self._failed[index] = waiting
        self.log.warn(
            "Cuebot replica {target} failed; other replicas answer until it is back",
            target=grpc_targets(self.target)[index],
        )
        waiting.add_done_callback(
            lambda ready: self._reactor.callFromThread(self._back, index, ready)
        )

    def _back(self, index: int, ready: Any) -> None:
        if ready.cancelled() or self._failed.get(index) is not ready:
            return
        del self._failed[index]
        self.log.info("Cuebot replica {target} is back", target=grpc_targets(self.target)[index])

    def _callable(self, rpc: Rpc, index: int = 0) -> grpc.UnaryUnaryMultiCallable:
        if index >= len(self._channels):
            raise GatewayError(14, "the gateway is not connected to Cuebot")
        callables = self._callables[index]
        found = callables.get(rpc.path)
        if found is None:
            found = self._channels[index].unary_unary(
                rpc.path,
                request_serializer=rpc.request_class.SerializeToString,
                response_deserializer=_sized(rpc.response_class.FromString),
                _registered_method=True,
            )
            callables[rpc.path] = found
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

        A read that fails with UNAVAILABLE before Cuebot sent anything back (the channel
        was down or its connection had just dropped) is tried once more: at once on
        another replica's channel if there is one that has not failed, else as soon as
        the channel is ready again but no later than L{READ_RETRY_WAIT}, within the same
        deadline. A read has no effect on the farm, so repeating it is safe; a mutation
        is never repeated. The wait follows grpc's own reconnection and adds no attempts.
        """
        index = self._pick()
        if index is None or not self._channels:
            raise GatewayError(14, "the gateway is not connected to Cuebot")
        return _Call(self, index, rpc, request, timeout, metadata).start()


class _Call:
    """One call to Cuebot, its Deferred, and a read's single retry."""

    def __init__(
        self,
        client: CuebotClient,
        index: int,
        rpc: Rpc,
        request: Message,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> None:
        self._client = client
        # The reactor's clock and its thread hand-off, both.
        reactor: Any = client._reactor
        self._reactor = reactor
        self._rpc = rpc
        self._index = index
        self._method = client._callable(rpc, index)
        self._may_retry = rpc.is_read
        self._request = request
        self._timeout = timeout
        self._metadata = metadata
        self._started = self._reactor.seconds()
        self._future: Any = None
        self._waiting: Any = None
        self._give_up: Any = None
        self.result: Deferred[UpstreamReply] = Deferred(self._cancel)

    def start(self) -> Deferred[UpstreamReply]:
        """Send the first attempt."""
        self._send(self._timeout)
        return self.result

    def _send(self, timeout: float | None) -> None:
        self._future = self._method.future(self._request, timeout=timeout, metadata=self._metadata)
        self._future.add_done_callback(self._done)

    def _cancel(self, d: Deferred[UpstreamReply]) -> None:
        self._may_retry = False
        if self._future is not None:
            self._future.cancel()
        self._stop_waiting()

    def _done(self, completed: Any) -> None:
        # On grpc's thread: read everything here, touch Twisted only via the reactor.
        if completed.cancelled():
            return
        outcome: UpstreamReply | GatewayError
        answered = True
        try:
            message, size = completed.result()
            headers = tuple(completed.initial_metadata() or ())
            outcome = UpstreamReply(message, headers, size)
        except grpc.RpcError as error:
            outcome = _gateway_error(error)
            answered = bool(completed.initial_metadata())
        except Exception as error:  # a deserialisation failure, for instance
            outcome = GatewayError(13, f"bad answer from Cuebot: {error}")
        self._reactor.callFromThread(self._deliver, outcome, answered)

    def _deliver(self, outcome: UpstreamReply | GatewayError, answered: bool) -> None:
        if self.result.called:
            return
        if isinstance(outcome, GatewayError):
            if outcome.code == 14 and not answered:
                self._client._failed_on(self._index)
                if self._may_retry:
                    self._may_retry = False
                    self._retry(outcome)
                    return
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)

    def _remaining(self) -> float | None:
        if self._timeout is None:
            return None
        return self._timeout - (self._reactor.seconds() - self._started)

    def _retry(self, first: GatewayError) -> None:
        other = self._client._pick(avoid=self._index)
        remaining = self._remaining()
        if other is None or (remaining is not None and remaining <= 0):
            self._retry_when_ready(first)
            return
        try:
            self._method = self._client._callable(self._rpc, other)
        except GatewayError:
            self.result.errback(first)
            return
        self._index = other
        self._send(remaining)

    def _retry_when_ready(self, first: GatewayError) -> None:
        channels = self._client._channels
        channel = channels[self._index] if self._index < len(channels) else None
        remaining = self._remaining()
        if channel is None or (remaining is not None and remaining <= 0):
            self.result.errback(first)
            return
        wait = READ_RETRY_WAIT if remaining is None else min(READ_RETRY_WAIT, remaining)
        self._give_up = self._reactor.callLater(wait, self._no_retry, first)
        self._waiting = grpc.channel_ready_future(channel)
        self._waiting.add_done_callback(
            lambda ready: self._reactor.callFromThread(self._ready, ready)
        )

    def _ready(self, ready: Any) -> None:
        if ready.cancelled() or self.result.called or self._waiting is not ready:
            return
        self._stop_waiting()
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            self.result.errback(GatewayError(4, "Deadline Exceeded", upstream=True))
            return
        self._send(remaining)

    def _no_retry(self, first: GatewayError) -> None:
        self._give_up = None
        self._stop_waiting()
        if not self.result.called:
            self.result.errback(first)

    def _stop_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
        give_up, self._give_up = self._give_up, None
        if give_up is not None and give_up.active():
            give_up.cancel()


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
