"""The committed reports/ were generated from the committed results/: regenerating gives the same tables
(report.md, byte for byte) and the same set of figures."""
from pathlib import Path

import pytest

from bench.report import build_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS, REPORTS = ROOT / "results" / "runs", ROOT / "reports"


@pytest.mark.skipif(not (REPORTS / "report.md").exists(), reason="no committed report yet")
def test_committed_report_regenerates_identically(tmp_path):
    build_report(str(RESULTS), str(tmp_path))
    assert (tmp_path / "report.md").read_text() == (REPORTS / "report.md").read_text()
    fresh = sorted(p.name for p in (tmp_path / "figures").iterdir())
    committed = sorted(p.name for p in (REPORTS / "figures").iterdir())
    assert fresh == committed
    assert (REPORTS / "index.html").stat().st_size > 0
