"""The accuracy sweep's numbers: accuracy against T per task, and the run summary with steps to target."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.analysis.select import ok_rows


def accuracy_rows(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    """Ok rows with a numeric T and accuracy (``task`` filled where missing); None without them."""
    if rows is None or not {"T", "variant", "accuracy"} <= set(rows) or rows["accuracy"].isna().all():
        return None
    rows = ok_rows(rows, "T", "accuracy").dropna(subset=["accuracy"])
    rows = rows.assign(task=rows["task"].astype(str) if "task" in rows else "task")
    return rows if not rows.empty else None


def accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of accuracy over seeds per task × variant × T."""
    return (rows.groupby(["task", "variant", "T"], sort=True)["accuracy"].agg(["mean", "std", "count"])
            .reset_index().rename(columns={"mean": "accuracy_mean", "std": "accuracy_std", "count": "n_seeds"}))


def median_steps(steps: Any, budget: float) -> float:
    """Median steps_to_target with censored runs (NaN / None) counted as beyond the budget; NaN when the median
    itself is censored (half or more of the seeds never reached the target)."""
    values = sorted(math.inf if v is None or v != v else float(v) for v in steps)
    if not values:
        return math.nan
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return median if median <= budget else math.nan


def _summary_row(group: pd.DataFrame) -> dict[str, Any]:
    """One (task, variant, T) group of ok rows -> its summary line."""
    budget = float(group["steps"].max())
    reached = group["steps_to_target"].notna() & ~group["censored"].astype(bool)
    row = {"seeds": len(group), "acc_mean": group["accuracy"].mean(), "acc_std": group["accuracy"].std(ddof=1),
           "loss_mean": group["loss"].mean(), "reached": f"{int(reached.sum())}/{len(group)}",
           "steps_to_target_median": median_steps(group["steps_to_target"].where(reached), budget),
           "train_s_mean": group["train_s"].mean()}
    if "bits_per_byte" in group and group["bits_per_byte"].notna().any():
        row["bpb_mean"] = group["bits_per_byte"].mean()
    return row


def summary(df: pd.DataFrame | None) -> pd.DataFrame:
    """Mean ± std of test accuracy over seeds per (task, variant, T), seeds that reached the target, and the
    median steps_to_target (NaN when censored for half the seeds or more). Only rows with status ok count."""
    if df is None or len(df) == 0 or "accuracy" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    if len(ok) == 0:
        return pd.DataFrame()
    rows = [{"task": task, "variant": var, "T": T, **_summary_row(group)}
            for (task, var, T), group in ok.groupby(["task", "variant", "T"], sort=True)]
    return pd.DataFrame(rows)
