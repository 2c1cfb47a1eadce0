"""Go protojson's text for single values: floats, strings, bytes, enum names.

The reference codec (:mod:`opencue_gw.codec.reference`) and the generated per-type codecs
(through :mod:`opencue_gw.codec.runtime`) both write values with these functions, so the two
cannot disagree on how a float32 or a string is spelled. Nothing here knows about messages
or descriptors beyond an enum's value list.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from typing import Any, Final

from google.protobuf.descriptor import EnumDescriptor

__all__ = [
    "EnumNames",
    "enum_names",
    "format_bool",
    "format_bytes",
    "format_float32",
    "format_float64",
    "format_quoted",
    "format_string",
    "round_float32",
]


# ---------------------------------------------------------------------------------------------
# Float formatting, as Go's protojson does it (internal/encoding/json/encode.go appendFloat):
# strconv.AppendFloat(n, 'f' or 'e', -1, bitSize) gives the shortest decimal that parses back to
# the same value at the field's own precision. 'e' is used when |n| < 1e-6 or |n| >= 1e21
# (compared at that precision), and a two-digit negative exponent loses its leading zero
# ("1e-07" becomes "1e-7").
# ---------------------------------------------------------------------------------------------

_F32: Final = struct.Struct("<f")


def round_float32(x: float) -> float:
    """Round a double to the nearest float32 the way a C cast does (overflow raises)."""
    return float(_F32.unpack(_F32.pack(x))[0])


# Go compares float32(abs) with the untyped constants 1e-6 and 1e21, so it rounds them to float32.
_F32_E_LOW: Final = round_float32(1e-6)
_F32_E_HIGH: Final = round_float32(1e21)


def _shortest_digits(a: float, prec: int, emin: int) -> tuple[str, int]:
    """Shortest decimal digits that round to ``a`` in a binary format with ``prec`` bits.

    ``a`` is positive and finite and exactly representable in that format; ``emin`` is the
    binary exponent of its smallest subnormal. The result is (digits, dp): value =
    0.digits * 10**dp. It is computed exactly on integers, as Go's Ryu does: the interval of
    decimals that round back to ``a`` (closed if its mantissa is even, as round-half-even
    parsing allows), the coarsest power of ten with a multiple inside that interval, and of
    those multiples the one nearest ``a`` (ties to even). Python has no float32 repr, and
    trying '%.{p}g' and parsing back rounds twice (via double) and can be wrong at the
    edges.
    """
    m, e = math.frexp(a)
    mant = int(math.ldexp(m, prec))
    exp2 = e - prec
    if exp2 < emin:  # subnormal: use the fixed subnormal grid
        mant = int(math.ldexp(a, -emin))
        exp2 = emin
    if mant == 1 << (prec - 1) and exp2 > emin:
        # Lowest mantissa of a binade: the gap below is half the gap above.
        lo, mid, hi, shift = 4 * mant - 1, 4 * mant, 4 * mant + 2, exp2 - 2
    else:
        lo, mid, hi, shift = 2 * mant - 1, 2 * mant, 2 * mant + 1, exp2 - 1
    inclusive = mant % 2 == 0
    den = 1
    if shift >= 0:
        lo, mid, hi = lo << shift, mid << shift, hi << shift
    else:
        den = 1 << -shift
    # Start one decade above a (log10 may be off by one near powers of ten) and step down
    # until some multiple of 10**k lies within the interval.
    k = math.floor(math.log10(a)) + 2
    while True:
        if k >= 0:
            num_scale, den_scale = 1, den * 10**k
        else:
            num_scale, den_scale = 10**-k, den
        n_lo, r_lo = divmod(lo * num_scale, den_scale)
        if r_lo or not inclusive:
            n_lo += 1
        n_hi, r_hi = divmod(hi * num_scale, den_scale)
        if r_hi == 0 and not inclusive:
            n_hi -= 1
        if n_lo <= n_hi:
            break
        k -= 1
    q, r = divmod(mid * num_scale, den_scale)
    if 2 * r > den_scale or (2 * r == den_scale and q & 1):
        q += 1
    q = min(max(q, n_lo), n_hi)
    s = str(q)
    return s.rstrip("0"), len(s) + k


def _repr_digits(a: float) -> tuple[str, int]:
    """Shortest digits of a positive double, taken from repr (which is shortest round-trip)."""
    mant, _, exp = repr(a).partition("e")
    ip, _, fp = mant.partition(".")
    all_digits = ip + fp
    digits = all_digits.lstrip("0")
    dp = len(ip) + (int(exp) if exp else 0) - (len(all_digits) - len(digits))
    return digits.rstrip("0"), dp


def _layout(digits: str, dp: int, use_e: bool) -> str:
    """Lay out 0.digits * 10**dp as Go's strconv 'f'/'e' formats do, plus protojson's e-0N fix."""
    n = len(digits)
    if use_e:
        exp = dp - 1
        head = digits[0] + ("." + digits[1:] if n > 1 else "")
        if -10 < exp < 0:
            return f"{head}e-{-exp}"
        return f"{head}e{exp:+03d}"
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= n:
        return digits + "0" * (dp - n)
    return digits[:dp] + "." + digits[dp:]


def _format_float(v: float, bits: int) -> str:
    """Format a float or double field value as Go protojson does (see section comment)."""
    if v != v:
        return '"NaN"'
    if v == math.inf:
        return '"Infinity"'
    if v == -math.inf:
        return '"-Infinity"'
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    a = abs(v)
    if bits == 32:
        if a < 16777216.0 and a.is_integer():  # below 2**24 every integer is exact and shortest
            return str(int(v))
        digits, dp = _shortest_digits(a, 24, -149)
        use_e = a < _F32_E_LOW or a >= _F32_E_HIGH
    else:
        if a < 9007199254740992.0 and a.is_integer():  # below 2**53, likewise
            return str(int(v))
        digits, dp = _repr_digits(a)
        use_e = a < 1e-6 or a >= 1e21
    s = _layout(digits, dp, use_e)
    return "-" + s if v < 0 else s


_FLOAT32_CACHE: dict[float, str] = {}
_FLOAT32_CACHE_MAX: Final = 8192


def format_float32(v: float) -> str:
    """Format a float32 field value; memoised because responses repeat the same few values."""
    if v == 0:  # the commonest value; -0.0 == 0.0 would confuse the cache
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    if v != v:  # NaN != NaN: never found in the cache
        return _format_float(v, 32)
    s = _FLOAT32_CACHE.get(v)
    if s is None:
        s = _format_float(v, 32)
        if len(_FLOAT32_CACHE) >= _FLOAT32_CACHE_MAX:
            _FLOAT32_CACHE.clear()
        _FLOAT32_CACHE[v] = s
    return s


def format_float64(v: float) -> str:
    """Format a double field value as Go protojson does."""
    return _format_float(v, 64)


# encode_basestring (the C version when available) escapes exactly what protojson escapes:
# '"', '\\' and control characters below 0x20, as \b \f \n \r \t or \u00xx (lowercase hex). It
# leaves '<', '>', '&', DEL, U+2028/U+2029 and all other non-ASCII text raw, as protojson does.
format_string: Final[Callable[[str], str]] = json.encoder.encode_basestring  # type: ignore[attr-defined]
format_quoted: Final[Callable[[Any], str]] = '"{}"'.format  # int64 kinds are JSON strings
format_bool: Final[Callable[[bool], str]] = {True: "true", False: "false"}.__getitem__


def format_bytes(b: bytes) -> str:
    """Bytes are standard base64 with padding, as Go's base64.StdEncoding writes them."""
    return '"' + base64.b64encode(b).decode("ascii") + '"'


class EnumNames(dict[int, str]):
    """Number -> quoted name; an unknown number of an open enum is written as the number."""

    def __missing__(self, key: int) -> str:
        return str(key)


def enum_names(enum: EnumDescriptor) -> EnumNames:
    """The number -> quoted name table of an enum type (first name wins for aliases, like Go)."""
    names = EnumNames()
    for value in enum.values:
        names.setdefault(value.number, format_string(value.name))
    return names
