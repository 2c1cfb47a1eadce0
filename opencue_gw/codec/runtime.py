"""The helpers generated codec modules are written against: a small, stable, public API.

``python -m proto_gen.generate`` writes modules that import only the names listed here, so
the reference codec's internals can change without breaking a studio's generated codecs.
Everything here is the reference's own code, not a copy, which is what makes a generated
encoder write the same bytes as the reference:

* :class:`EnumNames`, a ``dict`` from an enum number to its quoted JSON name that writes an
  unnamed number (open enums) as the bare number.
* :func:`format_string`, :func:`format_bytes`, :func:`format_float32`, :func:`format_float64`:
  one value of a string, bytes, float or double field, as JSON text.
* :func:`message_text`: the JSON text of a message of a type the generated module does not
  cover, from the reference codec.
* :data:`SPECIAL_WELL_KNOWN_TYPES`: full names of the well-known types whose special JSON form
  neither codec implements; the generator skips them.

Adding a name here is a compatibility promise to every generated module; removing or changing
one means regenerating them.
"""

from __future__ import annotations

from opencue_gw.codec.formats import (
    EnumNames,
    format_bytes,
    format_float32,
    format_float64,
    format_string,
)
from opencue_gw.codec.reference import SPECIAL_WELL_KNOWN_TYPES, message_text

__all__ = [
    "SPECIAL_WELL_KNOWN_TYPES",
    "EnumNames",
    "format_bytes",
    "format_float32",
    "format_float64",
    "format_string",
    "message_text",
]
