"""The package's layout is enforced: its wings import only downward (pyproject.toml's
[tool.importlinter] contracts), and no modules or folders import each other in a circle."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

import grimp
import pytest
from importlinter.cli import lint_imports

from tests.conftest import REPO


def test_the_import_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out[-4000:]


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_no_import_cycle_between_modules_or_folders(depth):
    """Cut each module's dotted name at `depth` parts (emoclip.models, emoclip.models.base): the
    imports between those units (inside functions too) form no cycle."""
    graph = grimp.build_graph("emoclip")
    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        unit = ".".join(module.split(".")[:depth])
        for imported in graph.find_modules_directly_imported_by(module):
            other = ".".join(imported.split(".")[:depth])
            if other != unit and not unit.startswith(other + "."):  # a package's own __init__
                imports.setdefault(unit, set()).add(other)
    try:
        tuple(TopologicalSorter(imports).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle at depth {depth}: {' -> '.join(err.args[1])}")
