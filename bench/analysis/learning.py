"""Learning curves (the data_scaling sweep): power laws error(n) = a·n^(−α) + c per task and model, the data
needed for a target, and where the Transformer overtakes each attention-free baseline."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.fit import PowerLaw, crossover, fit_power_law

FIT_METRIC = {"local_motif": "test_error", "text_kind": "test_error", "text_bytes": "bits_per_byte"}  # what the power law is fitted to
REFERENCE = "transformer"  # the model whose crossover with each baseline is reported
EXTRAPOLATE_TO = 1e9  # the largest training-set size a fitted crossover is searched up to


def baselines(rows: pd.DataFrame) -> set[str]:
    """The models whose rows are marked as attention-free baselines (the sweep's ``baseline`` column)."""
    if "baseline" not in rows:
        return set()
    return set(rows.loc[rows["baseline"].fillna(False).astype(bool), "model"])


def _resolution(group: pd.DataFrame, metric: str) -> float:
    """The smallest error the test set can tell from zero (one example in ``n_eval``); 0 for bits per byte."""
    return 1.0 / float(group["n_eval"].min()) if metric == "test_error" and "n_eval" in group else 0.0


def _flat(group: pd.DataFrame, metric: str) -> bool:
    """True when the mean metric falls by less than two test examples' worth from the smallest to the largest n."""
    means = group.groupby("n_train")[metric].mean()
    return metric == "test_error" and means.iloc[0] - means.iloc[-1] < 2 * _resolution(group, metric)


def fitted_law(group: pd.DataFrame, metric: str) -> PowerLaw | None:
    """The fitted power law of one (task, model) group; None with fewer than three sizes or a flat curve.

    Errors are floored at half the test set's resolution: the fit searches the floor c in [0, min(err)), so a
    single seed at exactly zero error would leave no admissible c."""
    if _flat(group, metric):
        return None
    err = group[metric].astype(float).clip(lower=0.5 * _resolution(group, metric))
    try:
        return fit_power_law(group["n_train"].astype(float), err)
    except ValueError:
        return None


def curve_stats(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std of ``metric`` over seeds per training-set size."""
    return group.groupby("n_train", sort=True)[metric].agg(["mean", "std"]).reset_index()


def _extrapolated(ref: PowerLaw | None, base: PowerLaw | None, sizes: Any) -> float:
    """The first n (up to EXTRAPOLATE_TO) at which the fitted reference curve stays below the baseline's; NaN
    unless both α are fits (``Estimate.usable``)."""
    if ref is None or base is None or len(sizes) == 0 or not (ref.alpha.usable and base.alpha.usable):
        return math.nan
    grid = np.geomspace(float(min(sizes)), EXTRAPOLATE_TO, 400)
    below = ref.predict(grid) < base.predict(grid)
    if not below.any():
        return math.nan
    i = int(np.argmax(below))
    return float(grid[i]) if below[i:].all() else math.nan


def _crossovers(means: pd.DataFrame, law: dict[str, PowerLaw | None], bases: list[str]) -> dict[str, Any]:
    """For the reference model: measured and extrapolated crossover size with each baseline (NaN: none)."""
    out: dict[str, Any] = {}
    if REFERENCE not in means:
        return out
    for base in bases:
        pair = means[[REFERENCE, base]].dropna().clip(lower=1e-4)  # errors of 0 would break the log ratio
        at = crossover(pair.index, pair[REFERENCE], pair[base]) if len(pair) >= 2 else None
        out[f"crossover_vs_{base}"] = math.nan if at is None else at
        out[f"extrapolated_crossover_vs_{base}"] = _extrapolated(law.get(REFERENCE), law.get(base), pair.index)
    return out


def _fit_row(task: str, model: str, group: pd.DataFrame, law: PowerLaw | None, target: float,
             base: bool) -> dict[str, Any]:
    means = group.groupby("n_train")[FIT_METRIC[task]].mean()
    row = {"task": task, "model": model, "baseline": base,
           "metric": FIT_METRIC[task], "n_sizes": int(group["n_train"].nunique()),
           "seeds": int(group["seed"].nunique()), "n_params": int(group["n_params"].median()),
           "metric_at_min": means.iloc[0], "metric_at_max": means.iloc[-1], "target": target}
    if law is None or law.a <= 0:  # no decrease to fit: α is undefined (NaN), not 0
        flat = _flat(group, FIT_METRIC[task]) or law is not None
        return {**row, "fit": "flat" if flat else "too few sizes"}
    need = law.data_for(target) if law.alpha.usable else None  # no prediction from a fit that is not one
    fit = "ok" if law.alpha.usable else f"n/a: {law.alpha.problem}"
    return {**row, "fit": fit, "alpha": law.alpha.value, "alpha_lo": law.alpha.lo, "alpha_hi": law.alpha.hi,
            "floor_c": law.c.value, "c_lo": law.c.lo, "c_hi": law.c.hi, "a": law.a,
            "data_for_target": math.nan if need is None else need}


def _task_rows(task: str, rows: pd.DataFrame, target: float) -> list[dict[str, Any]]:
    """Every model's fit on one task, the reference row carrying its crossovers with each baseline."""
    metric, bases = FIT_METRIC[task], baselines(rows)
    laws = {m: fitted_law(g, metric) for m, g in rows.groupby("model", sort=True)}
    out = [_fit_row(task, m, g, laws[m], target, m in bases) for m, g in rows.groupby("model", sort=True)]
    means = rows.pivot_table(index="n_train", columns="model", values=metric, aggfunc="mean")
    cross = _crossovers(means, laws, sorted(m for m in laws if m in bases))
    return [{**r, **cross} if r["model"] == REFERENCE else r for r in out]


def summary(df: pd.DataFrame | None, target_error: float = 0.1, target_bpb: float = 3.0) -> pd.DataFrame:
    """Per (task, model): α and the floor c with 95% bootstrap CIs, n needed for the target, the metric at the
    smallest and largest n; on the ``transformer`` row, the size above which it beats each baseline (measured,
    interpolated in log-log; NaN when it never does within the range) and the crossover of the fitted curves
    (extrapolated). Only rows with status ok count."""
    if df is None or len(df) == 0 or "n_train" not in df or "test_error" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    targets = {"local_motif": target_error, "text_bytes": target_bpb}
    rows = [r for task, g in ok.groupby("task", sort=True) if task in FIT_METRIC
            for r in _task_rows(task, g.dropna(subset=[FIT_METRIC[task]]), targets[task])]
    return pd.DataFrame(rows)
