"""bench.plots and bench.report on hand-made results (tests/fixtures): each figure, the page, its determinism.

tests/fixtures/results holds efficiency (with oom and timeout rows), limits, approximation and accuracy results;
data_scaling and distillation are missing there (a "not measured yet" section) and live in tests/fixtures/later.
"""
from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench import plots, report, store
from bench.plots.common import FigureResult, NotMeasured

FIXTURES = Path(__file__).parent / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")


def frames(root: Path):
    return store.load(root=root), store.load_manifests(root=root)


@pytest.fixture(scope="module")
def results():
    return frames(FIXTURES / "results")


@pytest.fixture(scope="module")
def later():
    return frames(FIXTURES / "later")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return report.build_report(FIXTURES / "results", tmp_path_factory.mktemp("report"))


def draw(figure, data, tmp_path) -> FigureResult:
    result = figure(*data, tmp_path)
    assert isinstance(result, FigureResult), result
    png, svg = result.paths
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5000
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert len(re.findall(r"[.!?](\s|$)", result.caption)) == 2, result.caption
    assert not result.table.empty and not result.sources.empty
    return result


def one(table: pd.DataFrame, **match) -> pd.Series:
    rows = table
    for key, value in match.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, (match, rows)
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------------- figures

def test_time_figure_fits_exponents_and_crossovers(results, tmp_path):
    table = draw(plots.fig_time, results, tmp_path).table
    assert set(table["phase"]) == {"forward", "forward_backward"} and len(table) == 12
    lin = one(table, variant="linear_elu", phase="forward", causal=False)
    assert lin["ci_lo"] <= lin["exponent"] <= lin["ci_hi"] and 0.85 < lin["exponent"] < 1.0
    assert lin["declared"] == 1.0 and lin["n_fit"] == 4
    assert 1024 < lin["crossover_vs_full_sdpa"] <= 2048 and 512 < lin["crossover_vs_full_naive"] < 2048
    naive = one(table, variant="full_naive", phase="forward", causal=True)
    assert math.isnan(naive["crossover_vs_full_sdpa"]) and math.isnan(naive["crossover_vs_full_naive"])
    assert one(table, variant="full_sdpa", phase="forward", causal=False)["crossover_vs_full_naive"] == 256


def test_memory_figure_marks_where_curves_end(results, tmp_path):
    table = draw(plots.fig_memory, results, tmp_path).table
    naive = one(table, variant="full_naive")
    assert 1.9 < naive["exponent"] < 2.1 and naive["declared"] == 2.0
    assert naive["analytic_exponent"] == pytest.approx(2.0)
    assert (naive["failure"], naive["first_failure_t"]) == ("oom", 4096)
    assert one(table, variant="linear_elu")["failure"] == "timeout"
    assert one(table, variant="full_sdpa")["failure"] == ""


def test_limits_figure_reads_the_limit_rows(results, tmp_path):
    table = draw(plots.fig_limits, results, tmp_path).table
    assert len(table) == 4  # only the T == 0 rows, never the probes
    elu = one(table, variant="linear_elu", budget="memory")
    assert elu["censored"] and elu["max_fit_t"] == 65536 and math.isnan(elu["min_fail_t"])
    naive = one(table, variant="full_naive", budget="time")
    assert (naive["max_fit_t"], naive["min_fail_t"], naive["censored"]) == (3328, 3584, False)
    assert naive["budget_value"] == 0.1


def test_flops_figure_is_a_fraction_of_the_manifest_peak(results, tmp_path):
    df, manifests = results
    table = draw(plots.fig_flops, results, tmp_path).table
    assert set(table["T"]) == {2048} and len(table) == 6
    row = one(table, variant="full_naive", causal=False)
    forward = df[(df["phase"] == "forward") & (df["causal"] == False)]  # noqa: E712
    src = forward[(forward["variant"] == "full_naive") & (forward["T"] == 2048)]
    expected = src["flops_analytic"].iloc[0] / src["median_s"].iloc[0] / 1e11
    assert row["fraction_of_peak"] == pytest.approx(expected)


def test_accuracy_figure_gives_the_median_and_every_seed(results, tmp_path):
    table = draw(plots.fig_accuracy, results, tmp_path).table
    row = one(table, task="copy", variant="linear_elu", T=1024)
    assert row["accuracy_mean"] == pytest.approx(0.795) and row["n_seeds"] == 2
    assert row["accuracy_median"] == pytest.approx(0.795) and len(row["per_seed"].split()) == 2
    assert row["posing"] == "bidirectional"  # rows without a causal column were not posed causally
    assert 4096 not in set(table["T"])  # the oom row carries no accuracy


def test_pareto_front(results, tmp_path):
    result = draw(plots.fig_pareto, results, tmp_path)
    table = result.table
    assert 1024 in set(table["T"])
    at = table[table["T"] == 1024]
    assert one(at, variant="full_sdpa")["pareto"] and not one(at, variant="linear_elu")["pareto"]


def test_pareto_pairs_accuracy_and_time_at_the_same_T_and_posing_only():
    from bench.analysis.pareto import pareto_table

    acc = pd.DataFrame({"task": "t", "variant": ["a", "b", "a", "c"], "posing": ["causal"] * 3 + ["bidirectional"],
                        "T": [64, 64, 128, 128], "accuracy_median": [0.9, 0.5, 0.8, 0.9]})
    eff = pd.DataFrame({"variant": ["a", "a", "b", "a", "c", "c"], "T": [64, 128, 128, 128, 128, 128],
                        "phase": "forward", "causal": [True, True, True, False, True, False], "status": "ok",
                        "median_s": [1e-4, 2e-4, 1e-5, 9.0, 9.0, 3e-4]})
    table = pareto_table(acc, eff)
    assert table[["T", "variant", "forward_s"]].values.tolist() == [[64, "a", 1e-4], [128, "a", 2e-4],
                                                                    [128, "c", 3e-4]]
    # b has no time at 64; c's bidirectional accuracy meets its non-causal time; each T has its own front
    assert table["pareto"].tolist() == [True, True, True]


def test_approximation_figure_draws_the_published_configs_at_the_largest_T(results, tmp_path):
    result = draw(plots.fig_approximation, results, tmp_path)
    table = result.table
    assert set(table["T"]) == {512} and "scale" not in set(table["regime"])
    nys = one(table, variant="low_rank_nystrom", config="published", regime="random", budget=64)
    assert nys["n_seeds"] == 3 and not nys["ablation"]
    assert nys["rel_error_q25"] <= nys["rel_error"] <= nys["rel_error_q75"]
    exact_pinv = one(table, variant="low_rank_nystrom", config="exact pinv", regime="random", budget=64)
    assert exact_pinv["ablation"] and exact_pinv["rel_error"] == pytest.approx(20 * nys["rel_error"])
    assert one(table, variant="sparse_window", regime="random", budget=512)["v_error"] < 1e-12
    elu = table[table["variant"] == "linear_elu"]
    assert len(elu) == 2 and elu["budget"].isna().all()
    assert "ablation" in result.caption and "trivial" in result.caption


def test_learning_curves_fit_a_power_law(later, tmp_path):
    result = draw(plots.fig_learning_curves, later, tmp_path)
    tr = one(result.table, model="transformer")
    alpha, lo, hi = (float(x) for x in tr["alpha [95% CI]"].replace("[", "").replace("]", "").replace(",", "").split())
    assert lo <= alpha <= hi and 0.3 < alpha < 0.5 and not tr["baseline"]
    assert one(result.table, model="cnn_baseline")["baseline"]
    heading, crossings = result.extra[0]
    assert "overtakes" in heading and set(crossings["baseline"]) == {"cnn_baseline"}


def test_self_supervision_figure_gives_the_labels_saved(later, tmp_path):
    result = draw(plots.fig_self_supervision, later, tmp_path)
    table = result.table.set_index("n_train")  # the fixture's pretrained error at n is scratch's at 3n (n = 100, 1000)
    assert table.loc[100, "labels_saved"] == pytest.approx(3.0) and table.loc[1000, "labels_saved"] == pytest.approx(3.0)
    assert table.loc[10000, "labels_saved_text"].startswith("> 1")  # scratch never gets there: a bound
    assert "600 steps" in result.caption and "of pretraining" in result.caption


def test_a_labels_saved_ci_end_that_is_a_bound_stops_at_the_measured_range():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench.plots.learning import saved_panel
    table = pd.DataFrame({"n_train": [32, 64, 128], "labels_saved": [1.5, 2.0, 2.5],
                          "labels_saved_lo": [0.0, 1.2, 1.4], "labels_saved_hi": [5.5, math.inf, 4.0]})
    fig, ax = plt.subplots()
    saved_panel(ax, table, "C0", "text_kind")
    low, high = ax.get_ylim()
    plt.close(fig)
    assert low > 0.5  # lo = 0 (scratch already there at n = 32) is drawn at 32 / 32 = 1, not near zero
    assert high < 10  # hi = inf at n = 64 is drawn at 128 / 64 = 2


def test_distillation_figure(later, tmp_path):
    table = draw(plots.fig_distillation, later, tmp_path).table
    assert len(table) == 4 and set(table["n_train"]) == {256, 2048}  # per student and size, never pooled
    small, large = one(table, student="student_window", n_train=256), one(table, student="student_window", n_train=2048)
    assert small["kd_share"] == pytest.approx(0.945) and small["labels_share"] == pytest.approx(0.875)
    assert small["kd_gain"] == small["kd_gain_min"] == pytest.approx(0.07) and small["n_seeds"] == 2
    assert large["kd_gain"] == pytest.approx(0.0)


@pytest.mark.parametrize("figure", plots.FIGURES, ids=lambda f: f.__name__)
def test_every_figure_says_not_measured_without_rows(figure, tmp_path):
    result = figure(*frames(tmp_path / "empty"), tmp_path)
    assert isinstance(result, NotMeasured) and result.command.startswith("attention-limits ")
    assert not list(tmp_path.glob("*.png"))


# ---------------------------------------------------------------------------------------------------- report

def test_index_is_self_contained_with_every_image(built):
    page = built.read_text()
    assert "<script" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 7 and all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)
    for sweep in ("data_scaling", "distillation"):
        assert f"Not measured yet: run <code>attention-limits run {sweep}</code>" in page
    assert "Fixture CPU" in page and "0123456789ab" in page  # the manifest each figure came from


def test_report_writes_markdown_and_figures(built):
    out = built.parent
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"time_vs_length.png", "time_vs_length.svg", "limits.png", "approximation_error.svg"} <= names
    assert len(names) == 14
    md = (out / "report.md").read_text()
    assert "![Time vs sequence length](figures/time_vs_length.png)" in md
    assert "**Not measured yet**: run `attention-limits run data_scaling`" in md
    assert "| linear_elu | memory | 1.074e+09 | 65536 |  |  | yes |" in md
    assert str(FIXTURES) not in md and str(out) not in md  # no machine-specific paths


def test_report_is_byte_stable(built, tmp_path):
    again = report.build_report(FIXTURES / "results", tmp_path)
    first = built.parent
    for rel in ("report.md", "index.html", "figures/time_vs_length.png", "figures/time_vs_length.svg"):
        assert (first / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_report_without_results_and_stale_figures(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "old.png").write_bytes(PNG_MAGIC)
    index = report.build_report(tmp_path / "no-results", out)
    assert index.read_text().count("Not measured yet") == len(plots.FIGURES)
    assert not list((out / "figures").iterdir())


def test_table_cells_are_formatted_for_reading():
    table = pd.DataFrame({"a": [1.0, float("nan")], "b": [0.123456, 2.5e11], "c": [True, False], "d": ["x|y", None]})
    assert report.markdown_table(table).splitlines()[2:] == ["| 1 | 0.1235 | yes | x\\|y |", "|  | 2.5e+11 | no |  |"]
    assert report.cell(4194304.0) == "4194304" and report.cell(1073741824) == "1.074e+09"


# --------------------------------------------------------------------------------------------------- browser

CHECK_IMAGES = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
  const wide = document.documentElement.scrollWidth;
  document.body.setAttribute("data-scroll", wide <= window.innerWidth ? "none" : wide + ">" + window.innerWidth);
});</script>"""


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                                                  "(Debian: apt-get install -y chromium)")
def test_index_renders_in_headless_chromium(built, tmp_path):
    page = tmp_path / "index.html"  # a copy with a probe script added; the report itself has no script
    page.write_text(built.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
           "--disable-quic", "--window-size=1280,900", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-images="7/7"' in done.stdout, done.stdout[:500]
    assert 'data-scroll="none"' in done.stdout, re.findall(r'data-scroll="[^"]*"', done.stdout)  # no page scroll
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shutil.rmtree(tmp_path / "p", ignore_errors=True)


def test_peers_figure_gives_ours_over_peer(later, tmp_path):
    table = draw(plots.fig_peers, later, tmp_path).table
    fwd = one(table, phase="forward")
    assert fwd["time_ratio"] == pytest.approx(0.8) and fwd["bytes_ratio"] == pytest.approx(0.5)
    assert fwd["live_bytes_ratio"] == pytest.approx(0.5) and fwd["rel_err"] == pytest.approx(1e-6)
    assert one(table, phase="forward_backward")["time_ratio"] == pytest.approx(1.5)


def test_a_figure_drawn_from_several_commits_says_so():
    one_sha = pd.DataFrame({"git_sha": ["a" * 40, "a" * 40]})
    two = pd.DataFrame({"git_sha": ["a" * 40, "b" * 40]})
    assert report.commits_note(one_sha) == "" and report.commits_note(pd.DataFrame()) == ""
    assert report.commits_note(two).startswith(f"Rows from runs of 2 commits ({'a' * 12}, {'b' * 12})")
