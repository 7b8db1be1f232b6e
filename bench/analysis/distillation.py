"""The distillation sweep's numbers: each student's accuracy share of its teacher against its speed-up, and the
gain of training on the teacher's soft targets (KD) over the labels alone, paired by seed."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.analysis.select import ok_rows

COLUMNS = ("student", "method", "speedup", "accuracy_share")


def distillation_rows(rows: pd.DataFrame) -> pd.DataFrame | None:
    """Ok rows as (student, method, n_train, seed, speedup, accuracy_share); None without those columns or any
    complete row. A results file without ``n_train`` reads as one transfer-set size (NaN)."""
    if not set(COLUMNS) <= set(rows):
        return None
    rows = ok_rows(rows)
    out = pd.DataFrame({"student": rows["student"].astype(str), "method": rows["method"].astype(str),
                        "speedup": pd.to_numeric(rows["speedup"]),
                        "accuracy_share": pd.to_numeric(rows["accuracy_share"])}).dropna()
    for col in ("n_train", "seed"):
        out[col] = pd.to_numeric(rows[col]) if col in rows else math.nan
    return out if not out.empty else None


def paired_gains(rows: pd.DataFrame, column: str, sign: float = 1.0) -> pd.Series:
    """sign·(kd − labels) of ``column`` per seed, paired by seed (empty without both methods)."""
    wide = rows.pivot_table(index="seed", columns="method", values=column, aggfunc="mean")
    if not {"kd", "labels"} <= set(wide.columns):
        return pd.Series(dtype=float)
    return sign * (wide["kd"] - wide["labels"]).dropna()


def _kd_row(group: pd.DataFrame) -> dict[str, Any]:
    """One (student, transfer-set size): speed-up, accuracy share per method and the paired KD gain."""
    shares = group.groupby("method")["accuracy_share"].mean()
    gains = paired_gains(group.fillna({"seed": -1}), "accuracy_share")
    return {"speedup": float(group["speedup"].median()), "labels_share": shares.get("labels", math.nan),
            "kd_share": shares.get("kd", math.nan), "kd_gain": float(gains.mean()) if len(gains) else math.nan,
            "kd_gain_min": float(gains.min()) if len(gains) else math.nan,
            "kd_gain_max": float(gains.max()) if len(gains) else math.nan, "n_seeds": len(gains)}


def kd_gain_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per student × transfer-set size n_train (never pooled over sizes: the gain depends on n): the accuracy
    share of each recipe and the KD gain in share, paired by seed, its mean and its range over seeds."""
    groups = rows.groupby(["student", "n_train"], sort=True, dropna=False)
    return pd.DataFrame([{"student": s, "n_train": n, **_kd_row(g)} for (s, n), g in groups])


def _gain(rows: pd.DataFrame, column: str, sign: float) -> tuple[float, float]:
    """Mean and std over seeds of sign·(kd − labels) of ``column``, paired by seed."""
    diff = paired_gains(rows, column, sign)
    if diff.empty:
        return math.nan, math.nan
    return float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else math.nan


def _summary_row(group: pd.DataFrame) -> dict[str, Any]:
    """One (task, student, n_train) group: the triple per method and the paired KD gain."""
    row = {"seeds": int(group["seed"].nunique()), "param_ratio": float(group["param_ratio"].median()),
           "speedup": float(group["speedup"].median()),
           "teacher_acc": float(group["teacher_accuracy"].mean())}
    for method, g in group.groupby("method"):
        row[f"{method}_acc_share"] = float(g["accuracy_share"].mean())
        if g["bits_per_byte"].notna().any():
            row[f"{method}_bpb"] = float(g["bits_per_byte"].mean())
    row["kd_gain_acc"], row["kd_gain_acc_std"] = _gain(group, "accuracy", 1.0)
    if group["bits_per_byte"].notna().any():
        row["teacher_bpb"] = float(group["teacher_bits_per_byte"].mean())
        row["kd_gain_bpb"], row["kd_gain_bpb_std"] = _gain(group, "bits_per_byte", -1.0)  # fewer bits = a gain
    return row


def summary(df: pd.DataFrame | None) -> pd.DataFrame:
    """Per (task, student, n_train): parameter ratio, median speed-up, accuracy share (and bits per byte) per
    method, and the KD gain paired by seed (accuracy points; bits per byte saved), mean and std over seeds.
    Only rows with status ok count."""
    if df is None or len(df) == 0 or "accuracy_share" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    if "bits_per_byte" not in ok:
        ok = ok.assign(bits_per_byte=math.nan, teacher_bits_per_byte=math.nan)
    rows = [{"task": task, "student": student, "n_train": n, **_summary_row(g)}
            for (task, student, n), g in ok.groupby(["task", "student", "n_train"], sort=True)]
    return pd.DataFrame(rows)
