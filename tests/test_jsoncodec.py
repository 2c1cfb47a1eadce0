"""Tests for the reference codec: grpc-gateway v2 (Go protojson) JSON for OpenCue messages."""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import re
import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import opencue_proto
import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opencue_proto import job_pb2, report_pb2, show_pb2

from opencue_gw.codec import (
    RequestDecodeError,
    decode_message,
    encode_message,
    encode_status,
    formats,
    reference,
)

T = FieldDescriptor

# ---------------------------------------------------------------------------------------------
# A test-only proto with every scalar type, maps with each key kind, a proto3 optional field,
# a three-member oneof (with an enum member), recursion and a custom json_name: shapes the
# OpenCue protos lack.
# ---------------------------------------------------------------------------------------------


def _build_all_types() -> tuple[type[Message], type[Message]]:
    """Build gwtest.AllTypes and gwtest.Inner in a private descriptor pool."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="gwtest/alltypes.proto", package="gwtest", syntax="proto3"
    )
    color = fdp.enum_type.add(name="Color")
    for name, number in (("COLOR_UNSPECIFIED", 0), ("RED", 1), ("GREEN", 2)):
        color.value.add(name=name, number=number)
    inner = fdp.message_type.add(name="Inner")
    inner.field.add(name="x", number=1, type=T.TYPE_INT32, label=T.LABEL_OPTIONAL)
    inner.field.add(name="y", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL)
    msg = fdp.message_type.add(name="AllTypes")
    msg.oneof_decl.add(name="choice")
    msg.oneof_decl.add(name="_o_int32")
    number = 0

    def add(name: str, type_: int, repeated: bool = False, type_name: str = "", **kw: Any) -> None:
        nonlocal number
        number += 1
        label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
        msg.field.add(name=name, number=number, type=type_, label=label, **kw)
        if type_name:
            msg.field[-1].type_name = type_name

    for name, type_ in (
        ("f_double", T.TYPE_DOUBLE), ("f_float", T.TYPE_FLOAT), ("f_int32", T.TYPE_INT32),
        ("f_int64", T.TYPE_INT64), ("f_uint32", T.TYPE_UINT32), ("f_uint64", T.TYPE_UINT64),
        ("f_sint32", T.TYPE_SINT32), ("f_sint64", T.TYPE_SINT64), ("f_fixed32", T.TYPE_FIXED32),
        ("f_fixed64", T.TYPE_FIXED64), ("f_sfixed32", T.TYPE_SFIXED32),
        ("f_sfixed64", T.TYPE_SFIXED64), ("f_bool", T.TYPE_BOOL), ("f_string", T.TYPE_STRING),
        ("f_bytes", T.TYPE_BYTES),
    ):  # fmt: skip
        add(name, type_)
    add("f_enum", T.TYPE_ENUM, type_name=".gwtest.Color")
    add("f_inner", T.TYPE_MESSAGE, type_name=".gwtest.Inner")
    add("r_double", T.TYPE_DOUBLE, repeated=True)
    add("r_enum", T.TYPE_ENUM, repeated=True, type_name=".gwtest.Color")
    add("r_inner", T.TYPE_MESSAGE, repeated=True, type_name=".gwtest.Inner")
    add("r_bytes", T.TYPE_BYTES, repeated=True)
    add("r_uint64", T.TYPE_UINT64, repeated=True)
    for field, entry, key_type, value_type, value_name in (
        ("m_bool", "MBoolEntry", T.TYPE_BOOL, T.TYPE_STRING, ""),
        ("m_int32", "MInt32Entry", T.TYPE_INT32, T.TYPE_DOUBLE, ""),
        ("m_uint64", "MUint64Entry", T.TYPE_UINT64, T.TYPE_MESSAGE, ".gwtest.Inner"),
        ("m_enum", "MEnumEntry", T.TYPE_STRING, T.TYPE_ENUM, ".gwtest.Color"),
    ):
        nested = msg.nested_type.add(name=entry)
        nested.options.map_entry = True
        nested.field.add(name="key", number=1, type=key_type, label=T.LABEL_OPTIONAL)
        nested.field.add(name="value", number=2, type=value_type, label=T.LABEL_OPTIONAL)
        if value_name:
            nested.field[-1].type_name = value_name
        add(field, T.TYPE_MESSAGE, repeated=True, type_name=f".gwtest.AllTypes.{entry}")
    add("o_int32", T.TYPE_INT32, oneof_index=1, proto3_optional=True)
    add("c_string", T.TYPE_STRING, oneof_index=0)
    add("c_inner", T.TYPE_MESSAGE, oneof_index=0, type_name=".gwtest.Inner")
    add("recursive", T.TYPE_MESSAGE, type_name=".gwtest.AllTypes")
    add("custom_json", T.TYPE_INT32, json_name="customName")
    add("c_enum", T.TYPE_ENUM, oneof_index=0, type_name=".gwtest.Color")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("gwtest.AllTypes")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("gwtest.Inner")),
    )


AllTypes, Inner = _build_all_types()


def _all_opencue_types() -> list[Descriptor]:
    """Every message type (nested ones too, map entries excluded) in all opencue_proto modules."""
    found: list[Descriptor] = []

    def walk(desc: Descriptor) -> None:
        if desc.GetOptions().map_entry:
            return
        found.append(desc)
        for nested in desc.nested_types:
            walk(nested)

    for info in pkgutil.iter_modules(opencue_proto.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"opencue_proto.{info.name}")
            for desc in module.DESCRIPTOR.message_types_by_name.values():
                walk(desc)
    return found


OPENCUE_TYPES = _all_opencue_types()
ALL_TYPES = [*OPENCUE_TYPES, AllTypes.DESCRIPTOR]


def _is_map(fd: FieldDescriptor) -> bool:
    """Tell whether a field is a map field."""
    return fd.message_type is not None and fd.is_repeated and fd.message_type.GetOptions().map_entry


def _cls(desc: Descriptor) -> type[Message]:
    """The generated class for a descriptor."""
    return message_factory.GetMessageClass(desc)


def _loads(data: bytes) -> Any:
    """Parse JSON bytes (the way a client would)."""
    return json.loads(data.decode("utf-8"))


def _f32(x: float) -> float:
    """Round a double to float32 (inf when out of range)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


# ---------------------------------------------------------------------------------------------
# Golden examples from the Go gateway (rest_gateway README, seed doc 000)
# ---------------------------------------------------------------------------------------------

GO_FIND_SHOW = (
    '{"show":{"id":"00000000-0000-0000-0000-000000000000","name":"testshow","defaultMinCores":1,'
    '"defaultMaxCores":10,"commentEmail":"middle-tier@company.com","bookingEnabled":true,'
    '"dispatchEnabled":true,"active":true,"showStats":{"runningFrames":75,"deadFrames":14,'
    '"pendingFrames":1814,"pendingJobs":175,"createdJobCount":"2353643",'
    '"createdFrameCount":"10344702","renderedFrameCount":"9733366","failedFrameCount":"1096394",'
    '"reservedCores":252,"reservedGpus":0},"defaultMinGpus":100,"defaultMaxGpus":100000}}'
)

# The first two frames of the README's GetFrames example. Go's protojson adds a random space
# after some commas (internal/detrand), hence ", ".
GO_GET_FRAMES = (
    '{"frames":{"frames":[{"id":"00000000-0000-0000-0000-000000000002", '
    '"name":"0001-bty_tp_3d_123456", "layerName":"bty_tp_3d_123456", "number":1, '
    '"state":"WAITING", "retryCount":0, "exitStatus":-1, "dispatchOrder":0, "startTime":0, '
    '"stopTime":0, "maxRss":"0", "usedMemory":"0", "reservedMemory":"0", '
    '"reservedGpuMemory":"0", "lastResource":"/0.00/0", "checkpointState":"DISABLED", '
    '"checkpointCount":0, "totalCoreTime":0, "lluTime":1707842141, "totalGpuTime":0, '
    '"maxGpuMemory":"0", "usedGpuMemory":"0", "frameStateDisplayOverride":null}, '
    '{"id":"00000000-0000-0000-0000-000000000003", "name":"0002-bty_tp_3d_123456", '
    '"layerName":"bty_tp_3d_123456", "number":2, "state":"WAITING", "retryCount":0, '
    '"exitStatus":-1, "dispatchOrder":1, "startTime":0, "stopTime":0, "maxRss":"0", '
    '"usedMemory":"0", "reservedMemory":"0", "reservedGpuMemory":"0", '
    '"lastResource":"/0.00/0", "checkpointState":"DISABLED", "checkpointCount":0, '
    '"totalCoreTime":0, "lluTime":1707842141, "totalGpuTime":0, "maxGpuMemory":"0", '
    '"usedGpuMemory":"0", "frameStateDisplayOverride":null}]}}'
)


def test_find_show_golden_bytes() -> None:
    """FindShow matches the Go output byte for byte, plus the schedulerManaged field added since."""
    resp = show_pb2.ShowFindShowResponse()
    s = resp.show
    s.id = "00000000-0000-0000-0000-000000000000"
    s.name = "testshow"
    s.default_min_cores, s.default_max_cores = 1, 10
    s.comment_email = "middle-tier@company.com"
    s.booking_enabled = s.dispatch_enabled = s.active = True
    st_ = s.show_stats
    st_.running_frames, st_.dead_frames, st_.pending_frames, st_.pending_jobs = 75, 14, 1814, 175
    st_.created_job_count, st_.created_frame_count = 2353643, 10344702
    st_.rendered_frame_count, st_.failed_frame_count = 9733366, 1096394
    st_.reserved_cores, st_.reserved_gpus = 252, 0
    s.default_min_gpus, s.default_max_gpus = 100, 100000
    expected = GO_FIND_SHOW[:-2] + ',"schedulerManaged":false}}'
    assert encode_message(resp) == expected.encode()


def test_get_frames_golden() -> None:
    """GetFrames equals the Go output once the four Frame fields added since then are included."""
    go = json.loads(GO_GET_FRAMES)
    new_fields = {"maxPss": "0", "usedPss": "0", "eligibleTime": 0, "submissionTime": 0}
    declared = [fd.json_name for fd in job_pb2.Frame.DESCRIPTOR.fields]
    assert [k for k in declared if k not in go["frames"]["frames"][0]] == list(new_fields)
    resp = job_pb2.JobGetFramesResponse()
    for i, number in enumerate((1, 2)):
        f = resp.frames.frames.add()
        f.id = f"00000000-0000-0000-0000-00000000000{i + 2}"
        f.name = f"000{number}-bty_tp_3d_123456"
        f.layer_name = "bty_tp_3d_123456"
        f.number, f.state, f.exit_status, f.dispatch_order = number, job_pb2.WAITING, -1, i
        f.last_resource, f.llu_time = "/0.00/0", 1707842141
    for frame in go["frames"]["frames"]:
        frame.update(new_fields)
    out = _loads(encode_message(resp))
    assert out == go
    assert list(out["frames"]["frames"][0]) == declared


# ---------------------------------------------------------------------------------------------
# Encoding rules
# ---------------------------------------------------------------------------------------------


def test_unset_message_is_null_and_set_message_is_object() -> None:
    """An unset singular message field is null; a set one (even empty) is a full object."""
    frame = job_pb2.Frame()
    assert _loads(encode_message(frame))["frameStateDisplayOverride"] is None
    frame.frame_state_display_override.SetInParent()
    assert _loads(encode_message(frame))["frameStateDisplayOverride"] == {
        "state": "WAITING",
        "text": "",
        "color": None,
    }


def test_empty_repeated_and_map() -> None:
    """Empty repeated fields are [] and empty maps are {}."""
    assert encode_message(job_pb2.FrameSeq()) == b'{"frames":[]}'
    out = _loads(encode_message(AllTypes()))
    assert out["rDouble"] == [] and out["rInner"] == [] and out["rUint64"] == []
    assert out["mBool"] == {} and out["mInt32"] == {} and out["mUint64"] == {}


def test_map_keys_are_sorted_strings_and_message_values_full() -> None:
    """Map keys are strings in Go's key order; message values are emitted in full."""
    detail = report_pb2.CoreDetail()
    detail.reserved_cores[10].coreid.append(7)
    detail.reserved_cores[-2].SetInParent()
    detail.reserved_cores[3].SetInParent()
    text = encode_message(detail)
    assert text.endswith(
        b'"reservedCores":{"-2":{"coreid":[]},"3":{"coreid":[]},"10":{"coreid":["7"]}}}'
    )
    msg = AllTypes()
    msg.m_bool[True] = "t"
    msg.m_bool[False] = "f"
    msg.m_uint64[2**64 - 1].x = 1
    out = _loads(encode_message(msg))
    assert list(out["mBool"].items()) == [("false", "f"), ("true", "t")]
    assert out["mUint64"] == {"18446744073709551615": {"x": 1, "y": 0}}


def test_int64_kinds_are_strings_and_int32_kinds_numbers() -> None:
    """All 64-bit integer kinds are JSON strings; 32-bit kinds are numbers."""
    msg = AllTypes(
        f_int64=-(2**63),
        f_uint64=2**64 - 1,
        f_sint64=-5,
        f_fixed64=7,
        f_sfixed64=-8,
        f_int32=-(2**31),
        f_uint32=2**32 - 1,
        f_sint32=-3,
        f_fixed32=4,
        f_sfixed32=-6,
        r_uint64=[0, 1],
    )
    out = _loads(encode_message(msg))
    assert out["fInt64"] == "-9223372036854775808"
    assert out["fUint64"] == "18446744073709551615"
    assert (out["fSint64"], out["fFixed64"], out["fSfixed64"]) == ("-5", "7", "-8")
    assert (out["fInt32"], out["fUint32"]) == (-(2**31), 2**32 - 1)
    assert (out["fSint32"], out["fFixed32"], out["fSfixed32"]) == (-3, 4, -6)
    assert out["rUint64"] == ["0", "1"]
    assert _loads(encode_message(job_pb2.Frame()))["maxRss"] == "0"


def test_enums_by_name_and_unknown_number_as_number() -> None:
    """Enums are written by name; a number without a name is written as the number."""
    assert _loads(encode_message(job_pb2.Frame()))["state"] == "WAITING"
    assert _loads(encode_message(job_pb2.Frame(state=job_pb2.RUNNING)))["state"] == "RUNNING"
    assert b'"state":999,' in encode_message(job_pb2.Frame(state=999))
    msg = AllTypes(r_enum=[1, 42])
    msg.m_enum["k"] = 2
    out = _loads(encode_message(msg))
    assert out["rEnum"] == ["RED", 42] and out["mEnum"] == {"k": "GREEN"}


def test_oneof_member_only_when_set() -> None:
    """Unset oneof members are omitted; a set one appears in declaration position."""
    unset = _loads(encode_message(job_pb2.Job()))
    assert "uid" not in unset
    keys = list(_loads(encode_message(job_pb2.Job(uid=0))))
    assert keys == [fd.json_name for fd in job_pb2.Job.DESCRIPTOR.fields]
    assert keys.index("uid") == keys.index("os") + 1
    out = _loads(encode_message(AllTypes(c_inner=Inner())))
    assert out["cInner"] == {"x": 0, "y": 0} and "cString" not in out and "oInt32" not in out
    assert _loads(encode_message(AllTypes(o_int32=0)))["oInt32"] == 0


def test_zero_scalars_emitted() -> None:
    """Every zero-valued scalar appears: "", 0, false and the first enum name."""
    out = _loads(encode_message(AllTypes()))
    assert out["fString"] == "" and out["fBytes"] == "" and out["fBool"] is False
    assert out["fDouble"] == 0 and out["fFloat"] == 0 and out["fEnum"] == "COLOR_UNSPECIFIED"
    assert out["fInner"] is None and out["recursive"] is None and out["customName"] == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1.0, "1"),
        (-2.5, "-2.5"),
        (1 / 3, "0.33333334"),
        (16777216.0, "16777216"),
        (123456.7, "123456.7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (3.4028234663852886e38, "3.4028235e+38"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-10, "1e-10"),
        (1.401298464324817e-45, "1e-45"),
        (-0.0, "-0"),
        (math.nan, '"NaN"'),
        (math.inf, '"Infinity"'),
        (-math.inf, '"-Infinity"'),
    ],
)
def test_float32_go_format(value: float, text: str) -> None:
    """float fields use Go's shortest float32 form, with 'e' only outside [1e-6, 1e21)."""
    out = encode_message(show_pb2.Show(default_min_cores=value))
    assert f'"defaultMinCores":{text},'.encode() in out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1.0, "1"),
        (1 / 3, "0.3333333333333333"),
        (1e20, "100000000000000000000"),
        (1.2345678901234568e20, "123456789012345680000"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (1e-7, "1e-7"),
        (2.5e-300, "2.5e-300"),
        (5e-324, "5e-324"),
        (0.000001, "0.000001"),
        (-123.456, "-123.456"),
    ],
)
def test_double_go_format(value: float, text: str) -> None:
    """double fields use Go's shortest float64 form with the same 'f'/'e' rules."""
    assert f'"fDouble":{text},'.encode() in encode_message(AllTypes(f_double=value))


def _oracle_float32_text(x: float) -> tuple[str, int]:
    """Shortest float32 digits found by brute force over '%.{p}e' roundings and neighbours."""
    for p in range(1, 10):
        mant, exp = f"{x:.{p - 1}e}".split("e")
        base = int(mant.replace(".", ""))
        e10 = int(exp) - (p - 1)
        hits = []
        for n in (base - 1, base, base + 1):
            if n > 0 and reference._parse_float32(f"{n}e{e10}") == x:
                hits.append(n)
        if hits:
            exact = Fraction(x) / Fraction(10) ** e10
            best = min(hits, key=lambda n: (abs(Fraction(n) - exact), n % 2))
            digits = str(best)
            return digits.rstrip("0"), len(digits) + e10
    raise AssertionError(f"no representation for {x!r}")


@settings(max_examples=400, deadline=None)
@given(st.floats(width=32, min_value=0, exclude_min=True, allow_infinity=False))
def test_float32_digits_match_bruteforce_oracle(x: float) -> None:
    """The exact float32 shortest-digit search agrees with a brute-force search."""
    assert formats._shortest_digits(x, 24, -149) == _oracle_float32_text(x)


@settings(max_examples=400, deadline=None)
@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False))
def test_double_digits_algorithm_matches_repr(x: float) -> None:
    """The exact shortest-digit search at 53 bits agrees with CPython's repr."""
    assert formats._shortest_digits(x, 53, -1074) == formats._repr_digits(x)


def test_bytes_standard_base64_with_padding() -> None:
    """bytes use standard base64 with padding (+ and /, not - and _)."""
    out = _loads(encode_message(AllTypes(f_bytes=b"\xfb\xff", r_bytes=[b"a", b""])))
    assert out["fBytes"] == "+/8=" and out["rBytes"] == ["YQ==", ""]


def test_string_escaping_matches_protojson() -> None:
    """Control characters, quote and backslash are escaped; <>&, DEL and non-ASCII stay raw."""
    out = encode_message(AllTypes(f_string='<a href="x">&\\\n\t\x01\x7f é\u2028😀'))
    assert (
        b'"fString":"<a href=\\"x\\">&\\\\\\n\\t\\u0001\x7f \xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80",'
        in out
    )


def test_keys_in_declaration_order_and_json_name() -> None:
    """Keys follow .proto declaration order and use json_name, including a custom one."""
    keys = list(_loads(encode_message(AllTypes(o_int32=1, c_string="x"))))
    unset = {"c_inner", "c_enum"}
    assert keys == [fd.json_name for fd in AllTypes.DESCRIPTOR.fields if fd.name not in unset]
    assert keys[-1] == "customName"


_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"')


def test_output_is_compact() -> None:
    """Output has no whitespace outside strings."""
    job = job_pb2.Job(name="a b", uid=3)
    job.job_stats.SetInParent()
    stripped = _STRING_RE.sub(b"", encode_message(job))
    assert stripped and not re.search(rb"\s", stripped)


def test_encode_status() -> None:
    """encode_status writes grpc-gateway's google.rpc.Status body."""
    assert encode_status(5, "Not Found") == b'{"code":5,"message":"Not Found","details":[]}'
    assert _loads(encode_status(14, 'connection error: desc = "x"\n')) == {
        "code": 14,
        "message": 'connection error: desc = "x"\n',
        "details": [],
    }


def test_well_known_types_rejected() -> None:
    """Well-known types with special JSON forms raise instead of being mis-encoded."""
    with pytest.raises(TypeError, match=r"google\.protobuf\.Timestamp"):
        encode_message(timestamp_pb2.Timestamp())


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _decode_error(body: bytes, cls: type[Message], **kw: Any) -> str:
    """Decode a body that must fail and return the client-facing message."""
    with pytest.raises(RequestDecodeError) as info:
        decode_message(body, cls, **kw)
    return str(info.value)


def test_decode_snake_and_camel_keys() -> None:
    """Keys may be JSON names or proto names, as CueWeb sends both."""
    snake = decode_message(
        b'{"req":{"include_finished":true,"page":1,"states":{"frame_states":[2]}}}',
        job_pb2.JobGetFramesRequest,
    )
    camel = decode_message(
        b'{"req":{"includeFinished":true,"page":1,"states":{"frameStates":["RUNNING"]}}}',
        job_pb2.JobGetFramesRequest,
    )
    assert snake == camel
    assert snake.req.include_finished and list(snake.req.states.frame_states) == [job_pb2.RUNNING]
    assert decode_message(b'{"customName":5}', AllTypes).custom_json == 5
    assert decode_message(b'{"custom_json":6}', AllTypes).custom_json == 6


def test_decode_same_field_twice_is_error() -> None:
    """A field given twice (even once as camel and once as snake) is rejected, as protojson does."""
    msg = _decode_error(
        b'{"r":{"include_finished":true,"includeFinished":false}}', job_pb2.JobGetJobsRequest
    )
    assert msg == 'duplicate field "r.includeFinished"'


def test_decode_enum_names_and_numbers() -> None:
    """Enums accept their names and the numbers of their values, in any integral form."""
    assert decode_message(b'{"state":"RUNNING"}', job_pb2.Frame).state == job_pb2.RUNNING
    assert decode_message(b'{"state":2}', job_pb2.Frame).state == 2
    assert decode_message(b'{"state":2.0}', job_pb2.Frame).state == 2
    assert "unknown enum name" in _decode_error(b'{"state":"2"}', job_pb2.Frame)  # names only
    assert "not an integer" in _decode_error(b'{"state":2.5}', job_pb2.Frame)


def test_decode_unknown_enum_number_open_with_allow_unknown_enums() -> None:
    """With allow_unknown_enums, any int32 number is kept (open enums), as protojson does."""
    assert decode_message(b'{"state":77}', job_pb2.Frame, allow_unknown_enums=True).state == 77
    err = _decode_error(b'{"state":4294967296}', job_pb2.Frame, allow_unknown_enums=True)
    assert "out of range" in err


def test_decode_unknown_enum_name_protojson_rules() -> None:
    """With allow_unknown_enums, an unknown name is dropped under DiscardUnknown (protojson)
    and refused when strict, as before the enum rule."""
    msg = decode_message(
        b'{"fEnum":"NOPE","r_enum":["RED","NOPE","GREEN"]}', AllTypes, allow_unknown_enums=True
    )
    assert msg.f_enum == 0 and list(msg.r_enum) == [1, 2]
    assert decode_message(b'{"state":"NOPE"}', job_pb2.Frame, allow_unknown_enums=True).state == 0
    err = _decode_error(
        b'{"state":"NOPE"}', job_pb2.Frame, discard_unknown=False, allow_unknown_enums=True
    )
    assert err == (
        'invalid value for field "state": expected a job.FrameState name or number, '
        'got "NOPE" (unknown enum value)'
    )


def test_decode_quoted_and_unusual_integers() -> None:
    """Integers may be quoted; integral forms like 1e2 and 3.0 are accepted, fractions are not."""
    msg = decode_message(
        b'{"maxRss":"1099511627776","used_memory":12,"number":"7","retryCount":1e2,'
        b'"exitStatus":-3.0}',
        job_pb2.Frame,
    )
    assert (msg.max_rss, msg.used_memory, msg.number) == (2**40, 12, 7)
    assert (msg.retry_count, msg.exit_status) == (100, -3)
    assert "not an integer" in _decode_error(b'{"number":1.5}', job_pb2.Frame)
    assert "not an integer" in _decode_error(b'{"number":"25e-1"}', job_pb2.Frame)
    assert 'got " 7"' in _decode_error(b'{"number":" 7"}', job_pb2.Frame)
    assert decode_message(b'{"fUint64":"18446744073709551615"}', AllTypes).f_uint64 == 2**64 - 1
    assert "out of range" in _decode_error(b'{"fUint32":-1}', AllTypes)
    assert decode_message(b'{"fUint32":"-0"}', AllTypes).f_uint32 == 0


def test_decode_int32_overflow_names_field() -> None:
    """A value beyond int32 is an error that names the nested field."""
    err = _decode_error(b'{"req":{"page":1099511627776}}', job_pb2.JobGetFramesRequest)
    assert err == (
        'invalid value for field "req.page": expected a 32-bit integer, got 1099511627776 '
        "(out of range)"
    )
    assert "out of range" in _decode_error(b'{"maxRss":9223372036854775808}', job_pb2.Frame)
    assert "out of range" in _decode_error(b'{"maxRss":1e30}', job_pb2.Frame)


def test_decode_floats() -> None:
    """Floats take numbers, numeric strings and NaN/Infinity strings; float32 rounds exactly."""
    msg = decode_message(
        b'{"fFloat":"NaN","fDouble":"-Infinity","rDouble":[1,"2.5",1e300]}', AllTypes
    )
    assert math.isnan(msg.f_float) and msg.f_double == -math.inf
    assert list(msg.r_double) == [1.0, 2.5, 1e300]
    # 16777217 lies halfway between two float32 values: ties to even gives 16777216.
    assert decode_message(b'{"fFloat":16777217}', AllTypes).f_float == 16777216.0
    assert decode_message(b'{"fFloat":0.1}', AllTypes).f_float == _f32(0.1)
    # Just above the largest float32 but below the rounding midpoint: the largest float32.
    assert decode_message(b'{"fFloat":3.40282356e38}', AllTypes).f_float == 3.4028234663852886e38
    assert "out of range" in _decode_error(b'{"fFloat":3.4028236e38}', AllTypes)
    assert "out of range" in _decode_error(b'{"fDouble":1e400}', AllTypes)
    assert "expected a number" in _decode_error(b'{"fFloat":"nan"}', AllTypes)
    assert "expected a number" in _decode_error(b'{"fFloat":true}', AllTypes)


def test_parse_float32_breaks_double_rounding_ties_exactly() -> None:
    """Decimal text just off a float32 midpoint rounds by its exact value, not via double."""
    mid = 1.0 + 2.0**-24  # halfway between 1.0 and the next float32
    decimal_above = "1.000000059604644775390625000000000000001"
    decimal_below = "1.000000059604644775390624999999999999999"
    assert Fraction(decimal_above) > Fraction(mid) > Fraction(decimal_below)
    assert float(decimal_above) == float(decimal_below) == mid  # both are the midpoint as doubles
    assert reference._parse_float32(decimal_above) == 1.0 + 2.0**-23
    assert reference._parse_float32(decimal_below) == 1.0
    assert reference._parse_float32("1.000000059604644775390625") == 1.0  # tie: even


def test_decode_bytes_variants() -> None:
    """bytes accept standard or URL-safe base64, padded or not."""
    assert decode_message(b'{"fBytes":"+/8="}', AllTypes).f_bytes == b"\xfb\xff"
    assert decode_message(b'{"fBytes":"-_8"}', AllTypes).f_bytes == b"\xfb\xff"
    assert decode_message(b'{"fBytes":"YQ"}', AllTypes).f_bytes == b"a"
    assert "base64" in _decode_error(b'{"fBytes":"YQ="}', AllTypes)
    assert "base64" in _decode_error(b'{"fBytes":"*"}', AllTypes)


def test_decode_empty_and_whitespace_body() -> None:
    """An empty or whitespace-only body is an empty request, as grpc-gateway ignores io.EOF."""
    for body in (b"", b"  \r\n\t "):
        msg = decode_message(body, job_pb2.JobGetFramesRequest)
        assert msg == job_pb2.JobGetFramesRequest() and not msg.HasField("req")


def test_decode_null_means_unset() -> None:
    """null leaves any kind of field unset."""
    msg = decode_message(
        b'{"job":null,"req":{"ids":null,"page":null,"states":null}}', job_pb2.JobGetFramesRequest
    )
    assert not msg.HasField("job") and msg.HasField("req")
    assert msg.req == job_pb2.FrameSearchCriteria()
    assert not decode_message(b'{"uid":null}', job_pb2.Job).HasField("uid")


def test_decode_unknown_fields() -> None:
    """Unknown fields are dropped by default and named in the error in strict mode."""
    msg = decode_message(
        b'{"r":{"show":"x","shows":["a"]},"extra":[1,{"a":2}]}', job_pb2.JobGetJobsRequest
    )
    assert list(msg.r.shows) == ["a"]
    err = _decode_error(b'{"r":{"show":"x"}}', job_pb2.JobGetJobsRequest, discard_unknown=False)
    assert err == 'unknown field "r.show"'


def test_decode_malformed_json_reports_position() -> None:
    """Malformed JSON reports line and column."""
    assert _decode_error(b'{"name": }', job_pb2.Job).startswith(
        "malformed JSON at line 1 column 10:"
    )
    assert _decode_error(b'{\n  "name": "x",\n}', job_pb2.Job).startswith(
        "malformed JSON at line 3 column 1:"
    )
    assert _decode_error(b'{"x": [1, NaN]}', job_pb2.Job) == (
        "malformed JSON at line 1 column 11: invalid literal NaN"
    )
    assert "invalid UTF-8" in _decode_error(b'{"name":"\xff"}', job_pb2.Job)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "an array"),
        (b'"x"', "a string"),
        (b"3", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_decode_non_object_body(body: bytes, kind: str) -> None:
    """A top-level value that is not an object is rejected."""
    assert _decode_error(body, job_pb2.Job) == (
        f"invalid request body: expected a JSON object, got {kind}"
    )


def test_decode_wrong_types_name_nested_path() -> None:
    """Wrong value types name the full path, including list indexes and map keys."""
    cls = job_pb2.JobGetFramesRequest
    assert _decode_error(b'{"req":{"include_finished":"yes"}}', cls) == (
        'invalid value for field "req.include_finished": expected a boolean, got "yes"'
    )
    assert _decode_error(b'{"req":{"ids":["a",3]}}', cls) == (
        'invalid value for field "req.ids[1]": expected a string, got 3'
    )
    assert _decode_error(b'{"req":{"states":{"frameStates":[true]}}}', cls).startswith(
        'invalid value for field "req.states.frameStates[0]"'
    )
    assert _decode_error(b'{"req":[]}', cls) == (
        'invalid value for field "req": expected an object, got an array'
    )
    assert _decode_error(b'{"req":{"ids":"a"}}', cls) == (
        'invalid value for field "req.ids": expected an array, got "a"'
    )
    assert _decode_error(b'{"rInner":[{"x":"z"}]}', AllTypes).startswith(
        'invalid value for field "rInner[0].x"'
    )
    assert _decode_error(b'{"mUint64":{"1":{"y":"q"}}}', AllTypes).startswith(
        'invalid value for field "mUint64["1"].y"'
    )


def test_decode_maps() -> None:
    """Map keys are parsed by key type; bad or duplicate keys are errors naming the field."""
    msg = decode_message(
        b'{"mBool":{"true":"t"},"mInt32":{"-4":1.5,"+7":2},"mUint64":{"9":{"x":1}},'
        b'"mEnum":{"a":"RED","b":2}}',
        AllTypes,
    )
    assert dict(msg.m_bool) == {True: "t"} and dict(msg.m_int32) == {-4: 1.5, 7: 2.0}
    assert msg.m_uint64[9].x == 1 and dict(msg.m_enum) == {"a": 1, "b": 2}
    lenient = decode_message(
        b'{"mEnum":{"a":"RED","c":"NOPE"}}', AllTypes, allow_unknown_enums=True
    )
    assert dict(lenient.m_enum) == {"a": 1}  # protojson drops the entry
    assert "invalid map key" in _decode_error(b'{"mInt32":{"x":1}}', AllTypes)
    assert "invalid map key" in _decode_error(b'{"mUint64":{"+1":{}}}', AllTypes)
    assert "duplicate map key" in _decode_error(b'{"mInt32":{"1":1,"01":2}}', AllTypes)


def test_decode_oneof_conflict() -> None:
    """Two non-null members of one oneof are rejected; a null member does not count."""
    assert "already set" in _decode_error(b'{"cString":"a","cInner":{}}', AllTypes)
    msg = decode_message(b'{"cString":null,"cInner":{}}', AllTypes)
    assert msg.WhichOneof("choice") == "c_inner"
    assert decode_message(b'{"oInt32":0}', AllTypes).HasField("o_int32")


def test_decode_ignores_data_after_first_value() -> None:
    """Like grpc-gateway's json.Decoder, bytes after the first JSON value are not read."""
    assert decode_message(b'{"name":"a"} trailing', job_pb2.Job).name == "a"


def test_decode_rejects_lone_surrogate_escape() -> None:
    """A \\ud800 escape with no pair is invalid text, as protojson rejects it."""
    assert "surrogate" in _decode_error(b'{"name":"\\ud800"}', job_pb2.Job)


def test_decode_deep_nesting_is_a_decode_error() -> None:
    """Absurd nesting gives RequestDecodeError, not RecursionError."""
    body = b'{"recursive":' * 5000 + b"{}" + b"}" * 5000
    assert "nested too deeply" in _decode_error(body, AllTypes)


def test_decode_accepts_str_and_memoryview() -> None:
    """Bodies may be passed as str or any bytes-like object."""
    assert decode_message('{"name":"é"}', job_pb2.Job).name == "é"
    assert decode_message(memoryview(b'{"name":"x"}'), job_pb2.Job).name == "x"


# ---------------------------------------------------------------------------------------------
# Whole-type checks: every OpenCue message type, then random messages of random types
# ---------------------------------------------------------------------------------------------


def _with_nulls(msg: Message, d: dict[str, Any]) -> dict[str, Any]:
    """Add the null that Go writes (and MessageToDict omits) for each unset message field."""
    for fd in msg.DESCRIPTOR.fields:
        if fd.type != T.TYPE_MESSAGE:
            continue
        key = fd.json_name
        if _is_map(fd):
            if fd.message_type.fields_by_name["value"].type == T.TYPE_MESSAGE:
                for k, sub in getattr(msg, fd.name).items():
                    map_key = ("true" if k else "false") if isinstance(k, bool) else str(k)
                    _with_nulls(sub, d[key][map_key])
        elif fd.is_repeated:
            for sub, sub_d in zip(getattr(msg, fd.name), d[key], strict=True):
                _with_nulls(sub, sub_d)
        elif msg.HasField(fd.name):
            _with_nulls(getattr(msg, fd.name), d[key])
        elif fd.containing_oneof is None:
            d[key] = None
    return d


def _same(ours: Any, theirs: Any, path: str = "$") -> None:
    """Assert two parsed JSON values agree, comparing numbers at float32 precision."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), path
        for k in theirs:
            _same(ours[k], theirs[k], f"{path}.{k}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, bool) or theirs is None or isinstance(theirs, str):
        assert ours == theirs and type(ours) is type(theirs), path
    else:
        assert isinstance(ours, int | float) and not isinstance(ours, bool), path
        assert ours == theirs or _f32(ours) == _f32(theirs), (path, ours, theirs)


def _check_shape(msg: Message, obj: Any) -> None:
    """Assert an object has exactly Go's keys, in declaration order, recursively."""
    desc = msg.DESCRIPTOR
    expected = [
        fd.json_name for fd in desc.fields if fd.containing_oneof is None or msg.HasField(fd.name)
    ]
    assert list(obj) == expected, desc.full_name
    for fd in desc.fields:
        if fd.type != T.TYPE_MESSAGE or fd.json_name not in obj:
            continue
        value = getattr(msg, fd.name)
        if _is_map(fd):
            if fd.message_type.fields_by_name["value"].type == T.TYPE_MESSAGE:
                for sub, sub_obj in zip(
                    (value[k] for k in sorted(value)), obj[fd.json_name].values(), strict=True
                ):
                    _check_shape(sub, sub_obj)
        elif fd.is_repeated:
            for sub, sub_obj in zip(value, obj[fd.json_name], strict=True):
                _check_shape(sub, sub_obj)
        elif obj[fd.json_name] is not None:
            _check_shape(value, obj[fd.json_name])


def _unnamed_enum_values(msg: Message) -> Iterator[int]:
    """Yield every enum value set in ``msg`` (at any depth) that its enum has no name for."""
    for fd, value in msg.ListFields():
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            items = list(value.values())
        elif fd.is_repeated:
            value_fd, items = fd, list(value)
        else:
            value_fd, items = fd, [value]
        for item in items:
            if value_fd.type == T.TYPE_MESSAGE:
                yield from _unnamed_enum_values(item)
            elif (
                value_fd.type == T.TYPE_ENUM
                and value_fd.enum_type.values_by_number.get(item) is None
            ):
                yield item


def _check_message(msg: Message) -> None:
    """Round-trip, compare with json_format (nulls added) and check key order and compactness.

    A message holding an enum number without a name round-trips only with
    allow_unknown_enums; by default its decode is refused.
    """
    data = encode_message(msg)
    for kw in ({}, {"discard_unknown": False}):
        assert decode_message(data, type(msg), allow_unknown_enums=True, **kw) == msg
        if any(True for _ in _unnamed_enum_values(msg)):
            assert "valid names: " in _decode_error(data, type(msg), **kw)
        else:
            assert decode_message(data, type(msg), **kw) == msg
    parsed = _loads(data)
    reference = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    _same(parsed, _with_nulls(msg, reference))
    _check_shape(msg, parsed)
    assert not re.search(rb"\s", _STRING_RE.sub(b"", data))


def _sample_value(fd: FieldDescriptor, seed: int) -> Any:
    """A deterministic non-default value for a scalar field."""
    t = fd.type
    if t == T.TYPE_ENUM:
        values = fd.enum_type.values
        return values[seed % len(values)].number if len(values) > 1 else 5
    if t in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return (1.5, 0.1, 1e-7, 3e21)[seed % 4]
    if t == T.TYPE_BOOL:
        return True
    if t == T.TYPE_STRING:
        return f"s{seed}<é>"
    if t == T.TYPE_BYTES:
        return bytes([seed % 256, 255])
    if t in (T.TYPE_UINT32, T.TYPE_FIXED32, T.TYPE_UINT64, T.TYPE_FIXED64):
        return 2**31 + seed if t in (T.TYPE_UINT32, T.TYPE_FIXED32) else 2**63 + seed
    if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
        return -(2**40) - seed
    return -1000 - seed


def _fill(msg: Message, depth: int) -> None:
    """Set every field of ``msg`` (the first member of each oneof), nesting ``depth`` levels."""
    seen_oneofs: set[str] = set()
    for i, fd in enumerate(msg.DESCRIPTOR.fields):
        oneof = fd.containing_oneof
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        is_message = fd.type == T.TYPE_MESSAGE
        if _is_map(fd):
            entry = fd.message_type
            key = _sample_value(entry.fields_by_name["key"], i)
            value_fd = entry.fields_by_name["value"]
            if value_fd.type == T.TYPE_MESSAGE:
                sub = getattr(msg, fd.name)[key]
                if depth > 0:
                    _fill(sub, depth - 1)
            else:
                getattr(msg, fd.name)[key] = _sample_value(value_fd, i)
        elif fd.is_repeated:
            if is_message:
                if depth > 0:
                    for _ in range(2):
                        _fill(getattr(msg, fd.name).add(), depth - 1)
            else:
                getattr(msg, fd.name).extend([_sample_value(fd, i), _sample_value(fd, i + 1)])
        elif is_message:
            if depth > 0:
                _fill(getattr(msg, fd.name), depth - 1)
                getattr(msg, fd.name).SetInParent()
        else:
            setattr(msg, fd.name, _sample_value(fd, i))


@pytest.mark.parametrize("depth", [0, 2])
def test_every_message_type(depth: int) -> None:
    """Every OpenCue message type, empty and fully filled, round-trips and matches json_format."""
    assert len(OPENCUE_TYPES) > 700
    for desc in ALL_TYPES:
        cls = _cls(desc)
        _check_message(cls())
        msg = cls()
        _fill(msg, depth)
        _check_message(msg)


_STRATEGIES: dict[tuple[str, int], st.SearchStrategy[Message]] = {}
_MAX_DEPTH = 2


def _scalar_strategy(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Random values for a scalar field type, including unnamed enum numbers."""
    t = fd.type
    if t in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if t in (T.TYPE_UINT32, T.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (T.TYPE_UINT64, T.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t == T.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=False)
    if t == T.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if t == T.TYPE_BOOL:
        return st.booleans()
    if t == T.TYPE_STRING:
        return st.text(max_size=6)
    if t == T.TYPE_BYTES:
        return st.binary(max_size=6)
    if t == T.TYPE_ENUM:
        names = st.sampled_from([v.number for v in fd.enum_type.values])
        return st.one_of(names, st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(t)


def _element_strategy(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    """Values for one element of a field, or None when nesting would go too deep."""
    if fd.type == T.TYPE_MESSAGE:
        if depth >= _MAX_DEPTH:
            return None
        return _message_strategy(fd.message_type, depth + 1)
    return _scalar_strategy(fd)


def _field_strategy(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Random contents for one field: a value, a list, a dict, or None for unset."""
    if _is_map(fd):
        entry = fd.message_type
        value = _element_strategy(entry.fields_by_name["value"], depth)
        if value is None:
            return st.just({})
        return st.dictionaries(_scalar_strategy(entry.fields_by_name["key"]), value, max_size=2)
    element = _element_strategy(fd, depth)
    if fd.is_repeated:
        return st.just([]) if element is None else st.lists(element, max_size=2)
    if element is None:
        return st.none()
    if fd.type == T.TYPE_MESSAGE:
        return st.none() | element
    return element


def _assemble(desc: Descriptor, fields: dict[str, Any], oneofs: tuple[Any, ...]) -> Message:
    """Build a message from drawn field contents."""
    msg = _cls(desc)()
    chosen = dict(x for x in oneofs if x is not None)
    for name, value in {**fields, **chosen}.items():
        fd = desc.fields_by_name[name]
        if value is None:
            continue
        if _is_map(fd):
            container = getattr(msg, name)
            for k, v in value.items():
                if isinstance(v, Message):
                    container[k].CopyFrom(v)
                else:
                    container[k] = v
        elif fd.is_repeated:
            getattr(msg, name).extend(value)
        elif fd.type == T.TYPE_MESSAGE:
            getattr(msg, name).CopyFrom(value)
            getattr(msg, name).SetInParent()
        else:
            setattr(msg, name, value)
    return msg


def _message_strategy(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random messages of one type; nesting stops at _MAX_DEPTH."""
    key = (desc.full_name, depth)
    if key not in _STRATEGIES:
        fields = {
            fd.name: _field_strategy(fd, depth) for fd in desc.fields if fd.containing_oneof is None
        }
        oneofs = [
            st.none()
            | st.one_of(
                *[st.tuples(st.just(fd.name), _field_strategy(fd, depth)) for fd in oneof.fields]
            )
            for oneof in desc.oneofs
        ]
        _STRATEGIES[key] = st.builds(
            lambda f, o, d=desc: _assemble(d, f, o),
            st.fixed_dictionaries(fields),
            st.tuples(*oneofs),
        )
    return _STRATEGIES[key]


_any_message = st.sampled_from(ALL_TYPES).flatmap(_message_strategy)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_any_message)
def test_random_messages_of_every_type(msg: Message) -> None:
    """Random messages round-trip and agree with json_format once Go's nulls are added."""
    _check_message(msg)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_message_strategy(AllTypes.DESCRIPTOR))
def test_random_all_types_messages(msg: Message) -> None:
    """Random messages of the every-scalar test type round-trip and agree with json_format."""
    _check_message(msg)


def _iter_floats(msg: Message) -> Iterator[tuple[FieldDescriptor, float]]:
    """Yield the singular float/double values of a message (helper for the NaN test)."""
    for fd, value in msg.ListFields():
        if fd.type in (T.TYPE_FLOAT, T.TYPE_DOUBLE) and not fd.is_repeated:
            yield fd, value


def test_nan_round_trips() -> None:
    """NaN is written as "NaN" and read back as NaN (message equality cannot show this)."""
    msg = AllTypes(f_float=math.nan, f_double=math.nan)
    data = encode_message(msg)
    assert b'"fDouble":"NaN","fFloat":"NaN"' in data
    back = decode_message(data, AllTypes)
    assert all(math.isnan(v) for _, v in _iter_floats(back))
    assert len(list(_iter_floats(back))) == 2
