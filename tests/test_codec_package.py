"""The codec's package boundaries: lazy loading, the generated side's public API, no side effects.

``opencue_gw.codec`` is the hand-written side (reference codec, dispatcher, value formats, the
runtime API); ``proto_gen`` holds only generated code and its generator. Generated modules may
use only :mod:`opencue_gw.codec.runtime`, and nothing is loaded or built until the first
encode or decode needs it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from opencue_proto import job_pb2
from twisted.logger import Logger

from opencue_gw import codec
from opencue_gw.codec import dispatch, runtime

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "proto_gen" / "opencue_codecs.py"

# Run in a fresh interpreter: what importing the codec (and the gateway modules that use it)
# loads and builds, before and after the first encode and decode.
_PROBE = """
import json, sys, warnings
filters = list(warnings.filters)
report = {}
import opencue_gw.codec
from opencue_gw.codec import dispatch, reference
def state():
    return {
        "generated_imported": "proto_gen.opencue_codecs" in sys.modules,
        "generated_loaded": dispatch._GENERATED.loaded,
        "encoder_plans": len(reference._ENCODERS),
        "decoder_tables": len(reference._DECODERS),
    }
report["codec"] = state()
report["warning_filters_unchanged"] = warnings.filters == filters
import opencue_gw.api, opencue_gw.errors, opencue_gw.rest.handler, opencue_gw.tap
report["gateway"] = state()
from opencue_proto import job_pb2
opencue_gw.codec.decode_message(b'{"req":{"states":{"frameStates":["DEAD"]}}}',
                                job_pb2.JobEatFramesRequest)
report["decoded"] = state()
opencue_gw.codec.encode(job_pb2.Frame())
report["encoded"] = state()
print(json.dumps(report))
"""


def _probe() -> dict[str, Any]:
    """Run the probe script in a new interpreter and return its report."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_codecs_load_lazily() -> None:
    """Importing the codec and the gateway loads no generated module and builds no table;
    a decode builds only decoder tables; the first encode loads the generated codecs."""
    report = _probe()
    idle = {
        "generated_imported": False,
        "generated_loaded": False,
        "encoder_plans": 0,
        "decoder_tables": 0,
    }
    assert report["codec"] == idle
    assert report["gateway"] == idle
    decoded = report["decoded"]
    assert not decoded["generated_imported"] and decoded["encoder_plans"] == 0
    assert decoded["decoder_tables"] > 0
    assert report["encoded"]["generated_imported"] and report["encoded"]["generated_loaded"]
    assert report["encoded"]["encoder_plans"] == 0  # the generated encoder did the work


def test_import_has_no_warning_filter_side_effect() -> None:
    """Importing the codec changes no process-wide warnings filter."""
    assert _probe()["warning_filters_unchanged"]


def test_public_names_callers_use() -> None:
    """opencue_gw.codec exports every name callers import from it (and used to from jsoncodec)."""
    for name in (
        "RequestDecodeError",
        "decode_message",
        "encode",
        "encode_message",
        "encode_status",
        "generated_types",
        "use_codecs",
    ):
        assert name in codec.__all__ and callable(getattr(codec, name)), name


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from X import name`` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def test_generated_module_uses_only_the_runtime_api() -> None:
    """The generated module imports from the gateway only public names of codec.runtime."""
    gateway = [(m, n) for m, n in _imports(GENERATED) if m.startswith("opencue_gw")]
    assert gateway, "the generated module should use the runtime helpers"
    for module, name in gateway:
        assert module == "opencue_gw.codec.runtime", module
        assert name in runtime.__all__, name


def test_runtime_api_is_public_and_complete() -> None:
    """Every runtime name is public and defined, so a generated module can rely on it."""
    for name in runtime.__all__:
        assert not name.startswith("_") and hasattr(runtime, name), name


def test_no_private_codec_names_used_outside_the_package() -> None:
    """Outside opencue_gw/codec, no module imports a private name of the codec package."""
    sources = [
        *(REPO / "opencue_gw").rglob("*.py"),
        *(REPO / "proto_gen").glob("*.py"),
        *(REPO / "bench").glob("*.py"),
    ]
    outside = [p for p in sources if p.relative_to(REPO).parts[:2] != ("opencue_gw", "codec")]
    assert GENERATED in outside
    offenders = [
        (str(path.relative_to(REPO)), module, name)
        for path in outside
        for module, name in _imports(path)
        if module.startswith("opencue_gw.codec") and name.startswith("_")
    ]
    assert offenders == []


def test_proto_gen_holds_only_generated_code_and_its_generator() -> None:
    """Nothing hand-written lives in proto_gen besides the generator (and the package init)."""
    files = sorted(p.name for p in (REPO / "proto_gen").glob("*.py"))
    assert files == ["__init__.py", "generate.py", "opencue_codecs.py"]
    assert GENERATED.read_text(encoding="utf-8").startswith("# Generated by ")


def test_generated_files_are_marked_in_gitattributes() -> None:
    """.gitattributes marks the generated codecs linguist-generated."""
    lines = (REPO / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert "proto_gen/opencue_codecs.py linguist-generated=true" in lines


def test_unimportable_default_codecs_fall_back_to_the_reference() -> None:
    """If the generated module cannot be imported, encoding still works, and it is logged."""
    events: list[dict[str, Any]] = []
    encoders = dispatch.GeneratedEncoders("opencue_gw_no_such_codecs")
    encoders.log = Logger(observer=events.append)
    assert not encoders.loaded
    assert encoders.table() == {}
    assert encoders.loaded
    assert len(events) == 1 and events[0]["codecs"] == "opencue_gw_no_such_codecs"
    assert encoders.table() == {} and len(events) == 1  # tried once, not per call


def test_studio_module_adds_to_the_defaults() -> None:
    """use() loads the default module first, then adds; the table is replaced, not mutated."""
    encoders = dispatch.GeneratedEncoders(dispatch.DEFAULT_CODECS)
    assert encoders.use(dispatch.DEFAULT_CODECS) == []
    table = encoders.table()
    assert job_pb2.Frame.DESCRIPTOR in table
    assert encoders.use(dispatch.DEFAULT_CODECS) == []
    assert encoders.table() is not table and encoders.table() == table
