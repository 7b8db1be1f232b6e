"""Which rows an analysis reads: one results file per sweep, ok rows, medians per T, declared values.

When a sweep has several results files (profiles, devices), the analysis reads one of them: the ``full`` profile
(or a ``gpu`` one) before ``quick``, then the file with most rows, then the file name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import variants

PROFILE_RANK = {"full": 0, "gpu": 0, "gpu_fp32": 0, "quick": 1}  # a GPU profile is that device's full one


@dataclass(frozen=True)
class Source:
    rows: pd.DataFrame
    manifests: pd.DataFrame


def source(df: pd.DataFrame, manifests: pd.DataFrame, sweep: str) -> Source | None:
    """The rows (all columns of other sweeps dropped) and manifests of one results file of ``sweep``."""
    if "sweep" not in df or "sweep" not in manifests:
        return None
    mine = manifests[manifests["sweep"] == sweep]
    rows = df[df["sweep"] == sweep]
    if mine.empty or rows.empty:
        return None
    counts = rows["run_id"].value_counts()
    stats = [(PROFILE_RANK.get(str(g["profile"].iloc[0]), 2), -int(counts.reindex(g["run_id"]).fillna(0).sum()),
              path) for path, g in mine.groupby("path", sort=True)]
    path = min(stats)[2]
    chosen = mine[mine["path"] == path]
    rows = rows[rows["run_id"].isin(set(chosen["run_id"]))].dropna(axis=1, how="all")
    rows = rows.drop_duplicates("case_id", keep="last") if "case_id" in rows else rows
    return Source(rows.reset_index(drop=True), chosen.reset_index(drop=True))


def ok_rows(rows: pd.DataFrame, *numeric: str) -> pd.DataFrame:
    """Rows with status ok, the named columns as floats."""
    out = rows[rows["status"] == "ok"].copy() if "status" in rows else rows.copy()
    for col in numeric:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def curve(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Median of ``y`` per ``x``, sorted, positive values only (log axes and log-log fits)."""
    c = frame.groupby(x, sort=True)[y].median().reset_index()
    return c[(c[y] > 0) & (c[x] > 0)]


def declared(variant: str, attr: str) -> float:
    """A number the variant's spec declares (e.g. ``time_exponent``); NaN for an unknown variant or attribute."""
    try:
        return float(getattr(variants.get(variant).spec, attr))
    except (variants.UnknownVariantError, AttributeError):
        return np.nan


def sorted_table(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(rows)
    return table.sort_values(keys, kind="stable").reset_index(drop=True) if not table.empty else table
