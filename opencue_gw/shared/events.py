# -*- test-case-name: tests.integration.test_redis_events -*-
"""
The event stream shared across gateway instances through Redis: one instance polls a
scope, every instance with subscribers to it receives the changes.

Each scope has a lease in Redis (C{SET NX PX}, renewed by a compare-and-set script).
Every instance watching the scope runs L{SharedEvents.attempt} on a timer of its own,
three times an interval with a time to live of two thirds of one (the numbers, and why,
are in L{opencue_gw.events.scopes.Lease}); the
one that holds the lease polls Cuebot, diffs, and publishes the batch of events with
L{SharedEvents.publish}, which (in one script) checks the lease is still its own, takes
the batch's ids from a counter shared by every scope of the facility, and PUBLISHes it
on the scope's channel. Every instance, the publisher included, hands the batch to its
subscribers when it comes back on its subscriber connection: Redis delivers published
messages in the order the scripts ran, so each instance sees the same events with the
same ids in the same order. A holder that stops watching deletes its lease; one that
dies leaves it to expire (C{ttl}), and another watcher takes it at its next attempt:
within one interval of the death in all.

The attempt also raises the counter to the instance's own last id, so ids never go
backwards for a client whose instance numbered events itself while Redis was away.

Redis stays an optimisation: while the store is not up, or this instance is not
listening on the scope's channel, the hub polls for itself (see
L{opencue_gw.events.hub}).
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError, Message
from opencue_proto import host_pb2, job_pb2
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from opencue_gw.errors import GatewayError
from opencue_gw.events.diff import frame_item, host_item, job_item, layer_item
from opencue_gw.events.model import Event, Item, ScopeKey
from opencue_gw.logs import GATEWAY_OBSERVER
from opencue_gw.shared.store import Script, SharedStore, SharedStoreUnavailable

__all__ = ["Batch", "SharedEvents", "decode_batch", "encode_batch"]

# KEYS: lease, id counter. ARGV: owner, ttl ms, floor (the caller's last id).
# 1: the caller holds the lease (taken or renewed), 0: another instance does.
_ATTEMPT = Script(
    """
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
if count < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
)
# KEYS: lease, id counter. ARGV: owner, ttl ms, floor, event count, channel, batch.
# The first id of the published batch, or -1 when the lease is no longer the caller's.
_PUBLISH = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
if count < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
local last = redis.call('INCRBY', KEYS[2], ARGV[4])
local first = last - tonumber(ARGV[4]) + 1
redis.call('PUBLISH', ARGV[5], ARGV[1] .. ' ' .. string.format('%d', first) .. ' ' .. ARGV[6])
return first
"""
)
# KEYS: lease. ARGV: owner. Give up a lease that is still the caller's.
_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

_MAGIC = b"OGE1"
_MESSAGES: dict[str, type[Message]] = {
    "job": job_pb2.Job,
    "layer": job_pb2.Layer,
    "frame": job_pb2.Frame,
    "host": host_pb2.Host,
}
# Reconnecting the subscriber connection: soon at first, at most once a second.
_RECONNECT = backoffPolicy(initialDelay=0.1, maxDelay=1.0)


class Batch:
    """One published batch as received: who published it, its events (with ids), and
    the items that left the publisher's snapshot."""

    def __init__(self, owner: str, events: list[Event], gone: list[str]) -> None:
        self.owner = owner
        self.events = events
        self.gone = gone


def encode_batch(events: Sequence[Event], gone: Sequence[str]) -> bytes:
    """A batch without its ids (the publish script numbers it): a JSON head, then each
    event's message (protobuf) and data (its JSON, as the stream writes it)."""
    head: dict[str, Any] = {"e": [], "g": list(gone)}
    blobs: list[bytes] = []
    for event in events:
        item = event.item
        message = item.message.SerializeToString()
        data = event.data
        head["e"].append([item.kind, item.job_id, list(event.changes), len(message), len(data)])
        blobs.append(message)
        blobs.append(data)
    encoded = json.dumps(head, separators=(",", ":")).encode("utf-8")
    return b"".join([_MAGIC, struct.pack(">I", len(encoded)), encoded, *blobs])


def _item(kind: str, job_id: str, message: Message) -> Item:
    if kind == "job":
        return job_item(message)  # type: ignore[arg-type]
    if kind == "layer":
        return layer_item(message, job_id)  # type: ignore[arg-type]
    if kind == "frame":
        return frame_item(message, job_id)  # type: ignore[arg-type]
    return host_item(message)  # type: ignore[arg-type]


def decode_batch(message: bytes) -> tuple[str, int, list[Event], list[str]] | None:
    """What the publish script sent: owner, first id, events (numbered) and gone ids;
    None if it is not a batch of ours."""
    try:
        owner, first, body = message.split(b" ", 2)
        first_id = int(first)
        if not body.startswith(_MAGIC):
            return None
        (size,) = struct.unpack_from(">I", body, len(_MAGIC))
        start = len(_MAGIC) + 4
        head = json.loads(body[start : start + size])
        offset = start + size
        events: list[Event] = []
        for index, (kind, job_id, changes, message_size, data_size) in enumerate(head["e"]):
            raw = body[offset : offset + message_size]
            offset += message_size
            data = bytes(body[offset : offset + data_size])
            offset += data_size
            item = _item(kind, job_id, _MESSAGES[kind].FromString(raw))
            events.append(Event(item, tuple(changes), first_id + index, _data=data))
        return owner.decode("ascii"), first_id, events, [str(g) for g in head["g"]]
    except (ValueError, KeyError, TypeError, DecodeError, struct.error):
        return None


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """The subscriber connection: messages go to the L{SharedEvents} that owns it."""

    factory: _SubscriberFactory

    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.owner.received(channel, message)

    def connectionMade(self) -> Any:
        d = super().connectionMade()
        self.whenConnected().addCallback(self.factory.owner.connected)
        return d

    def connectionLost(self, why: Failure) -> None:
        self.factory.owner.disconnected(self)
        super().connectionLost(why)


class _SubscriberFactory(Factory):
    """Builds L{_Subscriber}s logged in as the store's pool is."""

    isLazy = True

    def __init__(self, owner: SharedEvents) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Subscriber:
        address = self.owner.store.address
        protocol = _Subscriber(
            charset=None,
            password=address.password,
            username=address.username,
            dbid=None,
            convertNumbers=False,
        )
        protocol.factory = self
        return protocol

    def stopTrying(self) -> None:
        """Redis refused the login: the store's own probe reports that; stop here."""
        self.owner.stop()

    def connectionError(self, why: str) -> None:
        """Reported by the store's probe (same address, same login)."""


Handler = Callable[[ScopeKey, str, list[Event], list[str]], None]


class SharedEvents:
    """
    Leases, publishing and the subscriber connection of one facility's event hub.

    C{handler(key, owner, events, gone)} receives each batch published on a watched
    scope's channel. C{owner} is this instance's name in the leases (unique per hub).
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(
        self,
        store: SharedStore,
        reactor: IReactorTime,
        prefix: str = "ocgw:",
        *,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self._reactor = reactor
        self._prefix = prefix
        self.owner = owner if owner is not None else uuid.uuid4().hex
        # One hash tag: the keys of a facility's events live in one slot of a Cluster.
        self._counter = f"{prefix}{{ev}}:id".encode()
        self.handler: Handler | None = None
        self.error_handler: Callable[[ScopeKey, str, GatewayError | None], None] | None = None
        self._channels: dict[bytes, ScopeKey] = {}
        self._listening: set[bytes] = set()
        self._protocol: _Subscriber | None = None
        self._service: ClientService | None = None

    # --- names

    def _lease(self, key: ScopeKey) -> bytes:
        return f"{self._prefix}{{ev}}:lease:{key[0]}:{key[1]}".encode()

    def channel(self, key: ScopeKey) -> bytes:
        """The scope's channel; pub/sub ignores SELECT, so the database is in the name."""
        return f"{self._prefix}ev:{self.store.address.db}:{key[0]}:{key[1]}".encode()

    # --- leases and publishing

    def attempt(self, key: ScopeKey, floor: int, ttl: float) -> Deferred[bool]:
        """Take or renew the lease of C{key}: whether this instance polls it now.
        Fails with L{SharedStoreUnavailable} while Redis is away."""
        d = self.store.run(
            _ATTEMPT, [self._lease(key), self._counter], [self.owner, _ms(ttl), floor]
        )
        return d.addCallback(lambda held: int(held) == 1)

    def publish(
        self, key: ScopeKey, events: Sequence[Event], gone: Sequence[str], floor: int, ttl: float
    ) -> Deferred[int | None]:
        """Publish a batch if the lease is still ours: its first id, or None."""
        d = self.store.run(
            _PUBLISH,
            [self._lease(key), self._counter],
            [
                self.owner,
                _ms(ttl),
                floor,
                len(events),
                self.channel(key),
                encode_batch(events, gone),
            ],
        )
        return d.addCallback(lambda first: None if int(first) < 0 else int(first))

    def release(self, key: ScopeKey) -> Deferred[None]:
        """Give the lease of C{key} up (when this instance stops watching it); fires
        when done or given up (never fails)."""
        if not self.store.up:
            return succeed(None)
        d = self.store.run(_RELEASE, [self._lease(key)], [self.owner])
        return d.addCallbacks(lambda _: None, self._quiet)

    # --- the subscriber connection

    def listening(self, key: ScopeKey) -> bool:
        """Whether batches published on C{key}'s channel reach this instance now."""
        return self.channel(key) in self._listening

    def watch(self, key: ScopeKey) -> None:
        """Subscribe to C{key}'s channel (connecting first if need be)."""
        channel = self.channel(key)
        self._channels[channel] = key
        if self._service is None:
            self._service = ClientService(
                self._endpoint(),
                _SubscriberFactory(self),
                retryPolicy=_RECONNECT,
                clock=self._reactor,
            )
            self._service.startService()
        elif self._protocol is not None:
            self._subscribe(self._protocol, [channel])

    def unwatch(self, key: ScopeKey) -> None:
        """Unsubscribe from C{key}'s channel."""
        channel = self.channel(key)
        self._channels.pop(channel, None)
        self._listening.discard(channel)
        protocol = self._protocol
        if protocol is not None and protocol.connected:
            protocol.unsubscribe([channel]).addErrback(self._quiet)

    def stop(self) -> Deferred[None] | None:
        """Close the subscriber connection and stop reconnecting."""
        service, self._service = self._service, None
        self._listening.clear()
        self._protocol = None
        if service is None:
            return None
        return service.stopService()  # type: ignore[no-any-return]

    # called by the subscriber connection

    def connected(self, protocol: _Subscriber) -> None:
        """Logged in: subscribe to every watched channel."""
        if self._service is None:
            protocol.transport.loseConnection()
            return
        self._protocol = protocol
        if self._channels:
            self._subscribe(protocol, list(self._channels))

    def disconnected(self, protocol: _Subscriber) -> None:
        """The connection is gone: nothing is heard until it is back."""
        if self._protocol is protocol:
            self._protocol = None
            self._listening.clear()

    def received(self, channel: bytes, message: bytes) -> None:
        """A published batch: to the hub, if it still watches the scope."""
        key = self._channels.get(channel)
        if key is None or self.handler is None:
            return
        if message.split(b" ", 2)[1:2] == [b"E"]:
            self._heard_error(key, message)
            return
        batch = decode_batch(message)
        if batch is None:
            self.log.warn("Ignored an unreadable event batch on {channel}", channel=channel)
            return
        owner, _, events, gone = batch
        self.handler(key, owner, events, gone)

    def publish_error(self, key: ScopeKey, error: GatewayError | None) -> None:
        """Tell the other instances that the holder's poll of C{key} fails (or, with
        None, works again). Not part of the history: no id."""
        body = {} if error is None else {"code": int(error.code), "message": error.message}
        message = b"%s E %s" % (self.owner.encode("ascii"), json.dumps(body).encode("utf-8"))
        self.store.command("PUBLISH", self.channel(key), message).addErrback(self._quiet)

    def _heard_error(self, key: ScopeKey, message: bytes) -> None:
        if self.error_handler is None:
            return
        owner, _, body = message.split(b" ", 2)
        try:
            told = json.loads(body)
            error = GatewayError(int(told["code"]), str(told["message"])) if told else None
        except (ValueError, KeyError, TypeError):
            self.log.warn("Ignored an unreadable event error on {channel}", channel=key)
            return
        self.error_handler(key, owner.decode("ascii", "replace"), error)

    def _subscribe(self, protocol: _Subscriber, channels: list[bytes]) -> None:
        def subscribed(_: object) -> None:
            if self._protocol is protocol:
                self._listening.update(c for c in channels if c in self._channels)

        protocol.subscribe(channels).addCallbacks(subscribed, self._quiet)

    def _endpoint(self) -> Any:
        address = self.store.address
        if address.scheme == "unix":
            return UNIXClientEndpoint(self._reactor, address.path, timeout=2)
        endpoint: Any = HostnameEndpoint(self._reactor, address.host, address.port, timeout=2)
        if address.scheme == "rediss":
            trust = None
            if address.ca_file is not None:
                with open(address.ca_file, "rb") as pem:
                    trust = Certificate.loadPEM(pem.read())
            endpoint = wrapClientTLS(optionsForClientTLS(address.host, trustRoot=trust), endpoint)
        return endpoint

    def _quiet(self, failure: Failure) -> None:
        # Redis away or the connection lost: the hub polls for itself meanwhile.
        if failure.check(SharedStoreUnavailable, txredisapi.ConnectionError, ConnectionError):
            return
        self.log.failure("Event sharing through Redis failed", failure)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
