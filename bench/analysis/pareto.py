"""The accuracy–speed Pareto front: mean accuracy at the largest T beside the forward time of the same variant at
the same T (never at a neighbouring length)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.select import ok_rows, sorted_table


def pareto_mask(time_s: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point is both at least as fast and at least as accurate (and better in one)."""
    return np.array([not np.any((time_s <= t) & (acc >= a) & ((time_s < t) | (acc > a)))
                     for t, a in zip(time_s, acc)])


def pareto_table(acc: pd.DataFrame, eff: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over tasks and seeds (``accuracy_rows``) at the largest T, beside the median non-causal
    forward time of the efficiency rows ``eff`` at that same T, and whether the variant is on the front. A variant
    with no forward time at that T is left out."""
    T = float(acc["T"].max())
    at = acc[acc["T"] == T].groupby("variant", sort=True)["accuracy"].agg(["mean", "std", "count"]).reset_index()
    fwd = ok_rows(eff[(eff["phase"] == "forward") & (eff["causal"] == False)], "T", "median_s")  # noqa: E712
    fwd = fwd.dropna(subset=["median_s"])
    records = []
    for _, r in at.iterrows():
        mine = fwd[(fwd["variant"] == r["variant"]) & (fwd["T"] == T)]
        if mine.empty:
            continue
        records.append({"variant": r["variant"], "T": T, "accuracy_mean": r["mean"], "accuracy_std": r["std"],
                        "n": int(r["count"]), "forward_s": float(mine["median_s"].median())})
    table = sorted_table(records, ["variant"])
    if not table.empty:
        table["pareto"] = pareto_mask(table["forward_s"].to_numpy(), table["accuracy_mean"].to_numpy())
    return table
