"""Tests for proto_gen: generated JSON encoders are current and byte-identical to the reference."""

from __future__ import annotations

import importlib
import importlib.resources
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from grpc_tools import protoc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opencue_proto import job_pb2
from test_jsoncodec import OPENCUE_TYPES, AllTypes, _cls, _fill, _message_strategy

from opencue_gw import codec
from opencue_gw.codec import encode_message
from proto_gen import generate

REPO = Path(__file__).resolve().parent.parent
CHECKED_IN = REPO / "proto_gen" / "opencue_codecs.py"

# A studio's own proto: every scalar type, repeated fields, maps with each key kind, a
# proto3 optional, a oneof whose member comes first, recursion, a custom json_name, an
# empty message, and a field of a type the studio module does not define (Empty).
STUDIO_PROTO = """
syntax = "proto3";
package gwstudio;
import "google/protobuf/empty.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Inner { int32 x = 1; float y = 2; }
message Nothing {}
message Leading {
  oneof pick { string first = 1; Inner first_inner = 2; }
  int64 after = 3;
}
message AllTypes {
  double f_double = 1; float f_float = 2; int32 f_int32 = 3; int64 f_int64 = 4;
  uint32 f_uint32 = 5; uint64 f_uint64 = 6; sint32 f_sint32 = 7; sint64 f_sint64 = 8;
  fixed32 f_fixed32 = 9; fixed64 f_fixed64 = 10; sfixed32 f_sfixed32 = 11;
  sfixed64 f_sfixed64 = 12; bool f_bool = 13; string f_string = 14; bytes f_bytes = 15;
  Color f_enum = 16; Inner f_inner = 17;
  repeated double r_double = 18; repeated Color r_enum = 19; repeated Inner r_inner = 20;
  repeated bytes r_bytes = 21; repeated uint64 r_uint64 = 22; repeated bool r_bool = 23;
  repeated float r_float = 24; repeated string r_string = 25; repeated sint32 r_sint32 = 26;
  map<bool, string> m_bool = 27; map<int32, double> m_int32 = 28;
  map<uint64, Inner> m_uint64 = 29; map<string, Color> m_enum = 30;
  optional int32 o_int32 = 31; optional int64 o_int64 = 32;
  oneof choice { string c_string = 33; Inner c_inner = 34; }
  AllTypes recursive = 35;
  int32 custom_json = 36 [json_name = "customName"];
  google.protobuf.Empty empty = 37; Nothing nothing = 38; Leading leading = 39;
}
"""

_STUDIO_TYPES = ("AllTypes", "Inner", "Nothing", "Leading")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """Compile the studio proto with grpc_tools.protoc and generate its codecs as a studio would."""
    root = tmp_path_factory.mktemp("studio")
    (root / "gwstudio").mkdir()
    (root / "gwstudio" / "__init__.py").write_text("")
    (root / "gwstudio" / "studio.proto").write_text(STUDIO_PROTO)
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    status = protoc.main(
        ["protoc", f"-I{root}", f"-I{include}", f"--python_out={root}", "gwstudio/studio.proto"]
    )
    assert status == 0
    sys.path.insert(0, str(root))
    try:
        argv = ["--module", "gwstudio.studio_pb2", "--out", str(root / "gwstudio")]
        assert generate.main(argv) == 0
        assert (root / "gwstudio" / "studio_codecs.py").is_file()
        yield (
            importlib.import_module("gwstudio.studio_pb2"),
            importlib.import_module("gwstudio.studio_codecs"),
        )
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "gwstudio" or m.startswith("gwstudio.")]:
            del sys.modules[name]


def _generated(codecs: ModuleType) -> dict[Descriptor, Callable[[Message], str]]:
    """The encoders of a generated module, asserting none of its sources is stale."""
    found, stale = codecs.encoders()
    assert stale == []
    return dict(found)


def test_checked_in_codecs_are_current(tmp_path: Path) -> None:
    """Regenerating from the installed opencue-proto reproduces proto_gen/opencue_codecs.py."""
    assert generate.main(["--out", str(tmp_path)]) == 0
    fresh = (tmp_path / "opencue_codecs.py").read_text(encoding="utf-8")
    assert fresh == CHECKED_IN.read_text(encoding="utf-8"), (
        "proto_gen/opencue_codecs.py is stale: run python -m proto_gen.generate"
    )


def test_every_opencue_type_has_a_generated_encoder() -> None:
    """The dispatching codec uses a generated encoder for each OpenCue message type."""
    assert len(OPENCUE_TYPES) > 700
    assert codec.generated_types() >= {d.full_name for d in OPENCUE_TYPES}


@pytest.mark.parametrize("depth", [0, 2])
def test_every_opencue_type_filled_matches_reference(depth: int) -> None:
    """Every OpenCue type, empty and with every field set, encodes to the reference's bytes."""
    for desc in OPENCUE_TYPES:
        cls = _cls(desc)
        msg = cls()
        assert codec.encode(msg) == encode_message(msg), desc.full_name
        _fill(msg, depth)
        assert codec.encode(msg) == encode_message(msg), desc.full_name


_opencue_message = st.sampled_from(OPENCUE_TYPES).flatmap(_message_strategy)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_opencue_message)
def test_random_opencue_messages_match_reference(msg: Message) -> None:
    """Random messages of random OpenCue types encode to exactly the reference's bytes."""
    assert codec.encode(msg) == encode_message(msg)


def test_large_answers_match_reference() -> None:
    """A 2,000-frame answer with unusual values encodes to the reference's bytes."""
    resp = job_pb2.JobGetFramesResponse()
    for i in range(2000):
        f = resp.frames.frames.add(id=f"id-{i}", name=f'{i:04d}-"quoted"\n\u00e9', number=i)
        f.state = i % 9  # includes numbers no FrameState value has
        f.max_rss = 2**62 + i
        if i % 3 == 0:
            f.frame_state_display_override.text = "\x00<&>"
    assert codec.encode(resp) == encode_message(resp)


def test_types_without_generated_encoder_use_reference() -> None:
    """A message type no generated module covers is encoded by the reference codec."""
    msg = AllTypes(f_int64=-5, f_string="x")
    assert AllTypes.DESCRIPTOR.full_name not in codec.generated_types()
    assert codec.encode(msg) == encode_message(msg)


def test_studio_codecs_cover_their_types(studio: tuple[ModuleType, ModuleType]) -> None:
    """Codecs generated for a studio module cover each of its message types."""
    pb2, codecs = studio
    found = _generated(codecs)
    assert {d.full_name for d in found} == {f"gwstudio.{n}" for n in _STUDIO_TYPES}
    assert found[pb2.AllTypes.DESCRIPTOR](pb2.AllTypes()).startswith('{"fDouble":0,')


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_studio_random_messages_match_reference(
    studio: tuple[ModuleType, ModuleType], data: st.DataObject
) -> None:
    """Random studio messages (every scalar, maps, oneofs, recursion) match the reference."""
    pb2, codecs = studio
    found = _generated(codecs)
    name = data.draw(st.sampled_from(_STUDIO_TYPES))
    msg = data.draw(_message_strategy(getattr(pb2, name).DESCRIPTOR))
    assert found[msg.DESCRIPTOR](msg).encode("utf-8") == encode_message(msg)


def test_studio_leading_oneof_member(studio: tuple[ModuleType, ModuleType]) -> None:
    """A oneof member declared first is omitted without leaving a stray comma."""
    pb2, codecs = studio
    enc = _generated(codecs)[pb2.Leading.DESCRIPTOR]
    assert enc(pb2.Leading(after=3)) == '{"after":"3"}'
    assert enc(pb2.Leading(first="a")) == '{"first":"a","after":"0"}'
    assert enc(pb2.Leading(first_inner=pb2.Inner())) == '{"firstInner":{"x":0,"y":0},"after":"0"}'


def test_stale_descriptor_disables_generated_module(
    studio: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a source descriptor changed since generation, no encoder of that module is used."""
    _pb2, codecs = studio
    files: dict[str, Any] = dict(codecs._FILES)
    _digest, types = files["gwstudio.studio_pb2"]
    files["gwstudio.studio_pb2"] = ("0" * 64, types)
    monkeypatch.setattr(codecs, "_FILES", files)
    assert codecs.encoders() == ({}, ["gwstudio.studio_pb2"])
    before = codec.generated_types()
    assert codec.use_codecs("gwstudio.studio_codecs") == ["gwstudio.studio_pb2"]
    assert codec.generated_types() == before
