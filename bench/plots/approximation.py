"""The approximation figure: relative error against exact attention, against the budget and against T."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.approximation import REF_BUDGET, approximation_rows, approximation_table, reference_budget
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, color_of, legend_right, new_figure, not_measured, save,
                                style_axes)

ERROR = "relative error ‖Ŷ−Y‖/‖Y‖"


def approximation_panels(ax_r, ax_t, table: pd.DataFrame) -> None:
    T_max = table["T"].max()
    for (variant, regime), sub in table.groupby(["variant", "regime"], sort=True):
        ls, color = ("-" if regime == "random" else "--"), color_of(variant)
        label = f"{variant} ({regime})"
        at = sub[sub["T"] == T_max]
        if at["budget"].notna().any():
            ax_r.plot(at["budget"], at["rel_error_mean"], ls=ls, color=color, marker="o", ms=3, label=label)
        elif len(at):
            ax_r.axhline(at["rel_error_mean"].iloc[0], ls=":", color=color, label=f"{label}, no budget")
        r = reference_budget(sub)
        vs_t = sub[sub["budget"] == r] if np.isfinite(r) else sub[sub["budget"].isna()]
        ax_t.errorbar(vs_t["T"], vs_t["rel_error_mean"], yerr=vs_t["rel_error_std"].fillna(0), ls=ls, color=color,
                      marker="o", ms=3, capsize=2, label=f"{label}, r={r:g}" if np.isfinite(r) else label)
    style_axes(ax_r, f"vs budget r at T = {T_max:g}", "budget r (features / rank / landmarks / window)", ERROR)
    style_axes(ax_t, f"vs T at a fixed budget (nearest r = {REF_BUDGET})", "sequence length T", ERROR)
    legend_right(ax_r)
    legend_right(ax_t)


def fig_approximation(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "approximation_error", "Approximation error vs budget and vs T"
    src = source(df, manifests, "approximation")
    if src is None or not {"variant", "T", "rel_error"} <= set(src.rows):
        return not_measured(name, title, "approximation", "no approximation rows (variant, T, budget, rel_error)")
    table = approximation_table(approximation_rows(src.rows))
    if table.empty:
        return not_measured(name, title, "approximation", "no approximation rows with status ok")
    fig, axes = new_figure(2, 1, (10.0, 8.5))
    approximation_panels(axes[0, 0], axes[1, 0], table)
    caption = ("Relative Frobenius error of each approximate variant against float64 exact attention, mean ± std "
               "over seeds, against its budget r at the largest T (top) and against T at a fixed budget (bottom); "
               "solid: independent normal inputs (diffuse attention), dashed: peaked attention. Nyström uses its "
               "converged pseudo-inverse and Linformer random projections.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)
