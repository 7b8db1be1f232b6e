"""The import graph: every module imports on its own, and the project's own imports form no cycle.

(a) each module under bench/ and variants/ imports in a fresh interpreter (one child process that clears the
project's modules from ``sys.modules`` before each import); (b) the static graph of ``import`` / ``from ...
import`` statements between project modules, function-level ones included, has no cycle, ``variants`` never
imports ``bench``, and ``bench.analysis`` / ``bench.plots`` (where they exist) never import ``bench.sweeps``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "variants")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (``bench/suite`` too: asv imports it)."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Dotted names of the project modules (or their attributes) that ``path`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {n for n in found if n.split(".")[0] in PACKAGES}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted name refers to: itself, else the longest module prefix (an attribute)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> nx.DiGraph:
    """Module -> module for every project import (a module's own package ``__init__`` is not an edge to it)."""
    modules = project_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in imported_names(path, name):
            target = resolve(target, modules)
            if target and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in project_modules() if not n.endswith("__main__"))  # __main__ runs the CLI
    code = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("bench", "variants")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_the_static_import_graph_has_no_cycle():
    graph = import_graph()
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([a for a, _ in cycle] + [cycle[-1][1]])
    pytest.fail(f"import cycle: {path}")


@pytest.mark.parametrize("source, forbidden", [
    ("variants", "bench"),
    ("bench.analysis", "bench.sweeps"),
    ("bench.plots", "bench.sweeps"),
])
def test_layer_rule(source, forbidden):
    """``source`` (and everything under it) never imports ``forbidden``. A layer of the house that is not a
    package yet (``bench/analysis/``, ``bench/plots/``) is skipped, not failed."""
    if not (ROOT / source.replace(".", "/")).is_dir():
        pytest.skip(f"{source} is not a package in this tree yet")
    graph = import_graph()
    sources = [n for n in graph if n == source or n.startswith(source + ".")]
    bad = [f"{a} -> {b}" for a in sources for b in graph.successors(a) if b == forbidden or
           b.startswith(forbidden + ".")]
    assert not bad, f"{source} must not import {forbidden}: " + ", ".join(bad)
