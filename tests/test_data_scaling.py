"""data_scaling: nested training sets and one test set, a grid without duplicates, step caps that scale with the
data and censoring, a power-law summary that recovers known exponents and crossovers (with a CI, or "not
identified"), the labels-saved factor, pretrained weights that are really loaded, one-line config errors, and an
end-to-end case per model."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from bench.config import ConfigError
from bench.run import sweep_cases
from bench.analysis import learning
from bench.sweeps import data_scaling as ds

QUICK = ds.PROFILES["quick"]


@pytest.mark.parametrize("task", QUICK.tasks)
def test_training_sets_are_nested_prefixes_and_the_test_set_is_shared(task):
    task_cfg = ds.task_config(QUICK, task)
    sizes = sorted(QUICK.sizes)[:3]
    splits = [ds.fixed_splits(task, task_cfg, QUICK.data_seed, n, 64) for n in sizes]
    largest = splits[-1]
    for n, (train, val, test) in zip(sizes, splits):
        assert len(train) == n
        assert torch.equal(train.x, largest[0].x[:n]) and torch.equal(train.y, largest[0].y[:n])
        assert torch.equal(val.x, largest[1].x) and torch.equal(test.x, largest[2].x)


def test_cases_cover_the_grid_once_each():
    cases = sweep_cases(ds.SWEEP, QUICK)  # raises on a duplicate case id
    pretrained = [c for c in cases if c["model"] == "pretrained"]
    per_model = len(QUICK.sizes) * len(QUICK.seeds)
    assert len(cases) == per_model * (len(QUICK.tasks) * (len(QUICK.models) - 1) + 1)
    assert {c["task"] for c in pretrained} == {"text_kind"} and len(pretrained) == per_model
    assert {c["data_seed"] for c in cases} == {QUICK.data_seed}


def test_the_step_cap_scales_with_the_data_within_its_clamp():
    cfg = dataclasses.replace(QUICK, epochs=10.0, batch_size=32, min_steps=50, max_steps=500)
    assert [ds.step_cap(cfg, n) for n in (64, 320, 640, 6400)] == [50, 100, 200, 500]


def test_a_run_stops_on_a_plateau_or_is_censored_at_its_cap():
    base = dataclasses.replace(QUICK, tasks=("local_motif",), models=("cnn_baseline",), sizes=(32, 64, 128),
                               seeds=(0,), n_eval=64, eval_every=5, min_steps=20, max_steps=20, patience=2)
    short = next(c for c in ds.cases(base) if c["n_train"] == 64)
    row = ds.execute(short)
    assert row["steps_cap"] == 20 and row["stop_reason"] == "cap" and row["censored"]
    # only a halving of the loss or a perfect score counts as progress
    plateau = dataclasses.replace(base, max_steps=2000, min_delta=0.5, min_delta_acc=1.0)
    row = ds.execute(next(c for c in ds.cases(plateau) if c["n_train"] == 64))
    assert row["stop_reason"] == "plateau" and not row["censored"] and row["steps_run"] < row["steps_cap"]
    assert row["steps_run"] == 2 * 5
    accuracies = [acc for _, acc, _ in row["curve"]]
    assert row["best_step"] == row["curve"][accuracies.index(max(accuracies))][0]  # the best-accuracy weights


def _synthetic(laws: dict[str, tuple[float, float, float]], sizes, seeds=(0, 1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"task": "local_motif", "model": m, "n_train": n, "seed": s, "status": "ok", "n_params": 1000, "baseline": m.endswith("_baseline"),
             "test_error": a * n ** -alpha + c + rng.normal(0, 1e-4)}
            for m, (a, alpha, c) in laws.items() for n in sizes for s in seeds]
    return pd.DataFrame(rows)


def test_summary_recovers_known_exponents_floors_and_the_crossover():
    sizes = [2 ** k for k in range(6, 15)]
    laws = {"transformer": (3.0, 0.5, 0.02), "cnn_baseline": (0.3, 0.2, 0.04)}
    table = learning.summary(_synthetic(laws, sizes)).set_index("model")
    for model, (a, alpha, c) in laws.items():
        row = table.loc[model]
        assert row["alpha"] == pytest.approx(alpha, abs=0.03)
        # the bootstrap refits on a coarser grid of c than the point fit, so its CI may miss the point by a hair
        assert row["alpha_lo"] - 0.01 <= alpha <= row["alpha_hi"] + 0.01
        assert row["floor_c"] == pytest.approx(c, abs=0.005)
        assert row["data_for_target"] == pytest.approx(((0.1 - c) / a) ** (-1 / alpha), rel=0.2)
    # analytic crossover: 3 n^-0.5 + 0.02 = 0.3 n^-0.2 + 0.04
    grid = np.geomspace(64, 16384, 100000)
    gap = 3 * grid ** -0.5 + 0.02 - (0.3 * grid ** -0.2 + 0.04)
    truth = grid[np.argmax(gap < 0)]
    ref = table.loc["transformer"]
    assert ref["crossover_vs_cnn_baseline"] == pytest.approx(truth, rel=0.15)
    assert ref["fitted_crossover_vs_cnn_baseline"] == pytest.approx(truth, rel=0.15)
    assert ref["fitted_crossover_lo_vs_cnn_baseline"] <= truth * 1.15
    assert ref["fitted_crossover_hi_vs_cnn_baseline"] >= truth / 1.15
    assert ref["crossover_resamples_vs_cnn_baseline"] == f"{learning.N_RESAMPLES}/{learning.N_RESAMPLES}"
    assert bool(table.loc["cnn_baseline", "baseline"]) and not bool(ref["baseline"])
    long = learning.crossover_table(table.reset_index()).set_index("baseline").loc["cnn_baseline"]
    assert long["fitted"] == ref["fitted_crossover_vs_cnn_baseline"] and long["measured"] == ref["crossover_vs_cnn_baseline"]
    assert long["fitted_lo"] <= long["fitted"] <= long["fitted_hi"] and long["resamples"] == ref["crossover_resamples_vs_cnn_baseline"]


def test_no_crossover_within_the_range_is_nan():
    table = learning.summary(_synthetic({"transformer": (1.0, 0.3, 0.1), "cnn_baseline": (0.1, 0.3, 0.0)},
                                    [128, 512, 2048, 8192])).set_index("model")
    assert np.isnan(table.loc["transformer", "crossover_vs_cnn_baseline"])
    assert np.isnan(table.loc["transformer", "fitted_crossover_vs_cnn_baseline"])
    assert table.loc["transformer", "crossover_resamples_vs_cnn_baseline"] == f"0/{learning.N_RESAMPLES}"


def test_a_crossover_past_four_times_the_largest_size_is_not_identified():
    sizes = [2 ** k for k in range(6, 14)]
    laws = {"transformer": (3.0, 0.5, 0.0), "cnn_baseline": (3.0 * 2 ** -4.8, 0.2, 0.0)}  # equal at n = 2^16
    table = learning.summary(_synthetic(laws, sizes), target_error=0.01).set_index("model")
    ref = table.loc["transformer"]  # 2^16 is 8× the largest size: the fits are not read that far
    assert np.isnan(ref["crossover_vs_cnn_baseline"]) and np.isnan(ref["fitted_crossover_vs_cnn_baseline"])
    assert np.isnan(table["data_for_target"]).all()  # 0.01 needs 9e4 and 1.4e5 examples: past 4 × 8192


def _pretraining_rows(shift: float, sizes=(64, 128, 256, 512, 1024), seeds=(0, 1, 2)) -> pd.DataFrame:
    """Scratch error n^-0.5, pretrained error (shift·n)^-0.5: pretraining is worth ``shift`` × the labels."""
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"task": "text_kind", "model": m, "n_train": n, "seed": s, "status": "ok",
                          "test_error": (k * n) ** -0.5 * (1 + rng.normal(0, 0.01))}
                         for m, k in (("transformer", 1.0), ("pretrained", shift)) for n in sizes for s in seeds])


def test_a_step_shaped_curve_is_no_power_law_and_its_target_n_is_read_off_the_data():
    sizes = [2 ** k for k in range(5, 13)]
    rng = np.random.default_rng(1)
    step = {n: 0.7 if n <= 1024 else (0.12 if n == 2048 else 0.07) for n in sizes}  # learns the rule past 1024
    rows = [{"task": "local_motif", "model": m, "n_train": n, "seed": s, "status": "ok", "n_params": 1000,
             "n_eval": 300, "baseline": m == "cnn_baseline",
             "test_error": (step[n] if m == "transformer" else 0.5 * (n / 32) ** -0.5) * (1 + rng.normal(0, 0.03))}
            for m in ("transformer", "cnn_baseline") for n in sizes for s in (0, 1, 2)]
    table = learning.summary(pd.DataFrame(rows)).set_index("model")
    ref = table.loc["transformer"]
    assert ref["fit"].startswith("n/a: misses the seeds at n = 32") and np.isnan(ref["data_for_target"])
    # the measured n for an error of 0.1: between 2048 (0.12) and 4096 (0.07), interpolated in log n
    assert 2048 < ref["data_for_target_measured"] < 4096
    assert ref["crossover_resamples_vs_cnn_baseline"] == "none: a law misses the data"
    assert np.isnan(ref["fitted_crossover_vs_cnn_baseline"])
    assert table.loc["cnn_baseline", "fit"] == "ok"


def test_the_measured_target_n_is_a_bound_outside_the_sizes():
    rows = pd.DataFrame({"n_train": [64, 64, 256, 256, 1024, 1024], "test_error": [0.3, 0.32, 0.2, 0.2, 0.15, 0.16]})
    assert learning.measured_data_for(rows, "test_error", 0.1) == (np.inf, "> 1024")
    assert learning.measured_data_for(rows, "test_error", 0.5) == (0.0, "≤ 64")
    n, text = learning.measured_data_for(rows, "test_error", 0.25)
    assert 64 < n < 256 and text == f"{n:.3g}"


def test_labels_saved_recovers_a_known_factor_and_censors_past_the_sizes():
    table = learning.labels_saved(_pretraining_rows(4.0)).set_index("n_train")
    assert table.loc[64, "labels_saved"] == pytest.approx(4.0, rel=0.1)
    assert table.loc[64, "labels_saved_lo"] <= 4.0 <= table.loc[64, "labels_saved_hi"] * 1.05
    assert table.loc[256, "labels_saved"] == pytest.approx(4.0, rel=0.1)
    assert np.isinf(table.loc[512, "labels_saved"]) and table.loc[512, "labels_saved_text"].startswith("> 2 ")
    costed = _pretraining_rows(4.0).assign(pretrain_steps=600, pretrain_s=lambda d: np.where(d["seed"] == 2, 30.0, 10.0))
    cost = learning.labels_saved(costed).iloc[0]
    assert cost["pretrain_steps"] == 600 and cost["pretrain_s"] == 10.0  # the median over seeds' bodies
    worse = learning.labels_saved(_pretraining_rows(0.25)).set_index("n_train")  # pretraining hurts
    assert worse.loc[64, "labels_saved"] == 0 and worse.loc[64, "labels_saved_text"].startswith("< 1 ")
    assert worse.loc[1024, "labels_saved"] == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize("change, message", [
    (dict(models=("transformer", "resnet")), "unknown model"),
    (dict(sizes=(128, 512)), "three distinct"),
    (dict(sizes=(16, 128, 512)), "smaller than one batch"),
    (dict(tasks=("mqar",)), "no learning-curve metric"),
    (dict(d_model=30, n_heads=4), "divisible"),
    (dict(min_steps=900, max_steps=800), "exceeds --max-steps"),
    (dict(min_steps=200, patience=8, eval_every=25), "must exceed --patience"),
    (dict(epochs=0.0), "epochs"),
])
def test_bad_knobs_are_one_line_config_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        dataclasses.replace(QUICK, **change).validate()
    assert "\n" not in str(info.value)


def test_profiles_validate():
    for cfg in ds.PROFILES.values():
        cfg.validate()


def test_every_model_runs_one_tiny_case_end_to_end():
    cfg = dataclasses.replace(QUICK, tasks=("local_motif", "text_kind", "text_bytes"), models=tuple(ds.MODELS),
                              sizes=(32, 64, 128), seeds=(0,), min_steps=3, max_steps=3, eval_every=3, n_eval=32,
                              pretrain_steps=2, text_pool_bytes=200_000)
    rows = [{**c.as_dict(), "status": "ok", **ds.execute(c)} for c in ds.cases(cfg) if c["n_train"] == 32]
    assert len(rows) == 3 * len(ds.MODELS) - 2  # pretrained: text_kind only
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["test_error"] == pytest.approx(1 - r["accuracy"])
        assert (r["bits_per_byte"] is not None) == (r["task"] == "text_bytes")
        assert r["baseline"] == r["model"].endswith("_baseline") and "error" not in r
        assert r["censored"] and r["steps_run"] == r["steps_cap"] == 3
        assert (r.get("centroid_error") is not None) == (r["task"] == "text_kind")
        assert (r.get("pretrain_s") is not None) == (r["model"] == "pretrained")
