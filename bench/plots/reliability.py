"""Figures about the harness itself: repeatability across fresh processes, and ours against public code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import peers, repeatability as rep
from bench.analysis.select import ok_rows, source
from bench.measure import STABLE_REL_IQR
from bench.plots.common import (FigureResult, NotMeasured, case_bars, color_of, new_figure, not_measured, phase_label,
                                plain_log_ticks, save, style_axes)

PEER_RATIOS = (("time_ratio", "time"), ("bytes_ratio", "peak memory (RSS)"), ("live_bytes_ratio", "live bytes"))


def repeat_bars(ax, table: pd.DataFrame, column: str, bound: float, title: str, ylabel: str) -> None:
    """One bar per variant × phase × T, the target bound as a dotted line."""
    case_bars(ax, table, table["variant"], table[column] * 100)
    ax.axhline(bound * 100, color="black", ls=":", lw=1.0, label=f"target {bound:.0%}")
    style_axes(ax, title, "", ylabel, logx=False, logy=False)
    ax.legend(loc="upper right")


def fig_repeatability(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "repeatability", "Repeatability: the same cases measured again in fresh processes"
    src = source(df, manifests, rep.NAME)
    table = rep.repeat_table(ok_rows(src.rows, "peak_bytes", "median_s", "iqr_s")) if src is not None else None
    if table is None or table.empty:
        return not_measured(name, title, rep.NAME, "no case measured in two fresh children")
    table = table.sort_values(["T", "phase", "variant"], kind="stable").reset_index(drop=True)
    fig, axes = new_figure(1, 2, (11.0, 4.6))
    repeat_bars(axes[0, 0], table, "mem_spread", rep.MEMORY_TOLERANCE, "peak memory across fresh children",
                "max |peak − mean| / mean (%)")
    repeat_bars(axes[0, 1], table.fillna({"max_rel_iqr": 0.0}), "max_rel_iqr", STABLE_REL_IQR,
                "steady-state timing spread", "worst IQR / median (%)")
    caption = ("Every case was measured once per fresh child process (new interpreter and heap); left, how far "
               "its peak memory moved between children, against the 5% target (the table adds the same spread of "
               "live tensor bytes, which does not depend on the heap's layout); right, the worst timing "
               "IQR/median among its repeats (cases under 1 ms are drawn at 0: the 3% bound is not applied "
               "to them). The table also gives how far the repeats' medians lie apart.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


def quartile_err(table: pd.DataFrame, column: str):
    """Whiskers from the quartiles of side-by-side rounds, where the table has them; else None."""
    q1, q3 = f"{column}_q1", f"{column}_q3"
    if q1 not in table or q3 not in table or not table[q1].notna().any():
        return None
    yerr = np.vstack([(table[column] - table[q1]).clip(lower=0), (table[q3] - table[column]).clip(lower=0)])
    return np.nan_to_num(yerr)


def peer_lines(ax, table: pd.DataFrame, column: str, title: str) -> None:
    """ours/peer against T, a colour per variant and a marker per peer, solid forward and dashed forward+backward,
    whiskers from the side-by-side rounds' quartiles; parity (1) dotted. Log axes with plain ticks."""
    names = sorted(table["peer"].unique())
    for (peer, variant, phase), g in table.groupby(["peer", "variant", "phase"], sort=True):
        g = g.sort_values("T")
        marker = "os^Dv<>"[names.index(peer) % 7]  # two peers of one variant share its colour, not its marker
        ax.errorbar(g["T"], g[column], yerr=quartile_err(g, column), color=color_of(variant), marker=marker,
                    ms=4, capsize=2, lw=1.2, ls="--" if phase == "forward_backward" else "-",
                    label=f"{variant} vs {peer}, {phase_label(phase)}")
    ax.axhline(1.0, color="black", ls=":", lw=1.0, label="parity")
    style_axes(ax, title, "sequence length T", "ours / peer (< 1: ours better)", logx=True, logy=True)
    ax.set_xticks(sorted(table["T"].unique()))
    plain_log_ticks(ax, "y")


def collapse_note(table: pd.DataFrame) -> str:
    """A sentence per pair whose peer output collapsed to mean(v) (``peers.collapsed_to_mean``), with its numbers."""
    notes = [f" {r.peer}: ours and the peer differ by rel_err {r.rel_err:.2f} (forward, median over T), but the "
             f"peer's output lies {r.peer_vs_mean_v:.2f} from mean(v), the output of uniform attention, which is "
             f"itself {r.mean_v_vs_full:.2f} from exact attention (ours: {r.ours_vs_full:.2f}, the peer: "
             f"{r.peer_vs_full:.2f}). The peer adds a fixed eps to every random feature (bench/peers.py); in this "
             f"high-variance regime of FAVOR+ the eps outweighs most features and pulls every output to mean(v), "
             f"which on these diffuse inputs happens to lie near exact attention. With eps = 0 the peer computes "
             f"ours (tests/test_peers.py), and with q, k scaled down both agree (rel_err_small_logits)."
             for r in peers.collapsed_to_mean(table).itertuples()]
    return "".join(notes)


def fig_peers(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "peers", "Ours against the public PyTorch implementations of the same methods"
    src = source(df, manifests, "peers")
    table = peers.summary(src.rows) if src is not None else None
    if table is None or table.empty:
        return not_measured(name, title, "peers", "no pair of ours and a peer measured")
    table = table.astype({"T": int}).sort_values(["peer", "phase", "T"], kind="stable").reset_index(drop=True)
    ratios = [(c, t) for c, t in PEER_RATIOS if c in table and table[c].notna().any()]
    fig, axes = new_figure(1, len(ratios), (4.0 * len(ratios), 4.4))
    for ax, (column, what) in zip(axes[0], ratios):
        peer_lines(ax, table, column, what)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    keep = ["peer", "variant", "phase", "T", *(c for c, _ in ratios), "time_ratio_q1", "time_ratio_q3",
            "time_ratio_separate", "rel_err", "grad_rel_err", "rel_err_small_logits", "ours_vs_full", "peer_vs_full",
            "mean_v_vs_full", "peer_vs_mean_v"]
    caption = ("Each of our variants beside a widely used public PyTorch implementation of the same method "
               "(bench/peers.py says which package and version, configured to compute the same function, checked "
               "by rel_err), measured by the same harness in the same run. Lines give ours / peer against T for "
               "time (the median over rounds that time a block of each side by side, whiskers their quartiles; "
               "solid forward, dashed forward+backward; the ratio "
               "of separately measured medians is in the table), the RSS peak (least of three probes) and the "
               "peak of live tensor bytes; below 1, ours is faster or smaller." + collapse_note(table))
    return FigureResult(name, title, save(fig, out_dir, name), table[[c for c in keep if c in table]], caption,
                        src.manifests)
