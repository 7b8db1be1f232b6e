"""The analysis layer and the plots stay apart from the sweeps: importing any of their modules loads no sweep."""
import pkgutil
import subprocess
import sys

import bench.analysis
import bench.plots


def modules(package) -> list[str]:
    return [package.__name__] + [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def test_no_analysis_or_plots_module_imports_a_sweep():
    names = modules(bench.analysis) + modules(bench.plots)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bench.sweeps', 'bench.run', 'bench.isolate'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
