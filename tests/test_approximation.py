"""The approximation sweep: exactness limits reach ~0 error, error falls with the budget, the peaked regime is
low-entropy, Nyström as published against an independent implementation, Linformer's training-free projections,
the metrics against hand-computed values, the grid is what the docs say, and bad configs are ConfigErrors.
execute() runs in-process here."""
from __future__ import annotations

import dataclasses

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import variants
from bench.config import ConfigError, apply_overrides
from bench.analysis import approximation as analysis
from bench.measure import approximation as M
from bench.sweeps import approximation as A

SMALL = A.Config(seq_lens=(64,), budgets=(8, 32), seeds=(0,), head_dim=8, scales=(0.5,))


def case(variant: str, T: int = 256, budget: int | None = None, regime: str = "random", seed: int = 0,
         scale: float = 1.0, D: int = 32, dtype: str = "float64", **extra):
    """A Case as cases() would build it, for one point."""
    q_scale = scale * (SMALL.peak_scale if regime == "peaked" else 1.0)
    return A.Case.make(A.NAME, variant=variant, T=T, budget=budget, regime=regime, seed=seed, q_scale=q_scale,
                       k_scale=scale, B=1, H=2, D=D, dtype=dtype, device="cpu", threads=2,
                       p_error_max_flops=SMALL.p_error_max_flops, **extra)


def mean_error(variant: str, budgets, seeds=range(3), **kw) -> list[float]:
    return [sum(A.execute(case(variant, budget=r, seed=s, **kw))["rel_error"] for s in seeds) / len(seeds)
            for r in budgets]


# ------------------------------------------------------------------------------------------------ exactness

def exact_limit_cases():
    cfg = A.Config(**{**dataclasses.asdict(SMALL), "variants": tuple(variants.names())})
    return [c for c in A.cases(cfg) if A.exactness(c)["at_exact_limit"] and c.get("pinv") != "iterative"]


def test_exact_limit_cases_cover_every_convergent_variant():
    found = {c["variant"] for c in exact_limit_cases()}
    assert {"sparse_window", "sparse_bigbird", "low_rank_nystrom", "low_rank_linformer", "full_naive",
            "full_sdpa"} <= found
    assert not found & {"linear_elu", "linear_performer"}  # neither has a budget where it becomes exact


@pytest.mark.parametrize("c", exact_limit_cases(), ids=lambda c: f"{c['variant']}-{c['regime']}-r{c['budget']}")
def test_exactness_limit_gives_tiny_error(c):
    row = A.execute(c)
    assert row["rel_error"] < 1e-6 and row["v_error"] < 1e-6, row
    assert row["p_error"] is None or row["p_tv"] < 1e-6, row
    assert row["at_exact_limit"]


def test_sparse_window_exact_in_float32_too():
    assert A.execute(case("sparse_window", T=128, budget=128, dtype="float32"))["rel_error"] < 1e-5


def test_linformer_as_initialised_is_not_exact_at_k_equal_T():
    row = A.execute(case("low_rank_linformer", T=64, budget=64, init="normal"))
    assert row["exact_limit"] is None and not row["at_exact_limit"]
    assert row["rel_error"] > 0.1 and (row["config"], row["ablation"]) == ("random E, F", True)


def test_nystrom_published_iterations_do_not_converge_at_landmarks_equal_T_and_exact_pinv_does():
    published = A.execute(case("low_rank_nystrom", T=128, budget=128, pinv="iterative", pinv_iters=6))
    exact = A.execute(case("low_rank_nystrom", T=128, budget=128, pinv="exact"))
    assert published["rel_error"] > 1e-2 > 1e-6 > exact["rel_error"]
    assert (published["config"], published["ablation"], exact["config"], exact["ablation"]) == (
        "published", False, "exact pinv", True)


def paper_nystrom(q: np.ndarray, k: np.ndarray, v: np.ndarray, m: int, iters: int) -> np.ndarray:
    """Xiong et al. 2021 for one head, written from the paper: segment-mean landmarks (T divisible by m), the
    three softmax kernels, Z₀ = Aᵀ/(‖A‖₁‖A‖∞) and Z ← ¼Z(13I − AZ(15I − AZ(7I − AZ)))."""
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    T, D = q.shape
    q_l, k_l = q.reshape(m, T // m, D).mean(1), k.reshape(m, T // m, D).mean(1)
    F, A, B = (softmax(a @ b.T / np.sqrt(D)) for a, b in ((q, k_l), (q_l, k_l), (q_l, k)))
    Z, eye = A.T / (np.linalg.norm(A, 1) * np.linalg.norm(A, np.inf)), np.eye(m)
    for _ in range(iters):
        AZ = A @ Z
        Z = 0.25 * Z @ (13 * eye - AZ @ (15 * eye - AZ @ (7 * eye - AZ)))
    return F @ Z @ (B @ v)


def test_nystrom_as_published_matches_an_independent_implementation_of_the_paper():
    c = case("low_rank_nystrom", T=96, budget=12, pinv="iterative", pinv_iters=6, D=8, scale=0.8)
    q, k, v = A.make_inputs(c)
    with torch.no_grad():
        out = A.build(c)(q, k, v)
    for h in range(2):
        ref = paper_nystrom(*(x[0, h].numpy() for x in (q, k, v)), m=12, iters=6)
        np.testing.assert_allclose(out[0, h].numpy(), ref, rtol=1e-9, atol=1e-12)
    assert variants.get("low_rank_nystrom").spec.default_params["pinv_iters"] == 6


# ------------------------------------------------------------------------------------ Linformer projections

def test_fitted_linformer_beats_random_and_pooled_is_exact_at_k_equal_T():
    for k in (8, 32):
        rows = {init: A.execute(case("low_rank_linformer", T=128, budget=k, init=init)) for init in A.LINFORMER_INITS}
        assert rows["fitted"]["rel_error"] < rows["pooled"]["rel_error"] < rows["normal"]["rel_error"] / 5, rows
    pooled = A.execute(case("low_rank_linformer", T=128, budget=128, init="pooled"))
    assert pooled["rel_error"] < 1e-12 and pooled["p_tv"] < 1e-12 and pooled["at_exact_limit"]


def test_pooling_matrix_averages_uneven_segments():
    expected = [[1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0], [0, 0, 0, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 0, 0.5, 0.5]]
    np.testing.assert_allclose(M.pooling_matrix(3, 7).numpy(), expected)
    assert torch.equal(M.pooling_matrix(5, 5), torch.eye(5, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ metrics

def test_trivial_outputs_score_their_hand_computed_errors():
    v = torch.tensor([1.0, 3.0], dtype=torch.float64).view(1, 1, 2, 1)
    ref = torch.tensor([2.0, 2.5], dtype=torch.float64).view(1, 1, 2, 1)  # ‖Y‖² = 10.25, ‖V‖² = 10, mean(v) = 2
    trivial = M.trivial_errors(ref, v)
    assert trivial["zeros_rel_error"] == 1.0
    assert trivial["zeros_v_error"] == pytest.approx(math.sqrt(10.25 / 10))
    assert trivial["mean_v_rel_error"] == pytest.approx(0.5 / math.sqrt(10.25))  # Y − mean(v) = (0, 0.5)
    assert trivial["mean_v_v_error"] == pytest.approx(0.5 / math.sqrt(10))
    zeros, mean_v = M.output_errors(torch.zeros_like(ref), ref, v), M.output_errors(torch.full_like(ref, 2.0), ref, v)
    assert (zeros["rel_error"], zeros["v_error"]) == pytest.approx((1.0, trivial["zeros_v_error"]))
    assert (mean_v["rel_error"], mean_v["v_error"]) == pytest.approx((trivial["mean_v_rel_error"],
                                                                     trivial["mean_v_v_error"]))


def test_matrix_errors_against_hand_computed_values():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    uniform = M.trivial_matrix_errors(p)  # P̂ − P = [[-0.5, 0.5], [0, 0]]
    assert uniform["uniform_p_tv"] == pytest.approx(0.25)  # rows: ½(0.5 + 0.5) = 0.5 and 0
    assert uniform["uniform_p_error"] == pytest.approx(math.sqrt(0.5 / 1.5))
    assert M.matrix_errors(p, p) == {"p_error": 0.0, "p_tv": 0.0}


@pytest.mark.parametrize("name", ["full_naive", "sparse_window", "low_rank_nystrom", "linear_performer"])
def test_effective_matrix_is_what_the_variant_applies(name):
    c = case(name, T=40, budget=None if name == "full_naive" else 8, D=8, pinv="iterative" if "nys" in name else None)
    q, k, v = A.make_inputs(c)
    attn = A.build(c)
    with torch.no_grad():
        p_hat = M.effective_matrix(attn, q, k)
        torch.testing.assert_close(p_hat @ v, attn(q, k, v), rtol=1e-10, atol=1e-12)
    if name == "full_naive":
        torch.testing.assert_close(p_hat, M.exact_matrix(q, k), rtol=1e-10, atol=1e-14)


def test_logit_scale_follows_the_input_scale():
    rows = {s: A.execute(case("linear_elu", T=128, scale=s)) for s in (0.5, 2.0)}
    assert rows[2.0]["logit_scale"] == pytest.approx(16 * rows[0.5]["logit_scale"], rel=0.05)
    assert rows[0.5]["logit_scale"] == pytest.approx(0.25 * math.sqrt(32), rel=0.05)  # ‖q‖ ≈ s√D


# ---------------------------------------------------------------------------------------------- convergence

def test_performer_error_falls_with_features_at_moderate_norms():
    # unit-normal q, k in D = 32 are beyond FAVOR+'s range (relative variance ~exp(‖q‖²/√D + ‖k‖²/√D))
    errs = mean_error("linear_performer", (8, 64, 256), scale=0.4)
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < errs[0] / 3, errs


def test_nystrom_error_falls_with_landmarks():
    errs = mean_error("low_rank_nystrom", (8, 32, 128, 256), pinv="iterative", pinv_iters=6)
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
    assert len(cfg.seeds) >= 5
    per = Counter((c["variant"], c["T"]) for c in cs if c["regime"] != A.SCALE_REGIME)
    runs = len(cfg.regimes) * len(cfg.seeds)
    for T in (256, 1024):  # 8, 64 and 256 = T at 256; 8, 64, 512 at 1024, without r = T
        n_budgets = len([r for r in (8, 64, 512) if r < T]) + (T <= cfg.full_budget_max_t)
        assert per["linear_elu", T] == runs
        for name in ("linear_performer", "sparse_window", "sparse_bigbird"):
            assert per[name, T] == n_budgets * runs
        assert per["low_rank_nystrom", T] == n_budgets * 2 * runs  # published and the exact-pinv ablation
        assert per["low_rank_linformer", T] == n_budgets * 3 * runs  # fitted, pooled and random E, F
    scale = [c for c in cs if c["regime"] == A.SCALE_REGIME]
    assert {c["T"] for c in scale} == {1024} and {c["budget"] for c in scale} == {64, None}
    assert len(scale) == len(cfg.scales) * len(cfg.seeds) * (1 + 3 + 1 + 2)  # elu, 3 budgeted, nyström, 2 linformer
    assert not any(A.configuration(c.as_dict())[1] for c in scale)  # ablations only in the budget grid
    assert set(v for v, _ in per) == {n for n in variants.names() if not variants.get(n).spec.exact}


def test_budgets_above_T_are_skipped_and_T_is_added():
    cfg = A.Config(seq_lens=(100,), budgets=(4, 300, 5000), max_landmarks=64)
    assert A.budget_grid(cfg, "sparse_window", 100) == [4, 100]
    assert A.budget_grid(A.Config(budgets=(4, 300), full_budget_max_t=99), "sparse_window", 100) == [4]
    assert A.budget_grid(cfg, "low_rank_nystrom", 100) == [4]  # landmarks capped by max_landmarks
    assert A.budget_grid(cfg, "linear_elu", 100) == [None]
    inits = [(c["budget"], c["init"]) for c in A.cases(cfg) if c["variant"] == "low_rank_linformer"
             and c["regime"] == "random" and c["seed"] == 0]
    assert inits == [(r, init) for r in (4, 100) for init in ("fitted", "pooled", "normal")]


def test_bigbird_block_fits_the_window_and_variant_params_follow_the_case():
    c = next(c for c in A.cases(A.Config(variants=("sparse_bigbird",), budgets=(8,))) if c["budget"] == 8)
    assert c["block_size"] == 8
    assert A.variant_params(c) == {"window": 8, "block_size": 8, "seed": c["seed"]}
    assert A.variant_params(case("linear_performer", budget=16, seed=3)) == {"n_features": 16, "seed": 3}


# ------------------------------------------------------------------------------------------ config and errors

@pytest.mark.parametrize("overrides", [{"variants": "no_such_variant"}, {"seq-lens": "0"}, {"seq-lens": "256,-1"},
                                       {"budgets": "0"}, {"regimes": "sideways"}, {"seeds": ""},
                                       {"pinv-iters": "0"}, {"peak-scale": "0"}, {"linformer-inits": "xavier"},
                                       {"scales": "0"}, {"p-error-max-flops": "0"}])
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


def test_summarize_gives_median_and_iqr_over_seeds():
    cfg = dataclasses.replace(SMALL, seeds=(0, 1, 2), scales=())
    rows = [{**c.as_dict(), **A.execute(c), "status": "ok"} for c in A.cases(cfg)
            if c["variant"] in ("sparse_window", "linear_elu")]
    rows.append({**rows[0], "status": "error", "rel_error": 1e9})
    table = analysis.summary(pd.DataFrame(rows))
    assert len(table) == 2 * (3 + 1)  # regimes × (window budgets 8, 32, 64 + elu)
    assert (table["n_seeds"] == 3).all() and table["rel_error"].max() < 1e9
    assert (table["rel_error_q25"] <= table["rel_error"]).all() and (table["rel_error"] <= table["rel_error_q75"]).all()
    elu = table[table["variant"] == "linear_elu"]
    assert elu["budget"].isna().all()
