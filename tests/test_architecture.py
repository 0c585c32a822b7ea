"""The tree shows the architecture: every module imports (the Flower app and the benchmarks too), no import cycle
anywhere in the package, every subpackage documents itself, no module over 400 lines."""

import importlib
import pkgutil
import subprocess
import sys

import grimp
import networkx as nx
import pytest

import surf
from tests.conftest import REPO

MODULES = sorted(m.name for m in pkgutil.walk_packages(surf.__path__, "surf."))
BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_script_starts(script):
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout, out.stderr[-500:]


def test_no_import_cycles():
    graph = grimp.build_graph("surf")
    edges = nx.DiGraph([(m, dep) for m in graph.modules for dep in graph.find_modules_directly_imported_by(m)])
    cycles = list(nx.simple_cycles(edges, length_bound=6))
    assert not cycles, cycles[:5]


def test_every_subpackage_has_a_docstring_and_no_module_is_too_long():
    for path in (REPO / "surf").rglob("*.py"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 400, f"{path} has {len(lines)} lines"
        if path.name == "__init__.py":
            assert lines and lines[0].startswith('"""'), f"{path} has no docstring"
