"""grpc-gateway v2 JSON for protobuf messages: the codec the gateway uses, and its parts.

Callers import from here; the modules behind it are:

* :mod:`~opencue_gw.codec.reference`: the reference codec, and the spec. Encodes any message
  by walking its descriptor, and decodes every request body (with the error messages
  clients see).
* :mod:`~opencue_gw.codec.dispatch`: :func:`encode` uses the generated encoder of a type
  when ``proto_gen`` has one (loaded on first use), else the reference.
* :mod:`~opencue_gw.codec.formats`: Go protojson's spelling of single values (floats,
  strings, bytes, enum names), shared by both kinds of encoder.
* :mod:`~opencue_gw.codec.runtime`: the public names generated modules import.

Importing this package builds no per-type table and does not import the generated module.
"""

from __future__ import annotations

from opencue_gw.codec.dispatch import encode, generated_types, use_codecs
from opencue_gw.codec.reference import (
    RequestDecodeError,
    decode_message,
    encode_message,
    encode_status,
)

__all__ = [
    "RequestDecodeError",
    "decode_message",
    "encode",
    "encode_message",
    "encode_status",
    "generated_types",
    "use_codecs",
]
