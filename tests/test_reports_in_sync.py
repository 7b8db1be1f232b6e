"""The committed reports were generated from the committed results: regenerating gives the same tables (report.md,
byte for byte) and the same set of figures. ``reports/`` comes from ``results/runs`` (this machine, CPU) and
``reports/cuda`` from ``results/cuda`` (the quick sweeps run on a GPU machine by ``.ci/gpu-check``)."""
from pathlib import Path

import pytest

from bench.report import build_report

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [(ROOT / "results" / "runs", ROOT / "reports"), (ROOT / "results" / "cuda", ROOT / "reports" / "cuda")]


@pytest.mark.parametrize("results, reports", PAIRS, ids=["cpu", "cuda"])
def test_committed_report_regenerates_identically(tmp_path, results, reports):
    if not (reports / "report.md").exists():
        pytest.skip(f"no committed report in {reports.relative_to(ROOT)} yet")
    build_report(str(results), str(tmp_path))
    assert (tmp_path / "report.md").read_text() == (reports / "report.md").read_text()
    fresh = sorted(p.name for p in (tmp_path / "figures").iterdir())
    committed = sorted(p.name for p in (reports / "figures").iterdir())
    assert fresh == committed
    assert (reports / "index.html").stat().st_size > 0
