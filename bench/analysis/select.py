"""Which rows an analysis reads: one results file of one machine per sweep, ok rows, medians per T, declared values.

When a sweep has several results files (profiles, devices, machines), a figure reads one of them: the ``full``
profile (or a ``gpu`` one), then ``standard``, then ``quick``, then the file with most rows, then the file name; and of that
file only the segments of one machine (``store.machine_of``), the one with most rows there. So no figure puts rows
measured on two machines on one axis; a figure that pairs two sweeps asks for the second one on the first one's machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import variants

PROFILE_RANK = {"full": 0, "gpu": 0, "gpu_fp32": 0, "standard": 1, "quick": 2}  # a GPU profile: that device's full


@dataclass(frozen=True)
class Source:
    rows: pd.DataFrame
    manifests: pd.DataFrame

    @property
    def machine(self) -> str:
        """The one machine every row of this source was measured on."""
        return str(self.manifests["machine"].iloc[0])


def _rank(group: pd.DataFrame, counts: pd.Series) -> tuple[int, int]:
    """Sort key of one (file, machine) group of manifests: the full profile first, then the most rows."""
    return PROFILE_RANK.get(str(group["profile"].iloc[0]), 3), -int(counts.reindex(group["run_id"]).fillna(0).sum())


def source(df: pd.DataFrame, manifests: pd.DataFrame, sweep: str, machine: str | None = None,
           at_T: int | None = None) -> Source | None:
    """The rows (all columns of other sweeps dropped) and manifests of one results file of ``sweep`` on one
    machine (``machine`` if given; None when that machine has no rows of ``sweep``), among the files with a row at
    ``T == at_T`` if given (a figure that pairs two sweeps at one length)."""
    if "sweep" not in df or "sweep" not in manifests:
        return None
    mine = manifests[manifests["sweep"] == sweep]
    if "machine" not in mine:
        mine = mine.assign(machine="unknown")
    if machine is not None:
        mine = mine[mine["machine"] == machine]
    rows = df[df["sweep"] == sweep]
    if at_T is not None and "T" in rows:
        mine = mine[mine["run_id"].isin(set(rows.loc[rows["T"] == at_T, "run_id"]))]
    if mine.empty or rows.empty:
        return None
    counts = rows["run_id"].value_counts()
    groups = [(_rank(g, counts), path, m) for (path, m), g in mine.groupby(["path", "machine"], sort=True)]
    _, path, chosen_machine = min(groups)
    chosen = mine[(mine["path"] == path) & (mine["machine"] == chosen_machine)]
    rows = rows[rows["run_id"].isin(set(chosen["run_id"]))].dropna(axis=1, how="all")
    if rows.empty:
        return None
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
