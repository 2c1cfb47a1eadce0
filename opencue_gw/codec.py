"""The gateway's JSON codec: generated per-type encoders where they exist, else the reference.

:mod:`opencue_gw.jsoncodec` is the reference (and the spec) for grpc-gateway-compatible
JSON; :mod:`proto_gen` holds encoders generated from the same descriptors that write the
same bytes several times faster, which matters for answers with thousands of frames or
jobs. :func:`encode` picks the generated encoder by message descriptor, so a type the
generated modules do not cover (a studio's own messages, a newer proto) still encodes
correctly through the reference. Decoding always uses the reference: request bodies are
small, and its error messages are part of the API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from twisted.logger import Logger

from opencue_gw.jsoncodec import RequestDecodeError, decode_message, encode_message, encode_status
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = [
    "RequestDecodeError",
    "decode_message",
    "encode",
    "encode_status",
    "generated_types",
    "use_codecs",
]

log = Logger(observer=GATEWAY_OBSERVER)

DEFAULT_CODECS = "proto_gen.opencue_codecs"

_ENCODERS: dict[Descriptor, Callable[[Message], str]] = {}


def use_codecs(module_name: str) -> list[str]:
    """Load a module written by ``python -m proto_gen.generate`` and use its encoders.

    Returns the names of the proto modules whose descriptors no longer match what the
    codecs were generated from; when there are any, none of that module's encoders is
    used (the reference codec covers those types) and a warning is logged.
    """
    module = importlib.import_module(module_name)
    found, stale = module.encoders()
    if stale:
        log.warn(
            "generated codecs {codecs} are stale for {stale}; using the reference codec; "
            "regenerate with python -m proto_gen.generate",
            codecs=module_name,
            stale=", ".join(stale),
        )
    _ENCODERS.update(found)
    return list(stale)


def generated_types() -> frozenset[str]:
    """Full names of the message types that have a generated encoder in use."""
    return frozenset(d.full_name for d in _ENCODERS)


def encode(msg: Message) -> bytes:
    """Encode ``msg`` as compact grpc-gateway v2 JSON bytes (same bytes as encode_message)."""
    fn = _ENCODERS.get(msg.DESCRIPTOR)
    if fn is None:
        return encode_message(msg)
    return fn(msg).encode("utf-8")


use_codecs(DEFAULT_CODECS)
