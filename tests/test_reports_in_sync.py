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


def test_what_the_main_job_writes_is_ignored_by_git():
    """The main job in a clone leaves ``git status`` clean: every path it writes is ignored, no reference one is."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["results/runs/efficiency-quick-cpu.jsonl", "results/runs/previous/efficiency-quick-cpu.x.jsonl",
               "reports/index.html", "reports/report.md", "reports/figures/time_vs_length.png"]
    kept = ["results/reference/cuda-h200/limits-quick-cuda.jsonl", "reports/reference/cuda-h200/report.md",
            "results/baseline/gate.json"]
    check = subprocess.run(["git", "check-ignore", "--no-index", *written, *kept], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    assert sorted(check.stdout.split()) == sorted(written)
