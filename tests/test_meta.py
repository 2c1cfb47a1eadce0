"""Static checks over the gateway's own modules (C{opencue_gw})."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "opencue_gw"


def gateway_modules() -> list[Path]:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 15, modules
    return modules


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_level(node: ast.AST) -> Iterator[ast.AST]:
    """Every node outside function bodies (class bodies run at import, so they count)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield child
        yield from module_level(child)


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def imports_global_reactor(tree: ast.AST) -> bool:
    for node in module_level(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "twisted.internet":
            if any(alias.name == "reactor" for alias in node.names):
                return True
        if isinstance(node, ast.Import):
            if any(alias.name == "twisted.internet.reactor" for alias in node.names):
                return True
    return False


def test_scanner_detects_reactor_import() -> None:
    """The reactor check recognises a module-level import and ignores a function-level one."""
    assert imports_global_reactor(ast.parse("from twisted.internet import reactor\n"))
    assert imports_global_reactor(
        ast.parse("try:\n    import twisted.internet.reactor\nexcept E:\n    pass\n")
    )
    assert not imports_global_reactor(
        ast.parse("def f():\n    from twisted.internet import reactor\n")
    )


@pytest.mark.parametrize("path", gateway_modules(), ids=lambda p: p.name)
def test_no_module_level_reactor_import(path: Path) -> None:
    """No gateway module imports the global reactor at import time (twistd chooses it)."""
    assert not imports_global_reactor(parse(path))


@pytest.mark.parametrize("path", gateway_modules(), ids=lambda p: p.name)
def test_module_docstring(path: Path) -> None:
    """Every gateway module starts with a docstring."""
    docstring = ast.get_docstring(parse(path))
    assert docstring and docstring.strip()


@pytest.mark.parametrize("path", sorted((PACKAGE / "upstream").glob("*.py")), ids=lambda p: p.name)
def test_upstream_does_not_import_the_http_side(path: Path) -> None:
    """The upstream layers know nothing of HTTP: requests flow one way, answers back."""
    names = imported_modules(parse(path))
    assert not any(
        name == "opencue_gw.api" or name.startswith(("opencue_gw.http", "opencue_gw.rest"))
        for name in names
    )


@pytest.mark.parametrize("path", gateway_modules(), ids=lambda p: p.name)
def test_test_case_names_exist(path: Path) -> None:
    """A module's test-case-name header names test modules that exist (trial runs them)."""
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    match = re.match(r"# -\*- test-case-name: (.*) -\*-$", first)
    if match is None:
        return
    for name in match.group(1).split(","):
        module = PACKAGE.parent.joinpath(*name.strip().split(".")).with_suffix(".py")
        assert module.exists(), f"{path.name} names {name}, which does not exist"


def test_api_does_not_import_grpc() -> None:
    """The HTTP side (api.py) never touches grpc directly."""
    names = imported_modules(parse(PACKAGE / "api.py"))
    assert names, "the AST scan found no import in api.py"
    assert not any(name == "grpc" or name.startswith("grpc.") for name in names)


def test_only_cuebot_imports_grpc() -> None:
    """cuebot.py is the single gateway module that imports grpc."""
    importers = {
        path.name
        for path in gateway_modules()
        if any(n == "grpc" or n.startswith("grpc.") for n in imported_modules(parse(path)))
    }
    assert importers == {"cuebot.py"}


@pytest.mark.parametrize("path", gateway_modules(), ids=lambda p: p.name)
def test_no_print_calls(path: Path) -> None:
    """Gateway modules log or write to a stream; they never call print()."""
    calls = [
        node.lineno
        for node in ast.walk(parse(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert calls == []
