"""The interpretability figure: per task, ground-truth alignment and rank agreement with causal importances per
variant (per-seed points, medians, the trivial baselines), and attention entropy against T."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from bench.analysis.interpretability import interpretability_rows, interpretability_table
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, color_of, length_label, new_figure, not_measured, save,
                                style_axes)

SCORE_PANELS = (("alignment", "share of attention on the answer's position"),
                ("tau_grad", "Kendall τ vs gradient × input"),
                ("tau_occlusion", "Kendall τ vs occlusion"))


def seed_points(ax, rows: pd.DataFrame, column: str, order: list[str], marker: str = "o", dy: float = 0.0
                ) -> None:
    """Every seed of each variant as a small point on the row y = its index, the median over seeds as a bar."""
    for i, variant in enumerate(order):
        values = rows.loc[rows["variant"] == variant, column].dropna().to_numpy(dtype=float)
        if values.size == 0:
            continue
        color = color_of(variant)
        ax.scatter(values, np.full(values.size, i + dy), s=16, marker=marker, color=color, alpha=0.7)
        ax.vlines(np.median(values), i + dy - 0.14, i + dy + 0.14, color=color, lw=2.2)


def score_panel(ax, rows: pd.DataFrame, column: str, xlabel: str, order: list[str], title: str) -> None:
    """One score per variant (a row each) at one T, raw attention above the rollout; uniform attention's
    alignment, or τ = 0, as the baseline."""
    seed_points(ax, rows, column, order, dy=-0.15)
    seed_points(ax, rows, "rollout_" + column, order, marker="^", dy=0.15)
    if column == "alignment":
        uniform = rows.groupby("variant")["uniform_alignment"].median().reindex(order)
        ax.vlines(uniform.to_numpy(), np.arange(len(order)) - 0.4, np.arange(len(order)) + 0.4, colors="0.3",
                  linestyles=":", lw=1.5)
    else:
        ax.axvline(0.0, color="0.3", ls=":", lw=1.5)
    style_axes(ax, title, xlabel, "", logx=False, logy=False)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_ylim(len(order) - 0.5, -0.5)


def entropy_panel(ax, table: pd.DataFrame, rows: pd.DataFrame, title: str) -> None:
    """Attention entropy (mean over layers and heads) against T per variant: median line, seed points, uniform
    attention dotted."""
    for variant, g in table.groupby("variant", sort=True):
        color = color_of(variant)
        ax.plot(g["T"], g["entropy"], "-o", ms=4, color=color, label=variant)
        seeds = rows[rows["variant"] == variant]
        ax.scatter(seeds["T"], seeds["entropy"], s=12, color=color, alpha=0.6)
    for pose, g in table.groupby("posing", sort=True):  # causal queries see fewer keys than bidirectional ones
        uniform = g.groupby("T")["uniform_entropy"].median()
        ax.plot(uniform.index, uniform.to_numpy(), ":", color="0.3", lw=1.5)
        ax.annotate(f"uniform, {pose}", (uniform.index[0], uniform.iloc[0]), fontsize=7, color="0.3", ha="left",
                    va="bottom" if pose == "bidirectional" else "top")  # bidirectional sees more keys: above
    style_axes(ax, title, "sequence length T", "attention entropy (nats)", logx=True, logy=False)
    ax.set_xticks(sorted(table["T"].unique()))
    ax.xaxis.set_major_formatter(length_label)


def fig_interpretability(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path
                         ) -> FigureResult | NotMeasured:
    name, title = "interpretability", "Does attention point at the answer? Alignment, faithfulness, entropy"
    src = source(df, manifests, "interpretability")
    rows = interpretability_rows(src.rows if src is not None else None)
    if rows is None:
        return not_measured(name, title, "interpretability", "no interpretability rows (task, variant, T, seed)")
    table = interpretability_table(rows)
    tasks = sorted(rows["task"].unique())
    order = sorted(rows["variant"].unique())
    seeds_at = rows.groupby("T")["seed"].nunique()
    T0 = int(seeds_at[seeds_at == seeds_at.max()].index.min())  # the length with most seeds (one T per panel)
    fig, axes = new_figure(len(tasks), 4, (17.0, 3.6 * len(tasks) + 0.8))
    for ax_row, task in zip(axes, tasks):
        here = rows[(rows["task"] == task) & (rows["T"] == T0)]
        for ax, (column, xlabel) in zip(ax_row[:3], SCORE_PANELS):
            score_panel(ax, here, column, xlabel, order, f"{task}, T = {T0}")
        entropy_panel(ax_row[3], table[table["task"] == task], rows[rows["task"] == task], f"{task}: entropy")
    handles = [Line2D([], [], marker="o", ls="", color="0.4", label="raw attention, best head (points: seeds)"),
               Line2D([], [], marker="^", ls="", color="0.4", label="attention rollout"),
               Line2D([], [], ls=":", color="0.3", label="uniform attention; τ = 0 of a random map")]
    fig.legend(handles=handles + axes[0, 3].get_legend_handles_labels()[0], loc="outside lower center", ncol=4,
               fontsize=8)
    caption = (f"Per task at T = {T0} (the length with the most seeds), each trained model's share of attention "
               "weight on the answer's position, the value after the asked key (its best layer and head; triangles: "
               "attention rollout; dotted: uniform attention over the visible keys) and the per-query Kendall τ between that head's weights and two causal "
               "importances, gradient × input and leave-one-out occlusion of the token embedding (dotted: τ = 0 "
               "of a random map); points are seeds and bars their medians. The right panels give the attention "
               "entropy (mean over layers and heads) at every measured T, against uniform attention's (dotted, per posing).")
    return FigureResult(name, title, save(fig, out_dir, name), table.round(3), caption, src.manifests)
