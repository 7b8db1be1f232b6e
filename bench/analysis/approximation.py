"""The approximation sweep's numbers: relative error against exact attention per budget and T, over seeds."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.select import ok_rows

REF_BUDGET = 64  # error vs T is drawn at each variant's shared budget nearest this
GROUP_KEYS = ("variant", "regime", "T", "budget_name", "budget", "pinv_iters", "init")


def approximation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """ok rows; Nyström at its largest pinv_iters (converged), Linformer with random (normal) projections."""
    rows = rows if "budget" in rows else rows.assign(budget=np.nan)
    rows = ok_rows(rows, "T", "budget", "rel_error").dropna(subset=["rel_error"])
    if "pinv_iters" in rows:
        iters = pd.to_numeric(rows["pinv_iters"])
        top = iters.groupby(rows["variant"]).transform("max")
        rows = rows[iters.isna() | (iters == top)]
    if "init" in rows:
        rows = rows[rows["init"].isna() | (rows["init"] == "normal")]
    regime = rows["regime"].astype(str) if "regime" in rows else "random"
    return rows.assign(regime=regime, rel_error=rows["rel_error"].clip(lower=1e-16))


def approximation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds of rel_error per variant × regime × T × budget."""
    keys = ["variant", "regime", "T", "budget"]
    g = rows.groupby(keys, sort=True, dropna=False)["rel_error"].agg(["mean", "std", "count"]).reset_index()
    return g.rename(columns={"mean": "rel_error_mean", "std": "rel_error_std", "count": "n_seeds"})


def reference_budget(sub: pd.DataFrame) -> float:
    """The budget present at every T of a variant nearest REF_BUDGET (NaN: budgetless)."""
    shared = set.intersection(*[set(g["budget"].dropna()) for _, g in sub.groupby("T")])
    return min(shared, key=lambda b: (abs(np.log(b / REF_BUDGET)), b)) if shared else np.nan


def summary(df: Any) -> pd.DataFrame:
    """Mean ± std over seeds of rel_error (and means of the rest) per variant × regime × T × budget (× Nyström
    pinv_iters, × Linformer init). Rows whose status is not "ok" are left out; ``n`` counts the seeds used."""
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    keys = [key for key in GROUP_KEYS if key in df.columns]
    grouped = df.groupby(keys, dropna=False, sort=True)
    table = grouped.agg(rel_error=("rel_error", "mean"), rel_error_std=("rel_error", "std"),
                        max_abs_error=("max_abs_error", "mean"), ref_entropy=("ref_entropy", "mean"),
                        at_exact_limit=("at_exact_limit", "all"), n=("rel_error", "size"))
    return table.reset_index()
