"""Every figure the report draws can be read at the size it is drawn (tests/readability.py): from the hand-made
fixtures and from every committed results directory, each figure is inspected where ``bench.plots.common.save``
writes it, and a figure built to fail each check does fail it."""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

import readability
from bench import plots, store
from bench.plots import common
from bench.plots.common import FigureResult

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
COMMITTED = sorted({p.parent for p in (ROOT / "results").rglob("*.jsonl") if "asv" not in p.parts})


def fixture_root(tmp_path: Path) -> Path:
    """tests/fixtures/results and tests/fixtures/later in one directory: every sweep has rows."""
    root = tmp_path / "fixtures"
    root.mkdir()
    for path in [*(FIXTURES / "results").glob("*.jsonl"), *(FIXTURES / "later").glob("*.jsonl")]:
        shutil.copy(path, root / path.name)
    return root


def draw_all(results_root: Path, out_dir: Path) -> tuple[dict[str, list[str]], int]:
    """{figure name: its readability problems} for every figure of the report, and how many were drawn."""
    found: dict[str, list[str]] = {}

    def inspect(fig, name):
        found[name] = readability.problems(fig)

    df, manifests = store.load(root=results_root), store.load_manifests(root=results_root)
    common.SAVE_HOOKS.append(inspect)
    try:
        drawn = sum(isinstance(figure(df, manifests, out_dir), FigureResult) for figure in plots.FIGURES)
    finally:
        common.SAVE_HOOKS.remove(inspect)
    return found, drawn


def assert_readable(found: dict[str, list[str]], drawn: int) -> None:
    assert len(found) == drawn > 0
    bad = {name: issues for name, issues in found.items() if issues}
    assert not bad, "\n".join(f"{name}: {issue}" for name, issues in bad.items() for issue in issues)


def test_every_figure_of_the_fixtures_reads(tmp_path):
    found, drawn = draw_all(fixture_root(tmp_path), tmp_path / "out")
    assert drawn >= len(plots.FIGURES) - 1  # every figure but repeatability, which has no fixture
    assert_readable(found, drawn)


@pytest.mark.parametrize("results_root", COMMITTED, ids=[str(p.relative_to(ROOT)) for p in COMMITTED])
def test_every_figure_of_the_committed_results_reads(results_root, tmp_path):
    assert_readable(*draw_all(results_root, tmp_path))


# ------------------------------------------------------------------------------- the checks can fail

def figure_with(draw):
    fig, axes = common.new_figure(1, 1, (3.0, 2.0))
    draw(axes[0, 0])
    return fig


def test_overlapping_tick_labels_are_found():
    fig = figure_with(lambda ax: ax.set_xticks(range(40), [f"label {i}" for i in range(40)]))
    assert readability.overlapping_tick_labels(fig)
    plt.close(fig)


def test_two_colours_without_a_legend_are_found_and_a_legend_clears_them():
    fig = figure_with(lambda ax: (ax.plot([0, 1], color="red", label="a"), ax.plot([1, 0], color="blue", label="b")))
    assert readability.missing_legends(fig)
    fig.axes[0].legend()
    assert not readability.missing_legends(fig)
    plt.close(fig)


def test_integers_printed_as_floats_are_found_but_decimals_are_not():
    fig = figure_with(lambda ax: ax.set_xticks([0, 1], ["T=1024.0", "T=2048.0"]))
    assert len(readability.float_integer_labels(fig)) == 2
    fig.axes[0].set_xticks([0, 1, 2], ["3.5", "4.0", "4.5"])
    assert not readability.float_integer_labels(fig)
    plt.close(fig)
