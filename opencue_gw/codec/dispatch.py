"""Encode with a generated per-type encoder where one is in use, else with the reference.

:mod:`opencue_gw.codec.reference` is the reference (and the spec) for grpc-gateway-compatible
JSON; ``proto_gen`` holds encoders generated from the same descriptors that write the same
bytes several times faster, which matters for answers with thousands of frames or jobs.
:func:`encode` picks the generated encoder by message descriptor, so a type the generated
modules do not cover (a studio's own messages, a newer proto) still encodes correctly
through the reference.

The generated module is large (an encoder per OpenCue message type), so it is loaded the
first time something is encoded, not when this module is imported: an idle gateway, a
``--help`` or a test that never encodes does not pay for it.

Decoding is not dispatched: request bodies are small, and the reference decoder's error
messages are part of the API, so every decode goes through the reference.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from twisted.logger import Logger

from opencue_gw.codec.reference import encode_message
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = ["DEFAULT_CODECS", "GeneratedEncoders", "encode", "generated_types", "use_codecs"]

DEFAULT_CODECS = "proto_gen.opencue_codecs"

_Encoder = Callable[[Message], str]


class GeneratedEncoders:
    """The generated encoders in use, by message descriptor, loaded on first need.

    The table is replaced, never changed in place, so a thread encoding while another
    loads a module sees either the old table or the new one.
    """

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, default_module: str) -> None:
        self._default_module = default_module
        self._table: dict[Descriptor, _Encoder] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the default module has been loaded (for tests and diagnostics)."""
        return self._table is not None

    def table(self) -> dict[Descriptor, _Encoder]:
        """The encoders in use; the first call loads the default generated module."""
        table = self._table
        if table is None:
            with self._lock:
                table = self._table
                if table is None:
                    table = self._load_default()
                    self._table = table
        return table

    def use(self, module_name: str) -> list[str]:
        """Add the encoders of a generated module; return its stale proto modules (use_codecs)."""
        self.table()  # the default module first, so this one adds to it
        with self._lock:
            found, stale = self._load(module_name)
            assert self._table is not None
            self._table = {**self._table, **found}
        return stale

    def _load_default(self) -> dict[Descriptor, _Encoder]:
        """Load the default module; if it cannot be imported, log it and use the reference."""
        try:
            found, _stale = self._load(self._default_module)
        except ImportError as exc:
            self.log.error(
                "generated codecs {codecs} cannot be imported ({error}); "
                "every answer is encoded by the reference codec",
                codecs=self._default_module,
                error=str(exc),
            )
            return {}
        return found

    def _load(self, module_name: str) -> tuple[dict[Descriptor, _Encoder], list[str]]:
        """Import a generated module and ask it for its encoders, warning when it is stale."""
        module = importlib.import_module(module_name)
        found, stale = module.encoders()
        if stale:
            self.log.warn(
                "generated codecs {codecs} are stale for {stale}; using the reference codec; "
                "regenerate with python -m proto_gen.generate",
                codecs=module_name,
                stale=", ".join(stale),
            )
        return dict(found), list(stale)


_GENERATED = GeneratedEncoders(DEFAULT_CODECS)


def use_codecs(module_name: str) -> list[str]:
    """Load a module written by ``python -m proto_gen.generate`` and use its encoders.

    The default OpenCue codecs are loaded first, so a studio's module adds to them (and wins
    for a type both cover). Returns the names of the proto modules whose descriptors no
    longer match what the codecs were generated from; when there are any, none of that
    module's encoders is used (the reference codec covers those types) and a warning is
    logged.
    """
    return _GENERATED.use(module_name)


def generated_types() -> frozenset[str]:
    """Full names of the message types that have a generated encoder in use (loads them)."""
    return frozenset(d.full_name for d in _GENERATED.table())


def encode(msg: Message) -> bytes:
    """Encode ``msg`` as compact grpc-gateway v2 JSON bytes (same bytes as encode_message)."""
    fn = _GENERATED.table().get(msg.DESCRIPTOR)
    if fn is None:
        return encode_message(msg)
    return fn(msg).encode("utf-8")
