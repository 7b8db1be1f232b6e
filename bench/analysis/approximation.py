"""The approximation sweep's numbers: errors against exact attention per configuration, budget and T, as median and
interquartile range over seeds (the errors are heavy-tailed: a mean is one bad seed), beside the trivial outputs'."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.select import ok_rows

REF_BUDGET = 64  # error vs T is drawn at each variant's shared budget nearest this
CONFIG_KEYS = ["variant", "config", "ablation"]
METRICS = ("p_tv", "v_error", "rel_error")
# The trivial outputs' errors (functions of the inputs only) per metric: zeros and mean(v) (the uniform P).
TRIVIAL = {"p_tv": {"uniform P": "uniform_p_tv"},
           "v_error": {"zeros": "zeros_v_error", "mean(v)": "mean_v_v_error"},
           "rel_error": {"zeros": "zeros_rel_error", "mean(v)": "mean_v_rel_error"}}


def approximation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """ok rows with numeric errors; rows of a results file older than the configurations read "published"."""
    rows = rows if "budget" in rows else rows.assign(budget=np.nan)
    numeric = [c for c in ("T", "budget", "logit_scale", *METRICS, *(c for t in TRIVIAL.values() for c in
                                                                      t.values())) if c in rows]
    rows = ok_rows(rows, *numeric).dropna(subset=["rel_error"])
    defaults = {"config": "published", "ablation": False, "regime": "random", "q_scale": 1.0}
    rows = rows.assign(**{k: rows[k].fillna(v) if k in rows else v for k, v in defaults.items()})
    return rows.assign(ablation=rows["ablation"].astype(bool))


def error_table(rows: pd.DataFrame, metric: str, x: str = "budget") -> pd.DataFrame:
    """Median, q25, q75 and seeds of ``metric`` per configuration × regime × T × ``x`` (rows without a value left
    out)."""
    keys = list(dict.fromkeys([*CONFIG_KEYS, "regime", "q_scale", "T", "budget", x]))
    if metric not in rows:
        return pd.DataFrame(columns=[*keys, "median", "q25", "q75", "n_seeds"])
    g = rows.dropna(subset=[metric]).groupby(keys, sort=True, dropna=False)[metric]
    return g.agg(median="median", q25=lambda v: v.quantile(0.25), q75=lambda v: v.quantile(0.75),
                 n_seeds="count").reset_index()


def trivial_table(rows: pd.DataFrame, metric: str, x: str = "T") -> pd.DataFrame:
    """The trivial outputs' ``metric`` (median over every row, they depend on the inputs only) per regime × ``x``:
    one column per trivial output."""
    cols = {name: col for name, col in TRIVIAL[metric].items() if col in rows}
    keys = ["regime", x]
    if not cols:
        return pd.DataFrame(columns=keys)
    return rows.groupby(keys, sort=True)[list(cols.values())].median().rename(
        columns={v: k for k, v in cols.items()}).reset_index()


def reference_budget(sub: pd.DataFrame) -> float:
    """The budget present at every T of a variant nearest REF_BUDGET (NaN: budgetless)."""
    shared = set.intersection(*[set(g["budget"].dropna()) for _, g in sub.groupby("T")])
    return min(shared, key=lambda b: (abs(np.log(b / REF_BUDGET)), b)) if shared else np.nan


def vs_t(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and regime, the rows at its reference budget (every T), or budgetless rows."""
    parts = []
    for _, sub in table.groupby([*CONFIG_KEYS, "regime"], sort=True):
        r = reference_budget(sub)
        parts.append(sub[sub["budget"] == r] if np.isfinite(r) else sub[sub["budget"].isna()])
    return pd.concat(parts, ignore_index=True) if parts else table


def metric_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every metric's median, q25 and q75 over seeds per configuration × regime × T × budget, and the seeds."""
    keys = [*CONFIG_KEYS, "regime", "q_scale", "T", "budget"]  # q_scale: the input-scale sweep's points apart
    table = rows[keys].drop_duplicates().sort_values(["regime", "q_scale", "T", *CONFIG_KEYS, "budget"]).reset_index(
        drop=True)
    for metric in METRICS:
        part = error_table(rows, metric)[[*keys, "median", "q25", "q75"]]
        table = table.merge(part.rename(columns={"median": metric, "q25": f"{metric}_q25", "q75": f"{metric}_q75"}),
                            on=keys, how="left")
    return table.merge(rows.groupby(keys, dropna=False).size().rename("n_seeds").reset_index(), on=keys, how="left")


def largest_t_table(rows: pd.DataFrame) -> pd.DataFrame:
    """``metric_table`` at the largest T of the random and peaked regimes (the input-scale sweep is drawn apart)."""
    rows = rows[rows["regime"] != "scale"]
    return metric_table(rows[rows["T"] == rows["T"].max()])


def summary(df: Any) -> pd.DataFrame:
    """The end-of-run table: ``metric_table`` of the ok rows (output error relative to ‖Y‖ and to ‖V‖, the
    matrix's total variation), median and IQR over seeds."""
    return metric_table(approximation_rows(df))
