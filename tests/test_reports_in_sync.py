"""The committed reference reports were generated from the committed reference results: regenerating gives the
same tables (report.md, byte for byte) and the same set of figures. Each machine's evidence is a pair
``results/reference/<machine>/`` → ``reports/reference/<machine>/`` (``cpu-amd-epyc-2core``: the quick and full
CPU runs; ``cuda-h200``: the quick sweeps ``.ci/gpu-check`` ran on an H200). A user's own runs (``results/runs``)
and the report the main job writes (``reports/``) are not committed."""
from pathlib import Path

import pytest

from bench.report import build_report

ROOT = Path(__file__).resolve().parents[1]
MACHINES = sorted(p.name for p in (ROOT / "results" / "reference").iterdir() if p.is_dir())


def test_the_reference_machines_are_committed():
    assert {"cpu-amd-epyc-2core", "cuda-h200"} <= set(MACHINES)


@pytest.mark.parametrize("machine", MACHINES)
def test_committed_report_regenerates_identically(tmp_path, machine):
    results, reports = ROOT / "results" / "reference" / machine, ROOT / "reports" / "reference" / machine
    assert (reports / "report.md").exists(), f"results/reference/{machine} has no report: run attention-limits " \
        f"report --results-root results/reference/{machine} --out-dir reports/reference/{machine}"
    build_report(str(results), str(tmp_path))
    assert (tmp_path / "report.md").read_text() == (reports / "report.md").read_text()
    fresh = sorted(p.name for p in (tmp_path / "figures").iterdir())
    committed = sorted(p.name for p in (reports / "figures").iterdir())
    assert fresh == committed
    assert (reports / "index.html").stat().st_size > 0


def test_user_runs_and_the_main_jobs_report_are_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/results/runs/", "/reports/index.html", "/reports/report.md", "/reports/figures/"} <= set(ignored)
