"""The simulator is its own package: it must not depend on the gateway it is used to test."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "opencue_sandbox"


def gateway_imports(path: Path) -> list[str]:
    """Every import in a file that names ``opencue_gw`` (or a module under it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend(
            f"{path.name}:{node.lineno} {name}"
            for name in names
            if name == "opencue_gw" or name.startswith("opencue_gw.")
        )
    return found


def test_scanner_sees_a_gateway_import(tmp_path: Path) -> None:
    """The scanner itself finds both import forms (so the real check below can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import opencue_gw.upstream.rpcs\nfrom opencue_gw import codec\nimport os\n")
    assert gateway_imports(sample) == [
        "sample.py:1 opencue_gw.upstream.rpcs",
        "sample.py:2 opencue_gw",
    ]


def test_sandbox_imports_nothing_from_the_gateway() -> None:
    """No file of opencue_sandbox imports opencue_gw, at module level or inside a function."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 30, files
    offenders = [hit for path in files for hit in gateway_imports(path)]
    assert offenders == []


def test_importing_the_sandbox_loads_no_gateway_module() -> None:
    """Starting the simulator's command and server modules does not load opencue_gw."""
    code = (
        "import sys\n"
        "import opencue_sandbox, opencue_sandbox.__main__, opencue_sandbox.bench\n"
        "import opencue_sandbox.probe\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opencue_gw'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
