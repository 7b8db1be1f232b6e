"""Interpretability metrics: does a trained model's attention point at the position that drives its answer?

Pure functions. Per query (a scored position p of a recall row) the ground truth is the position of the answer's
value token in the context, the token right after the earlier occurrence of the key x[p] (``answer_positions``):
what a one-step retrieval reads, since the models' token shift puts the key's embedding on its value's position.
Maps are numpy arrays (L, N, H, T, T): layer, row, head, query, key. Why these measures and what they find:
docs/analysis.md#interpretability.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.accuracy import posing

IGNORE = -100  # unscored target (bench.tasks.IGNORE; analysis does not import the tasks)
RANK_METHODS = ("kendall", "spearman")


def answer_positions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, positions, truth) of every scored query of the (N, T) token rows ``x`` and targets ``y``: truth is
    the first j < p with x[j-1] = x[p] and x[j] = y[p] (the answer's value after the asked key), -1 if none."""
    rows, positions = np.nonzero(y != IGNORE)
    truth = np.full(rows.shape, -1, dtype=np.int64)
    for i, (r, p) in enumerate(zip(rows, positions)):
        hits = np.flatnonzero((x[r, :p - 1] == x[r, p]) & (x[r, 1:p] == y[r, p])) + 1
        truth[i] = hits[0] if hits.size else -1
    return rows, positions, truth


def weight_shares(maps: np.ndarray) -> np.ndarray:
    """Each row of an effective map as shares of its absolute weight, |M_pj| / Σ_j |M_pj|: the map itself for the
    softmax and feature maps (non-negative, rows summing to 1), and a distribution for Linformer's and Nyström's
    signed ones, whose raw entries can be negative or above 1. A row that is all zero stays zero."""
    a = np.abs(maps)
    total = a.sum(axis=-1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=total > 0)


def visible_keys(valid: np.ndarray, rows: np.ndarray, positions: np.ndarray, causal: bool) -> np.ndarray:
    """(Q, T) bool: the keys each query may see (valid, and j <= p when causal)."""
    seen = valid[rows].astype(bool)
    if causal:
        seen &= np.arange(valid.shape[1])[None, :] <= positions[:, None]
    return seen


def query_weights(maps: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each query's attention row per layer and head: (L, N, H, T, T) -> (L, H, Q, T)."""
    return maps[:, rows, :, positions, :].transpose(1, 2, 0, 3)


def alignment(weights: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean attention mass on the ground-truth key and the argmax hit rate, over queries: (..., Q, T) -> (...)."""
    q = np.arange(truth.size)
    mass = weights[..., q, truth]
    hit = weights.argmax(axis=-1) == truth
    return mass.mean(axis=-1), hit.mean(axis=-1)


def uniform_alignment(seen: np.ndarray) -> float:
    """The alignment of attention spread evenly over the visible keys: mean of 1/#visible."""
    return float(np.mean(1.0 / seen.sum(axis=-1)))


def rank_agreement(weights: np.ndarray, importance: np.ndarray, seen: np.ndarray) -> dict[str, np.ndarray]:
    """Kendall τ(-b) and Spearman ρ per query between an attention row and an importance row over the visible
    keys (pandas' rank correlations): weights (..., Q, T), importance and seen (Q, T) -> {method: (..., Q)}.
    NaN where either row is constant (no ranking to agree with)."""
    lead = weights.shape[:-2]
    flat = weights.reshape(-1, *weights.shape[-2:])
    out = {m: np.full((flat.shape[0], seen.shape[0]), np.nan) for m in RANK_METHODS}
    for i in range(seen.shape[0]):
        frame = pd.DataFrame(flat[:, i, seen[i]].T)
        frame["importance"] = importance[i, seen[i]]
        for m in RANK_METHODS:
            out[m][:, i] = frame.corr(method=m)["importance"].to_numpy()[:-1]
    return {m: v.reshape(*lead, seen.shape[0]) for m, v in out.items()}


def top1_agreement(weights: np.ndarray, importance: np.ndarray, seen: np.ndarray, positions: np.ndarray
                   ) -> np.ndarray:
    """Per query, whether the most attended key is also the most important one, over the visible keys other than
    the query's own position (a token always matters to its own output): (..., Q, T) -> (..., Q) of 0/1."""
    others = seen.copy()
    others[np.arange(positions.size), positions] = False
    top_attn = np.where(others, weights, -np.inf).argmax(axis=-1)
    return (top_attn == np.where(others, importance, -np.inf).argmax(axis=-1)).astype(float)


def rollout(maps: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928): per layer the head-averaged map plus the
    residual, 0.5·A + 0.5·I, rows renormalised, multiplied from the first layer up: (L, N, H, T, T) -> (N, T, T)."""
    eye = np.eye(maps.shape[-1])
    out = eye[None]
    for layer in maps:
        a = 0.5 * layer.mean(axis=1) + 0.5 * eye  # (N, H, T, T) -> (N, T, T)
        a = a / a.sum(axis=-1, keepdims=True)
        out = a @ out
    return out


def entropy(weights: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Mean Shannon entropy (nats) of the attention rows over the visible keys: (..., Q, T) -> (...)."""
    p = np.where(seen, np.clip(weights, 0.0, None), 0.0)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-30, None)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1).mean(axis=-1)


def nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN (an all-NaN slice gives NaN, without a warning)."""
    count = np.isfinite(x).sum(axis=axis)
    total = np.where(np.isfinite(x), x, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---------------------------------------------------------------------------------------------- rows -> tables

SCORES = ("alignment", "hit_rate", "tau_grad", "tau_occlusion", "rho_grad", "rho_occlusion", "top1_grad",
          "top1_occlusion")


def mass_grid(row: pd.Series) -> np.ndarray:
    """One row's ground-truth alignment per layer and head: (L, H)."""
    return np.asarray(row["alignment"], dtype=float)


def best_head(row: pd.Series) -> tuple[int, int]:
    """(layer, head) with the highest ground-truth alignment in one row's per-layer, per-head lists."""
    mass = mass_grid(row)
    layer, head = np.unravel_index(np.nanargmax(mass), mass.shape)
    return int(layer), int(head)


def model_scores(row: pd.Series) -> dict[str, Any]:
    """One trained model's headline numbers: every score at its best-aligned head, the head mean of that layer,
    the rollout's, and the entropy (mean over layers and heads) beside uniform attention's."""
    layer, head = best_head(row)
    out: dict[str, Any] = {"layer": layer + 1}
    for name in SCORES:
        value = row.get(name)
        grid = np.asarray(value if isinstance(value, list) else np.full_like(mass_grid(row), np.nan), dtype=float)
        out[name] = grid[layer, head]
        out[name + "_mean"] = nanmean(grid[layer])
    for name in ("rollout_alignment", "rollout_hit_rate", "rollout_tau_grad", "rollout_tau_occlusion",
                 "uniform_alignment", "uniform_entropy", "accuracy"):
        out[name] = row.get(name, np.nan)
    out["entropy"] = float(np.mean(row["entropy"]))
    return out


def interpretability_rows(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per trained model with its headline numbers (``model_scores``) and posing; None when there are no
    ok interpretability rows."""
    if df is None or len(df) == 0 or "alignment" not in df:
        return None
    ok = df[(df["status"] == "ok") & df["alignment"].notna()] if "status" in df else df
    if len(ok) == 0:
        return None
    keys = ok[["task", "variant", "T", "seed", "causal"]].reset_index(drop=True)
    scores = pd.DataFrame([model_scores(r) for _, r in ok.iterrows()])
    keys["posing"] = keys["causal"].map(posing)
    return pd.concat([keys.drop(columns="causal"), scores], axis=1)


TABLE_COLUMNS = ("alignment", "alignment_mean", "hit_rate", "tau_grad", "tau_grad_mean", "tau_occlusion",
                 "tau_occlusion_mean", "top1_grad", "top1_occlusion", "rollout_alignment", "rollout_tau_grad", "rollout_tau_occlusion",
                 "entropy", "uniform_alignment", "uniform_entropy", "accuracy")


def interpretability_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant, posing, T): the median over seeds of each headline number, the seed count and the
    spread (min–max) of the alignment."""
    group = rows.groupby(["task", "variant", "posing", "T"], sort=True)
    table = group[list(TABLE_COLUMNS)].median()
    table["seeds"] = group.size()
    table["alignment_min"] = group["alignment"].min()
    table["alignment_max"] = group["alignment"].max()
    return table.reset_index()


def summary(df: pd.DataFrame | None) -> pd.DataFrame:
    """The end-of-run table: medians per task, variant and T (empty when nothing ok was measured)."""
    rows = interpretability_rows(df)
    if rows is None:
        return pd.DataFrame()
    return interpretability_table(rows)[["task", "variant", "T", "seeds", "alignment", "tau_grad",
                                         "tau_occlusion", "rollout_alignment", "entropy"]].round(3)
