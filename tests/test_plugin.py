"""Tests for the twistd plugin stub C{twisted/plugins/opencue_gateway.py}."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

REPO = Path(__file__).resolve().parent.parent
STUB = REPO / "twisted" / "plugins" / "opencue_gateway.py"


def gateway_plugins() -> list[IServiceMaker]:
    """
    The opencue-gateway plugins twistd would find when run from the checkout.

    C{twisted.plugins.__path__} is built from C{sys.path} when first imported; twistd run
    from the checkout (or a wheel install) has the repository's C{twisted/plugins} on it,
    but the pytest script does not put the checkout on C{sys.path}, so it is added here.
    """
    import twisted.plugins

    here = str(REPO / "twisted" / "plugins")
    path = twisted.plugins.__path__
    added = here not in path
    if added:
        path.append(here)
    try:
        return [
            p for p in getPlugins(IServiceMaker, twisted.plugins) if p.tapname == "opencue-gateway"
        ]
    finally:
        if added:
            path.remove(here)


def test_plugin_discovered() -> None:
    """Exactly one IServiceMaker plugin has the tapname opencue-gateway."""
    plugins = gateway_plugins()
    assert len(plugins) == 1
    assert plugins[0].description
    assert plugins[0].module == "opencue_gw.tap"


def test_plugin_provides_iservicemaker() -> None:
    """The plugin fully provides IServiceMaker (options, makeService, names)."""
    (plugin,) = gateway_plugins()
    assert verifyObject(IServiceMaker, plugin)
    from opencue_gw.tap import Options, makeService

    assert plugin.options is Options
    assert plugin.makeService is makeService


def test_no_init_files_in_plugin_dirs() -> None:
    """twisted/ and twisted/plugins/ stay namespace directories, not packages."""
    assert STUB.is_file()
    assert not (REPO / "twisted" / "__init__.py").exists()
    assert not (REPO / "twisted" / "plugins" / "__init__.py").exists()


def test_stub_imports_nothing_heavy() -> None:
    """The stub imports neither opencue_gw nor klein, so twistd keeps the reactor choice."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert imported, "the AST scan found no import at all"
    for name in imported:
        root = name.split(".")[0]
        assert root not in {"opencue_gw", "klein"}, name


def test_plugin_options_come_from_the_settings_table() -> None:
    """tap.Options, which twistd uses, is the one made from the settings table."""
    (plugin,) = gateway_plugins()
    from opencue_gw.settings import SETTINGS, Options

    assert plugin.options is Options
    names = {row[0] for row in plugin.options.optParameters} | {
        row[0] for row in plugin.options.optFlags
    }
    assert names | {"port"} == {entry.option for entry in SETTINGS if entry.option}
