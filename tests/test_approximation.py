"""The approximation sweep: exactness limits reach ~0 error, error falls with the budget, the peaked regime is
low-entropy, the grid is what the docs say, and bad configs are ConfigErrors. execute() runs in-process here."""
from __future__ import annotations

import dataclasses

import math
from collections import Counter

import pandas as pd
import pytest

import variants
from bench.config import ConfigError, apply_overrides
from bench.analysis import approximation as analysis
from bench.sweeps import approximation as A

SMALL = A.Config(seq_lens=(64,), budgets=(8, 32), seeds=(0,), pinv_iters=(30,), head_dim=8)


def case(variant: str, T: int = 256, budget: int | None = None, regime: str = "random", seed: int = 0,
         scale: float = 1.0, D: int = 32, dtype: str = "float64", **extra):
    """A Case as cases() would build it, for one point."""
    q_scale = scale * (SMALL.peak_scale if regime == "peaked" else 1.0)
    return A.Case.make(A.NAME, variant=variant, T=T, budget=budget, regime=regime, seed=seed, q_scale=q_scale,
                       k_scale=scale, B=1, H=2, D=D, dtype=dtype, device="cpu", threads=2, **extra)


def mean_error(variant: str, budgets, seeds=range(3), **kw) -> list[float]:
    return [sum(A.execute(case(variant, budget=r, seed=s, **kw))["rel_error"] for s in seeds) / len(seeds)
            for r in budgets]


# ------------------------------------------------------------------------------------------------ exactness

def exact_limit_cases():
    cfg = A.Config(**{**dataclasses.asdict(SMALL), "variants": tuple(variants.names())})
    return [c for c in A.cases(cfg) if A.exactness(c)["at_exact_limit"]]


def test_exact_limit_cases_cover_every_convergent_variant():
    found = {c["variant"] for c in exact_limit_cases()}
    assert {"sparse_window", "sparse_bigbird", "low_rank_nystrom", "low_rank_linformer", "full_naive",
            "full_sdpa"} <= found
    assert not found & {"linear_elu", "linear_performer"}  # neither has a budget where it becomes exact


@pytest.mark.parametrize("c", exact_limit_cases(), ids=lambda c: f"{c['variant']}-{c['regime']}-r{c['budget']}")
def test_exactness_limit_gives_tiny_error(c):
    row = A.execute(c)
    assert row["rel_error"] < 1e-6, row
    assert row["at_exact_limit"]


def test_sparse_window_exact_in_float32_too():
    assert A.execute(case("sparse_window", T=128, budget=128, dtype="float32"))["rel_error"] < 1e-5


def test_linformer_as_initialised_is_not_exact_at_k_equal_T():
    row = A.execute(case("low_rank_linformer", T=64, budget=64, init="normal"))
    assert row["exact_limit"] is None and not row["at_exact_limit"]
    assert row["rel_error"] > 0.1


def test_nystrom_default_pinv_iters_do_not_converge_at_landmarks_equal_T():
    rows = {n: A.execute(case("low_rank_nystrom", T=128, budget=128, pinv_iters=n)) for n in (6, 30)}
    assert rows[6]["rel_error"] > 1e-2 > 1e-6 > rows[30]["rel_error"]


# ---------------------------------------------------------------------------------------------- convergence

def test_performer_error_falls_with_features_at_moderate_norms():
    # unit-normal q, k in D = 32 are beyond FAVOR+'s range (relative variance ~exp(‖q‖²/√D + ‖k‖²/√D))
    errs = mean_error("linear_performer", (8, 64, 256), scale=0.4)
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < errs[0] / 3, errs


def test_nystrom_error_falls_with_landmarks():
    errs = mean_error("low_rank_nystrom", (8, 32, 128, 256), pinv_iters=6)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs


def test_sparse_window_error_falls_with_window():
    errs = mean_error("sparse_window", (8, 64, 255))
    assert errs[0] > errs[1] > errs[2], errs


# -------------------------------------------------------------------------------------------------- regimes

def test_peaked_regime_has_low_entropy():
    rows = {regime: A.execute(case("linear_elu", regime=regime)) for regime in A.REGIMES}
    assert rows["random"]["ref_entropy"] > math.log(256) - 1.0
    assert rows["peaked"]["ref_entropy"] < 1.5 < rows["random"]["ref_entropy"] / 3
    assert rows["peaked"]["ref_max_prob"] > 0.5 > 0.1 > rows["random"]["ref_max_prob"]


def test_attention_stats_match_a_dense_computation():
    q, k, _ = A.make_inputs(case("linear_elu", T=100, regime="peaked"))
    p = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    stats = A.attention_stats(q, k, chunk=33)
    assert stats["ref_entropy"] == pytest.approx(float(-(p * p.log()).sum(-1).mean()), rel=1e-9)
    assert stats["ref_max_prob"] == pytest.approx(float(p.amax(-1).mean()), rel=1e-9)


# ----------------------------------------------------------------------------------------------------- grid

def test_quick_grid_is_the_documented_one():
    cfg = A.PROFILES["quick"]
    cs = list(A.cases(cfg))
    assert len({c.id for c in cs}) == len(cs)
    assert all(c["budget"] is None or c["budget"] <= c["T"] for c in cs)
    per = Counter((c["variant"], c["T"]) for c in cs)
    runs = len(cfg.regimes) * len(cfg.seeds)
    for T, n_budgets in ((256, 6), (1024, 8)):  # 8, 16, ..., T
        assert per["linear_elu", T] == runs
        for name in ("linear_performer", "sparse_window", "sparse_bigbird"):
            assert per[name, T] == n_budgets * runs
        assert per["low_rank_nystrom", T] == n_budgets * len(cfg.pinv_iters) * runs
        assert per["low_rank_linformer", T] == (n_budgets + 1) * runs  # + the identity check at k = T
    assert set(v for v, _ in per) == {n for n in variants.names() if not variants.get(n).spec.exact}


def test_budgets_above_T_are_skipped_and_T_is_added():
    cfg = A.Config(seq_lens=(100,), budgets=(4, 300, 5000), max_landmarks=64)
    assert A.budget_grid(cfg, "sparse_window", 100) == [4, 100]
    assert A.budget_grid(cfg, "low_rank_nystrom", 100) == [4]  # landmarks capped by max_landmarks
    assert A.budget_grid(cfg, "linear_elu", 100) == [None]
    inits = [(c["budget"], c["init"]) for c in A.cases(cfg) if c["variant"] == "low_rank_linformer"
             and c["regime"] == "random" and c["seed"] == 0]
    assert inits == [(4, "normal"), (100, "normal"), (100, "identity")]


def test_bigbird_block_fits_the_window_and_variant_params_follow_the_case():
    c = next(c for c in A.cases(A.Config(variants=("sparse_bigbird",), budgets=(8,))) if c["budget"] == 8)
    assert c["block_size"] == 8
    assert A.variant_params(c) == {"window": 8, "block_size": 8, "seed": c["seed"]}
    assert A.variant_params(case("linear_performer", budget=16, seed=3)) == {"n_features": 16, "seed": 3}


# ------------------------------------------------------------------------------------------ config and errors

@pytest.mark.parametrize("overrides", [{"variants": "no_such_variant"}, {"seq-lens": "0"}, {"seq-lens": "256,-1"},
                                       {"budgets": "0"}, {"regimes": "sideways"}, {"seeds": ""},
                                       {"pinv-iters": "0"}, {"peak-scale": "0"}])
def test_validate_rejects_bad_configs(overrides):
    with pytest.raises(ConfigError):
        apply_overrides(A.PROFILES["quick"], overrides)


def test_profiles_validate():
    for cfg in A.PROFILES.values():
        cfg.validate()
    assert max(A.PROFILES["full"].seq_lens) == 4096 and len(A.PROFILES["full"].seeds) >= 5


def test_variant_without_a_known_budget_is_unsupported(monkeypatch):
    monkeypatch.delitem(A.BUDGET_PARAM, "linear_elu")
    with pytest.raises(NotImplementedError):
        A.execute(case("linear_elu", T=16))


def test_summarize_gives_mean_and_std_over_seeds():
    rows = [{**c.as_dict(), **A.execute(c), "status": "ok"} for c in A.cases(SMALL)
            if c["variant"] in ("sparse_window", "linear_elu")]
    rows.append({**rows[0], "status": "error", "rel_error": 1e9})
    table = analysis.summary(pd.DataFrame(rows))
    assert len(table) == 2 * (3 + 1)  # regimes × (window budgets 8, 32, 64 + elu)
    assert (table["n"] == 1).all() and table["rel_error"].max() < 1e9
    elu = table[table["variant"] == "linear_elu"]
    assert elu["budget"].isna().all()
