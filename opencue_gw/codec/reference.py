"""The reference JSON <-> protobuf codec: grpc-gateway v2's default marshaler, by descriptor.

The Go gateway this project replaces runs ``runtime.NewServeMux()`` with no options, so every
response is written by Go protojson with ``MarshalOptions{EmitUnpopulated: true}`` and every
request is read with ``UnmarshalOptions{DiscardUnknown: true}``. Existing clients (CueWeb and
others) depend on that exact shape, and Python's ``json_format`` differs from it in several ways
(unset messages are omitted rather than ``null``, float32 values are printed at double precision,
and the number formatting is different). This module therefore walks the message descriptors
itself.

This is the reference implementation (and the spec): one plan per message type, built from the
descriptor the first time the type is seen and then cached, so importing this module builds
nothing. Generated per-type encoders (``proto_gen``) must produce the same bytes.

One deliberate difference from protojson on the way in: an enum value that is not a value of
the field's enum (an unknown name, or a number no value has) is refused with an error that
lists the valid names, because dropping it can turn a filter into "everything" (an EatFrames
whose only state is a typo eats every frame). ``allow_unknown_enums=True`` restores protojson's
behaviour.

Public API (re-exported by :mod:`opencue_gw.codec`):

* :func:`encode_message` turns a message into compact UTF-8 JSON bytes; :func:`message_text`
  gives the same JSON as ``str``.
* :func:`decode_message` turns a request body into a message, or raises
  :class:`RequestDecodeError` with a message for the client that names the field path or the
  position of the problem.
* :func:`encode_status` writes the ``google.rpc.Status`` body that grpc-gateway sends for errors.
* :data:`SPECIAL_WELL_KNOWN_TYPES` names the types whose special JSON form is not implemented.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
import re
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, NamedTuple, TypeVar

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from opencue_gw.codec.formats import (
    enum_names,
    format_bool,
    format_bytes,
    format_float32,
    format_float64,
    format_quoted,
    format_string,
    round_float32,
)

__all__ = [
    "SPECIAL_WELL_KNOWN_TYPES",
    "RequestDecodeError",
    "decode_message",
    "encode_message",
    "encode_status",
    "message_text",
]

_M = TypeVar("_M", bound=Message)

# Well-known types have special JSON forms in protojson (e.g. Timestamp is an RFC 3339 string).
# No OpenCue message uses them. This codec refuses them rather than emit the wrong shape
# quietly; google.protobuf.Empty is not listed because the generic path already gives its
# protojson form, "{}".
SPECIAL_WELL_KNOWN_TYPES: Final = frozenset(
    "google.protobuf." + n
    for n in (
        "Any", "Timestamp", "Duration", "FieldMask", "Struct", "Value", "ListValue",
        "BoolValue", "BytesValue", "DoubleValue", "FloatValue", "Int32Value", "Int64Value",
        "StringValue", "UInt32Value", "UInt64Value",
    )
)  # fmt: skip

_T = FieldDescriptor
_INT32_TYPES: Final = frozenset({_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32})
_INT64_TYPES: Final = frozenset({_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64})
_UINT32_TYPES: Final = frozenset({_T.TYPE_UINT32, _T.TYPE_FIXED32})
_UINT64_TYPES: Final = frozenset({_T.TYPE_UINT64, _T.TYPE_FIXED64})
_MESSAGE_TYPES: Final = frozenset({_T.TYPE_MESSAGE, _T.TYPE_GROUP})


def _check_descriptor(desc: Descriptor) -> None:
    """Reject well-known types, whose protojson form this generic codec does not produce."""
    if desc.full_name in SPECIAL_WELL_KNOWN_TYPES:
        raise TypeError(
            f"{desc.full_name} has a special JSON mapping that this codec does not implement"
        )


def _is_map(fd: FieldDescriptor) -> bool:
    """Tell whether a field is a map; a map is a repeated field of a generated *Entry type."""
    mt = fd.message_type
    return mt is not None and fd.is_repeated and mt.GetOptions().map_entry


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------

_Fmt = Callable[[Any], str]


def _scalar_formatter(fd: FieldDescriptor) -> _Fmt:
    """Pick the formatter for one value of a non-message field type."""
    t = fd.type
    if t == _T.TYPE_STRING:
        return format_string
    if t in _INT32_TYPES or t in _UINT32_TYPES:
        return str
    if t in _INT64_TYPES or t in _UINT64_TYPES:
        return format_quoted
    if t == _T.TYPE_BOOL:
        return format_bool
    if t == _T.TYPE_ENUM:
        return enum_names(fd.enum_type).__getitem__
    if t == _T.TYPE_FLOAT:
        return format_float32
    if t == _T.TYPE_DOUBLE:
        return format_float64
    if t == _T.TYPE_BYTES:
        return format_bytes
    raise TypeError(f"unsupported field type {t} for {fd.full_name}")


def _map_key_formatter(fd: FieldDescriptor) -> _Fmt:
    """Map keys are always JSON strings: protojson writes MapKey.String() as the name."""
    t = fd.type
    if t == _T.TYPE_STRING:
        return format_string
    if t == _T.TYPE_BOOL:
        return {True: '"true"', False: '"false"'}.__getitem__
    return format_quoted


def _value_formatter(fd: FieldDescriptor) -> _Fmt:
    """Formatter for one element (or map value) of a field, descending into message types."""
    if fd.type in _MESSAGE_TYPES:
        return _encoder_for(fd.message_type).encode
    return _scalar_formatter(fd)


def _list_formatter(element: _Fmt) -> _Fmt:
    """Repeated fields are arrays; an empty one is '[]'."""

    def fmt(seq: Iterable[Any]) -> str:
        return "[" + ",".join(map(element, seq)) + "]"

    return fmt


def _map_formatter(fd: FieldDescriptor) -> _Fmt:
    """Map fields are objects with keys in protojson's GenericKeyOrder (sorted); empty is '{}'."""
    entry = fd.message_type
    key_fmt = _map_key_formatter(entry.fields_by_name["key"])
    val_fmt = _value_formatter(entry.fields_by_name["value"])

    def fmt(mapping: Any) -> str:
        return (
            "{" + ",".join([key_fmt(k) + ":" + val_fmt(mapping[k]) for k in sorted(mapping)]) + "}"
        )

    return fmt


def _placeholder(_value: Any) -> str:
    """Stand-in for fields whose text depends on presence; encode() overwrites it."""
    return ""


_call: Final = operator.call


class _MessageEncoder:
    """The cached encoding plan for one message type.

    All field values are fetched at once with an attrgetter, formatted by C-level callables
    where possible (``map(operator.call, ...)``), and dropped into a ``%`` template that
    holds the keys in declaration order (protojson's order.IndexOrder). Singular message
    fields depend on presence: set gives an object, unset gives null (EmitUnpopulated).
    Oneof members, including proto3 ``optional`` fields, are written only when set; a
    message that omits one is assembled from its pieces instead of the template.
    """

    __slots__ = ("_fmts", "_getter", "_messages", "_optional", "_pieces", "_template", "full_name")

    def __init__(self, desc: Descriptor) -> None:
        self.full_name = desc.full_name
        self._template = "{}"
        # (text before the value, text after it) per field; the template joins the same pieces
        self._pieces: tuple[tuple[str, str], ...] = ()
        self._fmts: tuple[_Fmt, ...] = ()
        self._getter: Callable[[Message], Sequence[Any]] = _no_values
        # (index, field name, encoder, text when unset: "null", or None to omit the field)
        self._messages: tuple[tuple[int, str, _Fmt, str | None], ...] = ()
        # (index, field name) of scalar oneof members, omitted when unset
        self._optional: tuple[tuple[int, str], ...] = ()

    def build(self, desc: Descriptor) -> None:
        """Fill in the plan; separate from __init__ so recursive types find this in the cache."""
        pieces: list[tuple[str, str]] = []
        fmts: list[_Fmt] = []
        messages: list[tuple[int, str, _Fmt, str | None]] = []
        optional: list[tuple[int, str]] = []
        for i, fd in enumerate(desc.fields):
            key = format_string(fd.json_name) + ":"
            after = ""
            in_oneof = fd.containing_oneof is not None
            if _is_map(fd):
                fmt = _map_formatter(fd)
            elif fd.is_repeated:
                fmt = _list_formatter(_value_formatter(fd))
            elif fd.type in _MESSAGE_TYPES:
                fmt = _placeholder
                messages.append((i, fd.name, _value_formatter(fd), None if in_oneof else "null"))
            elif fd.type in _INT64_TYPES or fd.type in _UINT64_TYPES:
                # str() is several times faster than a quoting callable; the quotes go around it.
                fmt, key, after = str, key + '"', '"'
            else:
                fmt = _scalar_formatter(fd)
            if in_oneof and fd.type not in _MESSAGE_TYPES:
                optional.append((i, fd.name))
            pieces.append((key, after))
            fmts.append(fmt)
        names = [fd.name for fd in desc.fields]
        if len(names) == 1:
            only = names[0]
            self._getter = lambda msg: (getattr(msg, only),)
        elif names:
            self._getter = operator.attrgetter(*names)
        self._template = (
            "{"
            + ",".join(k.replace("%", "%%") + "%s" + a.replace("%", "%%") for k, a in pieces)
            + "}"
        )
        self._pieces = tuple(pieces)
        self._fmts = tuple(fmts)
        self._messages = tuple(messages)
        self._optional = tuple(optional)

    def encode(self, msg: Message) -> str:
        """Return the JSON object text for ``msg``."""
        values = self._getter(msg)
        parts: list[str | None] = list(map(_call, self._fmts, values))
        omitted = False
        if self._messages:
            has = msg.HasField
            for i, name, enc, unset in self._messages:
                if has(name):
                    parts[i] = enc(values[i])
                else:
                    parts[i] = unset
                    omitted = omitted or unset is None
        if self._optional:
            has = msg.HasField
            for i, name in self._optional:
                if not has(name):
                    parts[i] = None
                    omitted = True
        if omitted:
            pieces = self._pieces
            return (
                "{"
                + ",".join(
                    [pieces[i][0] + p + pieces[i][1] for i, p in enumerate(parts) if p is not None]
                )
                + "}"
            )
        return self._template % tuple(parts)


def _no_values(_msg: Message) -> Sequence[Any]:
    """Field getter for a message type without fields."""
    return ()


_ENCODERS: dict[Descriptor, _MessageEncoder] = {}  # complete plans only
_BUILDING: dict[Descriptor, _MessageEncoder] = {}  # plans under construction, under the lock
_BUILD_LOCK: Final = threading.RLock()


def _encoder_for(desc: Descriptor) -> _MessageEncoder:
    """Return the cached encoding plan for a message type, building it on first use.

    A plan is findable while it is being built (so recursive types can refer to
    themselves), but only by the building thread: plans reach _ENCODERS together, once the
    outermost build finishes, so another thread never uses a half-built plan.
    """
    enc = _ENCODERS.get(desc)
    if enc is not None:
        return enc
    with _BUILD_LOCK:
        enc = _ENCODERS.get(desc) or _BUILDING.get(desc)
        if enc is not None:
            return enc
        outermost = not _BUILDING
        _check_descriptor(desc)
        enc = _MessageEncoder(desc)
        _BUILDING[desc] = enc
        try:
            enc.build(desc)
            if outermost:
                _ENCODERS.update(_BUILDING)
        finally:
            if outermost:
                _BUILDING.clear()
    return enc


def encode_message(msg: Message) -> bytes:
    """Encode ``msg`` as grpc-gateway v2's default marshaler would: compact UTF-8 JSON bytes.

    That is Go protojson with EmitUnpopulated: json_name keys in declaration order, every
    non-oneof field present (zero scalars, ``[]``, ``{}``, ``null`` for unset messages), enum
    names, 64-bit integers as strings, floats in Go's shortest form at their own precision.
    """
    return _encoder_for(msg.DESCRIPTOR).encode(msg).encode("utf-8")


def message_text(msg: Message) -> str:
    """The JSON text :func:`encode_message` writes for ``msg``, as ``str``.

    Generated encoders build ``str`` pieces; they call this for a message type they were
    not generated for, so it nests without an encode/decode round trip.
    """
    return _encoder_for(msg.DESCRIPTOR).encode(msg)


def encode_status(code: int, message: str) -> bytes:
    """Encode the google.rpc.Status body grpc-gateway writes for errors.

    grpc-gateway marshals ``status.Proto()`` with the same EmitUnpopulated options, so it is
    ``{"code":N,"message":"...","details":[]}``. Cuebot sends no status details. Text that is
    not valid Unicode is replaced rather than failing, because this body is the last
    resort for reporting an error.
    """
    body = f'{{"code":{int(code)},"message":{format_string(message)},"details":[]}}'
    return body.encode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------------------------


class RequestDecodeError(ValueError):
    """The request body is not valid JSON for the request type; str(e) is safe to show clients."""


class _Num(str):
    """The raw text of a JSON number, kept so each field type can convert it exactly."""

    __slots__ = ()


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, so duplicate keys stay visible."""

    __slots__ = ()


class _BadLiteral(Exception):
    """json would accept NaN/Infinity literals; JSON (and Go) does not."""


def _reject_constant(name: str) -> Any:
    """parse_constant hook: NaN, Infinity and -Infinity are not JSON."""
    raise _BadLiteral(name)


_JSON_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_Obj, parse_float=_Num, parse_int=_Num, parse_constant=_reject_constant
)
_JSON_WS: Final = " \t\n\r"
_SKIP: Final = object()  # a value protojson drops (unknown enum name with DiscardUnknown)


class _Rules(NamedTuple):
    """What a decode tolerates; part of the decoder cache key."""

    discard_unknown: bool  # unknown fields are skipped (protojson's DiscardUnknown)
    allow_unknown_enums: bool  # unknown enum names and numbers are treated as protojson does


_NUMBER_RE: Final = re.compile(r"(-)?(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?")
_PLAIN_INT_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,24})")
_MAP_INT_KEY_RE: Final = re.compile(r"[+-]?[0-9]+")
_BAD_LITERAL_RE: Final = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)', re.DOTALL)


def _describe(value: Any) -> str:
    """Render a decoded JSON value briefly for an error message."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is _Num:
        text = str(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif type(value) is _Obj:
        return "an object"
    else:
        return "an array"
    return text if len(text) <= 64 else text[:61] + "..."


def _invalid(path: str, expected: str, value: Any, reason: str = "") -> RequestDecodeError:
    """Build the error for a field value of the wrong type or range."""
    tail = f" ({reason})" if reason else ""
    return RequestDecodeError(
        f'invalid value for field "{path}": expected {expected}, got {_describe(value)}{tail}'
    )


def _normalize_int(text: str) -> int | None:
    """Integer value of JSON number text, as protojson's normalizeToIntString decides it.

    protojson accepts any number that is mathematically an integer ("1.0", "1e3", "100e-2")
    and at most 20 digits long once the exponent is applied; None means it is not one.
    """
    m = _NUMBER_RE.fullmatch(text)
    if m is None:
        return None
    neg, intp, frac, exp = m.groups()
    if intp == "0":
        intp = ""
    frac = (frac or "").rstrip("0")
    if not intp and not frac:
        return 0
    e = 0
    if exp is not None:
        if len(exp.lstrip("+-").lstrip("0")) > 10:
            return None
        e = int(exp)
        if not -(2**31) <= e < 2**31:
            return None
    if e >= 0:
        if len(frac) > e or len(intp) + e > 20:
            return None
        digits = intp + frac + "0" * (e - len(frac))
    else:
        if frac:
            return None
        index = len(intp) + e
        if index < 0 or intp[index:].strip("0"):
            return None
        digits = intp[:index]
    n = int(digits)
    return -n if neg else n


def _why_not_int(text: str) -> str:
    """Explain, for an error message, why number text was not accepted as an integer."""
    if not _NUMBER_RE.fullmatch(text):
        return ""
    d = Decimal(text)
    return "out of range" if d == d.to_integral_value() else "not an integer"


def _int_converter(bits: int, signed: bool) -> Callable[[Any, str], Any]:
    """Converter for an integer field: a JSON number, or a string holding one."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    expected = f"a {bits}-bit integer" if signed else f"an unsigned {bits}-bit integer"

    def conv(value: Any, path: str) -> Any:
        if type(value) is _Num:
            text = str(value)
        elif type(value) is str:
            text = value  # quoted: must be exactly a JSON number, no surrounding space
        else:
            raise _invalid(path, expected, value)
        n = int(text) if _PLAIN_INT_RE.fullmatch(text) else _normalize_int(text)
        if n is None:
            raise _invalid(path, expected, value, _why_not_int(text))
        if not lo <= n <= hi:
            raise _invalid(path, expected, value, "out of range")
        return n

    return conv


_F32: Final = struct.Struct("<f")
_U32: Final = struct.Struct("<I")
_F32_MAX: Final = 3.4028234663852886e38
_F32_OVERFLOW_MID: Final = 2.0**128 - 2.0**103  # halfway between _F32_MAX and 2**128


def _f32_neighbour(f: float, up: bool) -> float:
    """The adjacent float32 of a non-negative float32 ``f``, with inf just above the maximum."""
    if up and f == _F32_MAX:
        return math.inf
    if not up and f == math.inf:
        return _F32_MAX
    bits = _U32.unpack(_F32.pack(f))[0] + (1 if up else -1)
    return float(_F32.unpack(_U32.pack(bits))[0])


def _parse_float32(text: str) -> float | None:
    """Round decimal text to float32 exactly, as Go's strconv.ParseFloat(s, 32) does.

    float() rounds to double first; rounding that double to float32 again is wrong only
    when the double lands exactly on a float32 midpoint, which is settled here with exact
    arithmetic. Returns None on overflow (Go: ErrRange).
    """
    d = float(text)
    if math.isinf(d):
        return None
    a = abs(d)
    try:
        f = round_float32(a)
    except OverflowError:
        f = math.inf
    if f != a:
        lo, hi = (_f32_neighbour(f, False), f) if f > a else (f, _f32_neighbour(f, True))
        mid = _F32_OVERFLOW_MID if hi == math.inf else (lo + hi) / 2
        if a == mid:  # the only case where double rounding can mislead
            exact = abs(Fraction(text))
            if exact > Fraction(mid):
                f = hi
            elif exact < Fraction(mid):
                f = lo
            # equal: ties-to-even, which the C cast already chose
    if f == math.inf:
        return None
    return -f if math.copysign(1.0, d) < 0 else f


def _float_converter(bits: int) -> Callable[[Any, str], Any]:
    """Converter for float/double fields: a number, a numeric string, or NaN/Infinity strings."""
    expected = "a number"

    def conv(value: Any, path: str) -> Any:
        if type(value) is _Num:
            text = str(value)
        elif type(value) is str:
            if value == "NaN":
                return math.nan
            if value == "Infinity":
                return math.inf
            if value == "-Infinity":
                return -math.inf
            if not _NUMBER_RE.fullmatch(value):
                raise _invalid(path, expected, value)
            text = value
        else:
            raise _invalid(path, expected, value)
        if bits == 32:
            f = _parse_float32(text)
            if f is None:
                raise _invalid(path, expected, value, "out of range for float")
            return f
        d = float(text)
        if math.isinf(d):
            raise _invalid(path, expected, value, "out of range for double")
        return d

    return conv


def _conv_bool(value: Any, path: str) -> Any:
    """Booleans must be JSON true/false; protojson does not accept strings here."""
    if value is True or value is False:
        return value
    raise _invalid(path, "a boolean", value)


def _conv_string(value: Any, path: str) -> Any:
    """Strings must be JSON strings and valid Unicode (no lone surrogate escapes)."""
    if type(value) is not str:
        raise _invalid(path, "a string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(path, "a string", value, "invalid UTF-8: unpaired surrogate") from None
    return value


_B64_STD_RE: Final = re.compile(r"[A-Za-z0-9+/]*")
_B64_URL_RE: Final = re.compile(r"[A-Za-z0-9\-_]*")


def _conv_bytes(value: Any, path: str) -> Any:
    """Bytes are base64, as protojson's unmarshalBytes reads them.

    The URL alphabet is used if the text holds '-' or '_'; padding is required when the
    length is a multiple of 4 and forbidden otherwise; line breaks are skipped.
    """
    if type(value) is not str:
        raise _invalid(path, "a base64 string", value)
    url = "-" in value or "_" in value
    s = value.replace("\r", "").replace("\n", "")
    if len(value) % 4 == 0:
        body = s.rstrip("=")
        ok = len(s) % 4 == 0 and len(s) - len(body) <= 2
    else:
        body = s
        ok = True
    alphabet = _B64_URL_RE if url else _B64_STD_RE
    if not ok or not alphabet.fullmatch(body) or len(body) % 4 == 1:
        raise _invalid(path, "a base64 string", value)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), b"-_" if url else None)
    except (binascii.Error, ValueError):
        raise _invalid(path, "a base64 string", value) from None


def _enum_converter(enum: EnumDescriptor, rules: _Rules) -> Callable[[Any, str], Any]:
    """Enums by name or by number; what happens to a value the enum lacks depends on ``rules``.

    By default a name or number that is not a value of ``enum`` is refused, and the error
    lists the valid names: a typo must not become the zero value or vanish from a filter.
    With ``allow_unknown_enums`` the protojson rules apply instead: an unknown name is
    dropped under DiscardUnknown (refused otherwise), and any int32 number is kept (proto3
    enums are open, so Cuebot receives the number as sent).
    """
    by_name = {v.name: v.number for v in enum.values}
    numbers = frozenset(by_name.values())
    expected = f"a {enum.full_name} name or number"
    valid = "valid names: " + ", ".join(by_name)
    refuse_unknown = not rules.allow_unknown_enums
    drop_unknown_name = rules.discard_unknown

    def conv(value: Any, path: str) -> Any:
        if type(value) is str:
            number = by_name.get(value)
            if number is not None:
                return number
            if refuse_unknown:
                raise _invalid(path, expected, value, f"unknown enum name; {valid}")
            if drop_unknown_name:
                return _SKIP
            raise _invalid(path, expected, value, "unknown enum value")
        if type(value) is _Num:
            n = _normalize_int(str(value))
            if n is None:
                raise _invalid(path, expected, value, _why_not_int(str(value)))
            if refuse_unknown and n not in numbers:
                raise _invalid(path, expected, value, f"no value has this number; {valid}")
            if not -(2**31) <= n < 2**31:
                raise _invalid(path, expected, value, "out of range")
            return n
        raise _invalid(path, expected, value)

    return conv


def _scalar_converter(fd: FieldDescriptor, rules: _Rules) -> Callable[[Any, str], Any]:
    """Pick the converter for one value of a non-message field."""
    t = fd.type
    if t == _T.TYPE_STRING:
        return _conv_string
    if t == _T.TYPE_BOOL:
        return _conv_bool
    if t in _INT32_TYPES:
        return _int_converter(32, True)
    if t in _INT64_TYPES:
        return _int_converter(64, True)
    if t in _UINT32_TYPES:
        return _int_converter(32, False)
    if t in _UINT64_TYPES:
        return _int_converter(64, False)
    if t == _T.TYPE_FLOAT:
        return _float_converter(32)
    if t == _T.TYPE_DOUBLE:
        return _float_converter(64)
    if t == _T.TYPE_ENUM:
        return _enum_converter(fd.enum_type, rules)
    if t == _T.TYPE_BYTES:
        return _conv_bytes
    raise TypeError(f"unsupported field type {t} for {fd.full_name}")


def _map_key_converter(fd: FieldDescriptor) -> Callable[[str, str], Any]:
    """Map keys arrive as object names; protojson parses them with strconv (base 10)."""
    t = fd.type
    if t == _T.TYPE_STRING:
        return _conv_string
    if t == _T.TYPE_BOOL:

        def conv_bool(key: str, path: str) -> Any:
            if key == "true":
                return True
            if key == "false":
                return False
            raise RequestDecodeError(f'invalid map key for field "{path}": expected true or false')

        return conv_bool
    signed = t in _INT32_TYPES or t in _INT64_TYPES
    bits = 32 if (t in _INT32_TYPES or t in _UINT32_TYPES) else 64
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)

    def conv_int(key: str, path: str) -> Any:
        # strconv.ParseInt takes a sign; ParseUint takes none, not even '+'.
        if _MAP_INT_KEY_RE.fullmatch(key) and (signed or key[0] not in "+-") and len(key) < 40:
            n = int(key)
            if lo <= n <= hi:
                return n
        raise RequestDecodeError(
            f'invalid map key for field "{path}": expected a {bits}-bit integer'
        )

    return conv_int


_SINGULAR, _REPEATED, _MESSAGE, _REPEATED_MESSAGE, _MAP = range(5)


class _FieldDecoder:
    """How to read one field: its kind, converter or message type, and oneof membership."""

    __slots__ = ("conv", "key_conv", "kind", "name", "number", "oneof", "value_is_message")

    def __init__(self, fd: FieldDescriptor, rules: _Rules) -> None:
        self.name: str = fd.name
        self.number: int = fd.number
        oneof = fd.containing_oneof
        self.oneof: str | None = oneof.full_name if oneof is not None else None
        self.conv: Callable[[Any, str], Any] | None = None
        self.key_conv: Callable[[str, str], Any] | None = None
        self.value_is_message = False
        if _is_map(fd):
            self.kind = _MAP
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            self.key_conv = _map_key_converter(key_fd)
            if value_fd.type in _MESSAGE_TYPES:
                self.value_is_message = True
                _check_descriptor(value_fd.message_type)
            else:
                self.conv = _scalar_converter(value_fd, rules)
        elif fd.type in _MESSAGE_TYPES:
            self.kind = _REPEATED_MESSAGE if fd.is_repeated else _MESSAGE
            _check_descriptor(fd.message_type)
        else:
            self.kind = _REPEATED if fd.is_repeated else _SINGULAR
            self.conv = _scalar_converter(fd, rules)


_DECODERS: dict[tuple[Descriptor, _Rules], dict[str, _FieldDecoder]] = {}


def _decoder_for(desc: Descriptor, rules: _Rules) -> dict[str, _FieldDecoder]:
    """Return the cached key -> field table for a message type.

    protojson looks a key up by JSON name first, then by proto field name, so both map to
    the field and JSON names win a clash.
    """
    table = _DECODERS.get((desc, rules))
    if table is None:
        _check_descriptor(desc)
        table = {}
        fields = [(fd, _FieldDecoder(fd, rules)) for fd in desc.fields]
        for fd, dec in fields:
            table[fd.name] = dec
        for fd, dec in fields:
            table[fd.json_name] = dec
        _DECODERS[(desc, rules)] = table
    return table


def _decode_object(obj: _Obj, msg: Message, rules: _Rules, path: str) -> None:
    """Fill ``msg`` from a JSON object, following protojson's unmarshalMessage rules."""
    table = _decoder_for(msg.DESCRIPTOR, rules)
    seen: set[int] = set()
    seen_oneofs: set[str] = set()
    for key, value in obj:
        fpath = f"{path}.{key}" if path else key
        f = table.get(key)
        if f is None:
            if rules.discard_unknown:
                continue
            raise RequestDecodeError(f'unknown field "{fpath}"')
        if f.number in seen:
            raise RequestDecodeError(f'duplicate field "{fpath}"')
        seen.add(f.number)
        if value is None:  # null means "not set", for every field kind
            continue
        kind = f.kind
        try:
            if kind == _SINGULAR:
                if f.oneof is not None:
                    _claim_oneof(f.oneof, seen_oneofs, fpath)
                assert f.conv is not None
                converted = f.conv(value, fpath)
                if converted is not _SKIP:
                    setattr(msg, f.name, converted)
            elif kind == _MESSAGE:
                if f.oneof is not None:
                    _claim_oneof(f.oneof, seen_oneofs, fpath)
                if type(value) is not _Obj:
                    raise _invalid(fpath, "an object", value)
                sub = getattr(msg, f.name)
                _decode_object(value, sub, rules, fpath)
                sub.SetInParent()
            elif kind == _REPEATED:
                if type(value) is not list:
                    raise _invalid(fpath, "an array", value)
                assert f.conv is not None
                conv = f.conv
                items = [conv(item, f"{fpath}[{i}]") for i, item in enumerate(value)]
                getattr(msg, f.name).extend([x for x in items if x is not _SKIP])
            elif kind == _REPEATED_MESSAGE:
                if type(value) is not list:
                    raise _invalid(fpath, "an array", value)
                container = getattr(msg, f.name)
                for i, item in enumerate(value):
                    if type(item) is not _Obj:
                        raise _invalid(f"{fpath}[{i}]", "an object", item)
                    _decode_object(item, container.add(), rules, f"{fpath}[{i}]")
            else:
                _decode_map(f, value, getattr(msg, f.name), rules, fpath)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RequestDecodeError):
                raise
            # The protobuf runtime refused a value the checks above let through.
            raise RequestDecodeError(f'invalid value for field "{fpath}": {exc}') from None


def _claim_oneof(oneof: str, seen_oneofs: set[str], fpath: str) -> None:
    """protojson rejects two non-null members of one oneof in the same object."""
    if oneof in seen_oneofs:
        raise RequestDecodeError(f'invalid value for field "{fpath}": oneof {oneof} is already set')
    seen_oneofs.add(oneof)


def _decode_map(f: _FieldDecoder, value: Any, container: Any, rules: _Rules, fpath: str) -> None:
    """Fill a map field from a JSON object; duplicate keys (after parsing) are errors."""
    if type(value) is not _Obj:
        raise _invalid(fpath, "an object", value)
    assert f.key_conv is not None
    for raw_key, item in value:
        kpath = f"{fpath}[{json.dumps(raw_key, ensure_ascii=False)}]"
        key = f.key_conv(raw_key, kpath)
        if key in container:
            raise RequestDecodeError(f'duplicate map key in field "{kpath}"')
        if f.value_is_message:
            if type(item) is not _Obj:
                raise _invalid(kpath, "an object", item)
            _decode_object(item, container[key], rules, kpath)
        else:
            assert f.conv is not None
            converted = f.conv(item, kpath)
            if converted is not _SKIP:
                container[key] = converted


def _json_kind(value: Any) -> str:
    """Name a top-level JSON value's type for the non-object error."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "a boolean"
    if type(value) is _Num:
        return "a number"
    if type(value) is str:
        return "a string"
    return "an array"


def _parse_json(text: str) -> Any:
    """Parse the first JSON value in ``text`` (which holds more than whitespace).

    grpc-gateway reads the body with encoding/json's Decoder, which stops after the first
    value, so trailing bytes after it are ignored, as they are here.
    """
    start = len(text) - len(text.lstrip(_JSON_WS))
    try:
        value, _end = _JSON_DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise RequestDecodeError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _BadLiteral as exc:
        for m in _BAD_LITERAL_RE.finditer(text, start):
            if m.group(1):
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - text.rfind("\n", 0, m.start())
                raise RequestDecodeError(
                    f"malformed JSON at line {line} column {col}: invalid literal {m.group(1)}"
                ) from None
        raise RequestDecodeError(f"malformed JSON: invalid literal {exc}") from None
    except RecursionError:
        raise RequestDecodeError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # defensive: a parse hook or number conversion failed
        raise RequestDecodeError(f"malformed JSON: {exc}") from None
    return value


def decode_message(
    body: bytes | bytearray | memoryview | str,
    cls: type[_M],
    discard_unknown: bool = True,
    *,
    allow_unknown_enums: bool = False,
) -> _M:
    """Decode a request body into a new ``cls`` message, as grpc-gateway's JSONPb does.

    An empty or all-whitespace body is an empty request (grpc-gateway ignores io.EOF). Keys
    may be JSON names or proto names; ``null`` leaves a field unset; unknown fields are
    dropped unless ``discard_unknown`` is False. Every problem raises
    :class:`RequestDecodeError` whose text names the field path or the position.

    An enum value the field's enum does not have (a name, or a number no value carries) is
    refused, at any depth (repeated fields, map values, nested messages, oneofs), and the
    error lists the valid names. ``allow_unknown_enums=True`` gives protojson's behaviour
    instead, which is the Go gateway's: an unknown name is dropped when ``discard_unknown``
    (refused otherwise), and an unnamed number within int32 is kept as that number.
    """
    if isinstance(body, str):
        text = body
    else:
        raw = bytes(body)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestDecodeError(
                f"malformed JSON: invalid UTF-8 at byte offset {exc.start}"
            ) from None
    msg = cls()
    if not text.strip(_JSON_WS):
        return msg
    value = _parse_json(text)
    if type(value) is not _Obj:
        raise RequestDecodeError(
            f"invalid request body: expected a JSON object, got {_json_kind(value)}"
        )
    try:
        _decode_object(value, msg, _Rules(discard_unknown, allow_unknown_enums), "")
    except RecursionError:
        raise RequestDecodeError("invalid request body: nested too deeply") from None
    return msg
