"""The accuracy–speed Pareto front at each length: a variant's accuracy at T beside its forward time at the same T,
in the same posing (causal forward time for a causally posed variant), never at a neighbouring length."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.select import ok_rows, sorted_table


def pareto_mask(time_s: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point is both at least as fast and at least as accurate (and better in one)."""
    return np.array([not np.any((time_s <= t) & (acc >= a) & ((time_s < t) | (acc > a)))
                     for t, a in zip(time_s, acc)])


def forward_times(eff: pd.DataFrame) -> pd.DataFrame:
    """Median forward seconds per (variant, T, causal) of the efficiency rows (ok rows only)."""
    fwd = ok_rows(eff[eff["phase"] == "forward"], "T", "median_s").dropna(subset=["median_s"])
    return fwd.groupby(["variant", "T", "causal"], sort=True)["median_s"].median().reset_index()


def pareto_table(table: pd.DataFrame, eff: pd.DataFrame) -> pd.DataFrame:
    """Per T of the accuracy table (``accuracy_table``) and variant: the mean over tasks of the median accuracy
    over seeds, its spread over tasks (min, max), the forward time at that T in the variant's posing, and whether
    the variant is on that T's front. Variant–length pairs without a forward time are left out."""
    times = forward_times(eff)
    records = []
    for (T, variant, pose), g in table.groupby(["T", "variant", "posing"], sort=True):
        mine = times[(times["variant"] == variant) & (times["T"] == T) & (times["causal"] == (pose == "causal"))]
        if mine.empty:
            continue
        records.append({"T": int(T), "variant": variant, "posing": pose, "accuracy": g["accuracy_median"].mean(),
                        "accuracy_min": g["accuracy_median"].min(), "accuracy_max": g["accuracy_median"].max(),
                        "tasks": len(g), "forward_s": float(mine["median_s"].iloc[0])})
    out = sorted_table(records, ["T", "variant"])
    if out.empty:
        return out
    out["pareto"] = False
    for T, g in out.groupby("T"):
        out.loc[g.index, "pareto"] = pareto_mask(g["forward_s"].to_numpy(), g["accuracy"].to_numpy())
    return out
