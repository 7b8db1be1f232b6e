"""Figures of the accuracy sweep: accuracy against T per task, and the accuracy–speed Pareto front."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.analysis.accuracy import accuracy_rows, accuracy_table
from bench.analysis.pareto import pareto_table
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, bounded_yerr, color_of, legend_right, new_figure,
                                not_measured, save, seconds, style_axes, units)


def accuracy_source(df: pd.DataFrame, manifests: pd.DataFrame):
    """The accuracy sweep's source (one file, one machine) and its rows as ``accuracy_rows`` gives them."""
    src = source(df, manifests, "accuracy")
    return src, accuracy_rows(src.rows if src is not None else None)


def fig_accuracy(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_vs_length", "Accuracy vs sequence length, per task"
    src, rows = accuracy_source(df, manifests)
    if rows is None:
        return not_measured(name, title, "accuracy", "no accuracy rows (task, variant, T, seed, accuracy)")
    table = accuracy_table(rows)
    tasks = sorted(table["task"].unique())
    fig, axes = new_figure(len(tasks), 1, (10.0, 3.6 * len(tasks)))
    for ax, task in zip(axes[:, 0], tasks):
        for variant, g in table[table["task"] == task].groupby("variant", sort=True):
            ax.errorbar(g["T"], g["accuracy_mean"], yerr=bounded_yerr(g["accuracy_mean"], g["accuracy_std"]),
                        color=color_of(variant),
                        marker="o", ms=3, capsize=2, label=variant)
        style_axes(ax, f"task: {task}", "sequence length T", "accuracy", logy=False)
        legend_right(ax)
    caption = ("Test accuracy of each variant, mean ± std over seeds (bars clipped to [0, 1]), against the sequence "
               "length of each task. A variant whose accuracy falls as T grows is losing information that full "
               "attention keeps.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


def pareto_points(ax, table: pd.DataFrame) -> None:
    """Filled points on the front, open squares off it, and the front as a step line."""
    for _, r in table.iterrows():
        ax.errorbar([r["forward_s"]], [r["accuracy_mean"]], yerr=bounded_yerr([r["accuracy_mean"]],
                    [r["accuracy_std"]]), marker="o" if r["pareto"] else "s", mfc=color_of(r["variant"]) if
                    r["pareto"] else "white", color=color_of(r["variant"]), capsize=2, ls="none", label=r["variant"])
    front = table[table["pareto"]].sort_values("forward_s")
    ax.step(front["forward_s"], front["accuracy_mean"], where="post", color="black", lw=0.8, label="Pareto front")


def fig_pareto(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_speed_pareto", "Accuracy–speed Pareto front"
    acc_src, acc = accuracy_source(df, manifests)
    if acc is None:
        return not_measured(name, title, "accuracy", "no accuracy rows to place on the front")
    T = int(acc["T"].max())
    eff_src = source(df, manifests, "efficiency", machine=acc_src.machine, at_T=T)  # one machine, one length
    if eff_src is None or "median_s" not in eff_src.rows:
        return not_measured(name, title, "efficiency", f"no forward times measured at T = {T} on the accuracy "
                            f"sweep's machine ({acc_src.machine}) to place the accuracies against")
    table = pareto_table(acc, eff_src.rows)
    if table.empty:
        return not_measured(name, title, "efficiency", "no variant has both an accuracy and a forward time")
    fig, axes = new_figure(1, 1, (8.0, 4.8))
    ax = axes[0, 0]
    pareto_points(ax, table)
    style_axes(ax, f"T = {T} (accuracy and forward time at the same T)", "forward time",
               "accuracy (mean over tasks)", logx=False, logy=False)
    ax.set_xscale("log")
    units(ax, "x", seconds)
    legend_right(ax)
    caption = (f"Mean accuracy over tasks and seeds at T = {T} against the median non-causal forward time of the "
               "same variant from the efficiency sweep on the same machine (bars: ± std over tasks and seeds, clipped "
               "to [0, 1]). Filled points lie on the Pareto front: no other variant is both faster and more accurate.")
    sources = pd.concat([acc_src.manifests, eff_src.manifests], ignore_index=True)
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, sources)
