"""The package's layout is enforced: its wings import only downward (pyproject.toml's
[tool.importlinter] contracts), and no modules or folders import each other in a circle."""

from __future__ import annotations

import subprocess
import sys
from graphlib import CycleError, TopologicalSorter

import grimp
import pytest

from tests.conftest import REPO


def test_the_import_contracts_hold():
    # In a process of its own: import-linter's command reconfigures logging (it would silence
    # the loggers of the tests that run after it).
    lint = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    done = subprocess.run([sys.executable, "-c", lint], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


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
