"""The interpretability figure: per task, ground-truth alignment and rank agreement with causal importances per
variant (per-seed points, medians, the trivial baselines), and attention entropy against T."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.interpretability import interpretability_rows, interpretability_table
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, color_of, legend_right, length_label, new_figure,
                                not_measured, save, style_axes)

SCORE_PANELS = (("alignment", "attention mass on the answer's key"),
                ("tau_grad", "Kendall τ vs gradient × input"),
                ("tau_occlusion", "Kendall τ vs occlusion"))


def seed_points(ax, rows: pd.DataFrame, column: str, order: list[str], marker: str = "o", dx: float = 0.0,
                label: str | None = None) -> None:
    """Every seed of each variant as a small point at x = its index, the median over seeds as a bar."""
    for i, variant in enumerate(order):
        values = rows.loc[rows["variant"] == variant, column].dropna().to_numpy(dtype=float)
        if values.size == 0:
            continue
        color = color_of(variant)
        ax.scatter(np.full(values.size, i + dx), values, s=16, marker=marker, color=color, alpha=0.7,
                   label=label if i == 0 else None)
        ax.hlines(np.median(values), i + dx - 0.18, i + dx + 0.18, color=color, lw=2.2)


def score_panel(ax, rows: pd.DataFrame, column: str, ylabel: str, order: list[str], title: str) -> None:
    """One score per variant at one T; alignment beside the rollout's and uniform attention's, τ beside 0."""
    if column == "alignment":
        seed_points(ax, rows, column, order, dx=-0.15, label="raw attention (best head)")
        seed_points(ax, rows, "rollout_alignment", order, marker="^", dx=0.15, label="rollout")
        uniform = rows.groupby("variant")["uniform_alignment"].median().reindex(order)
        ax.hlines(uniform.to_numpy(), np.arange(len(order)) - 0.35, np.arange(len(order)) + 0.35, colors="0.3",
                  linestyles=":", lw=1.5, label="uniform attention")
        ax.set_ylim(-0.03, 1.03)
    else:
        seed_points(ax, rows, column, order, dx=-0.15, label="raw attention (best head)")
        seed_points(ax, rows, "rollout_" + column, order, marker="^", dx=0.15, label="rollout")
        ax.axhline(0.0, color="0.3", ls=":", lw=1.5, label="random map (τ = 0)")
    style_axes(ax, title, "", ylabel, logx=False, logy=False)
    ax.set_xticks(range(len(order)), order, rotation=20, ha="right", fontsize=8)


def entropy_panel(ax, table: pd.DataFrame, rows: pd.DataFrame, title: str) -> None:
    """Attention entropy (mean over layers and heads) against T per variant: median line, seed points, uniform
    attention dotted."""
    for variant, g in table.groupby("variant", sort=True):
        color = color_of(variant)
        ax.plot(g["T"], g["entropy"], "-o", ms=4, color=color, label=variant)
        seeds = rows[rows["variant"] == variant]
        ax.scatter(seeds["T"], seeds["entropy"], s=12, color=color, alpha=0.6)
    uniform = table.groupby("T")["uniform_entropy"].median()
    ax.plot(uniform.index, uniform.to_numpy(), ":", color="0.3", lw=1.5, label="uniform attention")
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
    fig, axes = new_figure(len(tasks), 4, (17.0, 4.2 * len(tasks)))
    for ax_row, task in zip(axes, tasks):
        here = rows[(rows["task"] == task) & (rows["T"] == T0)]
        for ax, (column, ylabel) in zip(ax_row[:3], SCORE_PANELS):
            score_panel(ax, here, column, ylabel, order, f"{task}, T = {T0}")
        entropy_panel(ax_row[3], table[table["task"] == task], rows[rows["task"] == task], f"{task}: entropy")
        legend_right(ax_row[3], fontsize=8)
    axes[-1, 0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    caption = (f"Per task at T = {T0} (the length with the most seeds), each trained model's attention mass on the "
               "answer's key (its best layer and head; triangles: attention rollout; dotted: uniform attention over "
               "the visible keys) and the per-query Kendall τ between that head's weights and two causal "
               "importances, gradient × input and leave-one-out occlusion of the token embedding (dotted: τ = 0 "
               "of a random map); points are seeds and bars their medians. The right panels give the attention "
               "entropy (mean over layers and heads) at every measured T, against uniform attention's (dotted).")
    return FigureResult(name, title, save(fig, out_dir, name), table.round(3), caption, src.manifests)
