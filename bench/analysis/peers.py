"""The peers sweep's numbers: ours over the public implementation of the same method, per time and bytes."""
from __future__ import annotations

import pandas as pd

PAIR_KEYS = ("peer", "variant", "T", "phase")
AGREEMENT = ("rel_err", "grad_rel_err", "rel_err_small_logits", "ours_vs_full", "peer_vs_full", "mean_v_vs_full",
             "peer_vs_mean_v")
PAIRED = ("paired_time_ratio", "paired_time_ratio_q1", "paired_time_ratio_q3")
LABELS = {"median_s": "time", "peak_bytes": "bytes", "peak_live_bytes": "live_bytes"}
EMPTY = [*PAIR_KEYS, "time_ours_s", "time_peer_s", "time_ratio", "bytes_ours", "bytes_peer", "bytes_ratio"]


def side_by_side(df: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """Medians of ours and the peer per pair, and their ratio ours/peer, for each metric in ``values``."""
    wide = df.pivot_table(index=list(PAIR_KEYS), columns="impl", values=values, aggfunc="median")
    table = pd.DataFrame(index=wide.index)
    for metric, label in ((m, LABELS[m]) for m in values):
        ours = wide[(metric, "ours")] if (metric, "ours") in wide else float("nan")
        peer = wide[(metric, "peer")] if (metric, "peer") in wide else float("nan")
        suffix = "_s" if label == "time" else ""
        table[f"{label}_ours{suffix}"], table[f"{label}_peer{suffix}"] = ours, peer
        table[f"{label}_ratio"] = ours / peer
    return table


def with_paired_time(table: pd.DataFrame, peer_rows) -> pd.DataFrame:
    """``time_ratio`` from the peer row's side-by-side rounds where it has them (with quartiles)."""
    p = peer_rows[list(PAIRED)].median().reindex(table.index)
    both = table["time_ratio_separate"].notna()  # a pair missing its ours row has no ratio of either kind
    table["time_ratio"] = p["paired_time_ratio"].where(both & p["paired_time_ratio"].notna(),
                                                       table["time_ratio_separate"])
    table["time_ratio_q1"] = p["paired_time_ratio_q1"].where(both)
    table["time_ratio_q3"] = p["paired_time_ratio_q3"].where(both)
    return table


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (peer, variant, T, phase): median seconds and peak bytes of ours and the peer, the ratios
    ours/peer (< 1: ours is faster / smaller), and the peer row's agreement columns. Only "ok" rows are used; a
    pair missing either side has NaN ratios.

    ``time_ratio`` is the side-by-side ratio of the peer row (``paired_time_ratio``, with its quartiles
    ``time_ratio_q1`` / ``time_ratio_q3``) where the row has one, else the ratio of the two medians, which is
    always kept as ``time_ratio_separate``."""
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if df.empty:
        return pd.DataFrame(columns=EMPTY)
    live = "peak_live_bytes" in df.columns and df["peak_live_bytes"].notna().any()
    table = side_by_side(df, ["median_s", "peak_bytes", *(["peak_live_bytes"] if live else [])])
    table["time_ratio_separate"] = table["time_ratio"]
    peer_rows = df[df["impl"] == "peer"].groupby(list(PAIR_KEYS))
    if "paired_time_ratio" in df.columns:
        table = with_paired_time(table, peer_rows)
    agree = [c for c in AGREEMENT if c in df.columns]
    if agree:
        table = table.join(peer_rows[agree].median())
    return table.reset_index()


def collapsed_to_mean(table: pd.DataFrame, disagree: float = 0.1, near: float = 0.1) -> pd.DataFrame:
    """Pairs (forward rows) whose outputs disagree (``rel_err`` > ``disagree``) while the peer's output lies within
    ``near`` of mean(v), the output of uniform attention: the peer collapsed to averaging, ours did not. Medians
    over T of the agreement columns, one row per peer."""
    cols = ["rel_err", "peer_vs_mean_v", "mean_v_vs_full", "ours_vs_full", "peer_vs_full"]
    if not set(cols) <= set(table.columns):
        return pd.DataFrame(columns=["peer", *cols])
    fwd = table[(table["phase"] == "forward") & (table["rel_err"] > disagree) & (table["peer_vs_mean_v"] < near)]
    return fwd.groupby("peer", sort=True)[cols].median().reset_index()
