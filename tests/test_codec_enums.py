"""The enum rule of request decoding: a value the field's enum does not have is refused.

An unknown enum name or number in a request body is a 400 that names the field and lists the
valid names, wherever the field sits (repeated, map value, nested message, oneof), because
dropping it (protojson's DiscardUnknown) turns ``EatFrames`` with a mistyped state into "eat
every frame". ``allow_unknown_enums=True`` restores protojson's behaviour.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opencue_proto import job_pb2
from test_jsoncodec import OPENCUE_TYPES, AllTypes, _cls, _message_strategy, _unnamed_enum_values

from opencue_gw import codec
from opencue_gw.codec import RequestDecodeError, decode_message, reference

T = FieldDescriptor
FRAME_STATES = [v.name for v in job_pb2.FrameState.DESCRIPTOR.values]
COLORS = "valid names: COLOR_UNSPECIFIED, RED, GREEN"
EAT_FRAMES_TYPO = b'{"job":{"id":"J"},"req":{"states":{"frame_states":["DAED"]}}}'


def _error(body: bytes | str, cls: type[Message], **kw: Any) -> str:
    """Decode a body that must be refused and return the message the client would see."""
    with pytest.raises(RequestDecodeError) as info:
        decode_message(body, cls, **kw)
    return str(info.value)


def test_eat_frames_typo_is_refused() -> None:
    """The EatFrames typo names the field path and lists every FrameState name."""
    err = _error(EAT_FRAMES_TYPO, job_pb2.JobEatFramesRequest)
    assert err == (
        'invalid value for field "req.states.frame_states[0]": expected a job.FrameState name '
        'or number, got "DAED" (unknown enum name; valid names: ' + ", ".join(FRAME_STATES) + ")"
    )
    assert "DEAD" in FRAME_STATES


def test_eat_frames_typo_is_refused_with_strict_json_too() -> None:
    """The rule does not depend on discard_unknown: strict decoding refuses it the same way."""
    err = _error(EAT_FRAMES_TYPO, job_pb2.JobEatFramesRequest, discard_unknown=False)
    assert 'field "req.states.frame_states[0]"' in err and "valid names: WAITING," in err


def test_path_uses_the_key_the_client_sent() -> None:
    """A camelCase body gets its own spelling back in the path."""
    body = b'{"req":{"states":{"frameStates":["DEAD","DAED"]}}}'
    err = _error(body, job_pb2.JobEatFramesRequest)
    assert err.startswith('invalid value for field "req.states.frameStates[1]"')


@pytest.mark.parametrize("number", ["77", "-1", "8", "2147483648", "-2147483649", "1e3"])
def test_number_without_a_value_is_refused(number: str) -> None:
    """A number no FrameState value has (in int32 range or not) is refused, listing the names."""
    body = '{"req":{"states":{"frame_states":[5,' + number + "]}}}"
    err = _error(body, job_pb2.JobEatFramesRequest)
    assert err == (
        'invalid value for field "req.states.frame_states[1]": expected a job.FrameState name '
        f"or number, got {number} (no value has this number; valid names: "
        + ", ".join(FRAME_STATES)
        + ")"
    )


def test_allow_unknown_enums_drops_unknown_names() -> None:
    """allow_unknown_enums gives the Go gateway's answer: the typo vanishes from the filter."""
    msg = decode_message(EAT_FRAMES_TYPO, job_pb2.JobEatFramesRequest, allow_unknown_enums=True)
    assert msg.job.id == "J" and msg.HasField("req") and msg.req.HasField("states")
    assert list(msg.req.states.frame_states) == []


def test_allow_unknown_enums_keeps_unnamed_numbers() -> None:
    """allow_unknown_enums keeps an int32 number without a name (proto3 enums are open)."""
    body = b'{"req":{"states":{"frame_states":[77,-1,"DEAD"]}}}'
    msg = decode_message(body, job_pb2.JobEatFramesRequest, allow_unknown_enums=True)
    assert list(msg.req.states.frame_states) == [77, -1, job_pb2.DEAD]
    body = b'{"req":{"states":{"frame_states":[2147483648]}}}'
    err = _error(body, job_pb2.JobEatFramesRequest, allow_unknown_enums=True)
    assert err.endswith("(out of range)")


def test_allow_unknown_enums_with_strict_json_refuses_names_as_protojson_does() -> None:
    """protojson without DiscardUnknown refuses unknown names; allow_unknown_enums keeps that."""
    err = _error(
        EAT_FRAMES_TYPO,
        job_pb2.JobEatFramesRequest,
        discard_unknown=False,
        allow_unknown_enums=True,
    )
    assert err.endswith('got "DAED" (unknown enum value)')


def test_valid_names_and_numbers_still_decode() -> None:
    """Every FrameState name and number decodes, alone and mixed."""
    names = json.dumps(FRAME_STATES)
    numbers = json.dumps([v.number for v in job_pb2.FrameState.DESCRIPTOR.values])
    for states in (names, numbers, '["DEAD", 5, 5.0e0]'):
        body = '{"req":{"states":{"frame_states":' + states + "}}}"
        msg = decode_message(body, job_pb2.JobEatFramesRequest)
        assert len(msg.req.states.frame_states) == len(json.loads(states))
    assert decode_message(b'{"state":"DEAD"}', job_pb2.Frame).state == job_pb2.DEAD


def test_unknown_fields_are_still_ignored_by_default() -> None:
    """Unknown fields and unknown enum values are separate switches: only the enum is refused."""
    msg = decode_message(b'{"extra":"x","state":"DEAD"}', job_pb2.Frame)
    assert msg.state == job_pb2.DEAD
    assert "valid names" in _error(b'{"extra":"x","state":"DAED"}', job_pb2.Frame)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"fEnum":"BLUE"}', "fEnum"),
        (b'{"f_enum":3}', "f_enum"),
        (b'{"rEnum":["RED","BLUE"]}', "rEnum[1]"),
        (b'{"rEnum":[1,2,3]}', "rEnum[2]"),
        (b'{"mEnum":{"k":"BLUE"}}', 'mEnum["k"]'),
        (b'{"mEnum":{"k":-7}}', 'mEnum["k"]'),
        (b'{"cEnum":"BLUE"}', "cEnum"),
        (b'{"recursive":{"recursive":{"cEnum":9}}}', "recursive.recursive.cEnum"),
        (b'{"recursive":{"mEnum":{"a":"RED","b":"blue"}}}', 'recursive.mEnum["b"]'),
    ],
)
def test_every_field_shape_is_covered(body: bytes, path: str) -> None:
    """Singular, repeated, map values, oneof members and nested messages all follow the rule."""
    err = _error(body, AllTypes)
    assert err.startswith(f'invalid value for field "{path}": expected a gwtest.Color')
    assert err.endswith(f"; {COLORS})")
    decode_message(body, AllTypes, allow_unknown_enums=True)  # protojson accepts every one


def test_oneof_with_unknown_name_dropped_leaves_oneof_unset() -> None:
    """With allow_unknown_enums a dropped oneof member leaves the oneof unset."""
    msg = decode_message(b'{"cEnum":"BLUE"}', AllTypes, allow_unknown_enums=True)
    assert msg.WhichOneof("choice") is None


def test_decode_is_one_path() -> None:
    """The package's decode_message is the reference's: no generated decoder can disagree."""
    assert codec.decode_message is reference.decode_message


# ---------------------------------------------------------------------------------------------
# Property tests over every OpenCue request type with an enum field
# ---------------------------------------------------------------------------------------------


def _enum_fields() -> list[tuple[Descriptor, FieldDescriptor]]:
    """Every (message type, field) of the OpenCue protos whose values are an enum."""
    found = []
    for desc in OPENCUE_TYPES:
        for fd in desc.fields:
            value_fd = fd
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type == T.TYPE_ENUM:
                found.append((desc, fd))
    return found


ENUM_FIELDS = _enum_fields()


def _body_with(fd: FieldDescriptor, value: Any) -> tuple[str, str]:
    """A JSON body setting ``fd`` to hold ``value`` once, and the path the error must name."""
    if fd.message_type is not None:  # a map with enum values
        key_fd = fd.message_type.fields_by_name["key"]
        key = (
            "true" if key_fd.type == T.TYPE_BOOL else ("k" if key_fd.type == T.TYPE_STRING else "1")
        )
        return json.dumps({fd.name: {key: value}}), f"{fd.name}[{json.dumps(key)}]"
    if fd.is_repeated:
        return json.dumps({fd.name: [value]}), f"{fd.name}[0]"
    return json.dumps({fd.name: value}), fd.name


_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_opencue_protos_have_enum_fields_to_check() -> None:
    """The property tests below have something to range over (frame states among them)."""
    names = {(d.full_name, f.name) for d, f in ENUM_FIELDS}
    assert ("job.FrameStateSeq", "frame_states") in names and len(names) > 20


@_SETTINGS
@given(data=st.data())
def test_unknown_name_refused_in_every_opencue_enum_field(data: st.DataObject) -> None:
    """For any OpenCue enum field, a name its enum lacks is refused with path and names;
    allow_unknown_enums drops it."""
    desc, fd = data.draw(st.sampled_from(ENUM_FIELDS))
    enum = (fd.message_type.fields_by_name["value"] if fd.message_type else fd).enum_type
    names = [v.name for v in enum.values]
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in enum.values_by_name))
    body, path = _body_with(fd, name)
    cls = _cls(desc)
    err = _error(body, cls)
    assert err.startswith(f'invalid value for field "{path}": expected a {enum.full_name}')
    assert err.endswith("(unknown enum name; valid names: " + ", ".join(names) + ")")
    assert decode_message(body, cls, allow_unknown_enums=True) == cls()


@_SETTINGS
@given(data=st.data())
def test_unnamed_number_refused_in_every_opencue_enum_field(data: st.DataObject) -> None:
    """For any OpenCue enum field, a number no value has is refused with path and names;
    allow_unknown_enums keeps it."""
    desc, fd = data.draw(st.sampled_from(ENUM_FIELDS))
    enum = (fd.message_type.fields_by_name["value"] if fd.message_type else fd).enum_type
    number = data.draw(
        st.integers(-(2**31), 2**31 - 1).filter(lambda n: n not in enum.values_by_number)
    )
    body, path = _body_with(fd, number)
    cls = _cls(desc)
    err = _error(body, cls)
    assert err.startswith(f'invalid value for field "{path}": expected a {enum.full_name}')
    assert err.endswith(
        f"got {number} (no value has this number; valid names: {', '.join(enum.values_by_name)})"
    )
    kept = decode_message(body, cls, allow_unknown_enums=True)
    assert list(_unnamed_enum_values(kept)) == [number]


_opencue_message = st.sampled_from(OPENCUE_TYPES).flatmap(_message_strategy)


@_SETTINGS
@given(_opencue_message)
def test_generated_encoding_agrees_with_the_decoder(msg: Message) -> None:
    """What the generated encoders write decodes back (named enums), or is refused exactly
    when it holds an enum number without a name, and then accepted with allow_unknown_enums."""
    data = codec.encode(msg)
    assert data == codec.encode_message(msg)
    unnamed = list(_unnamed_enum_values(msg))
    if unnamed:
        assert "no value has this number" in _error(data, type(msg))
    else:
        assert decode_message(data, type(msg)) == msg
    assert decode_message(data, type(msg), allow_unknown_enums=True) == msg
