"""Figures of the training sweeps: learning curves with their power laws (data_scaling) and distillation."""
from __future__ import annotations

from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd

from bench.analysis import learning
from bench.analysis.distillation import distillation_rows, kd_gain_table, paired_gains
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, color_of, legend_right, new_figure, not_measured,
                                save, style_axes)


BASELINE_STYLES = (("black", "s", "--"), ("0.45", "^", ":"), ("black", "D", "-."))  # colour, marker, fit line


def model_style(model: str, bases: list[str]) -> tuple[str, str, str]:
    """(colour, marker, line style): a variant's colour with dots and a solid fit; each baseline its own grey,
    marker and dash, so two baselines never look alike."""
    if model not in bases:
        return color_of(model), "o", "-"
    return BASELINE_STYLES[sorted(bases).index(model) % len(BASELINE_STYLES)]


def learning_panel(ax, rows: pd.DataFrame, task: str) -> None:
    """Mean ± std over seeds per size and each model's fitted power law (drawn over the measured sizes only, and
    only where α is a fit: ``Estimate.usable``); baselines in black and grey with their own markers and dashes."""
    metric, bases = learning.FIT_METRIC[task], learning.baselines(rows)
    for model, g in rows[rows["task"] == task].groupby("model", sort=True):
        g = g.dropna(subset=[metric])
        color, marker, ls = model_style(model, bases)
        stats = learning.curve_stats(g, metric)
        law = learning.fitted_law(g, metric)
        fit = "" if law is None else f": α={law.alpha}" if law.alpha.usable else ": α n/a (see table)"
        label = f"{model}{' (baseline)' if model in bases else ''}{fit}"
        ax.errorbar(stats["n_train"], stats["mean"], yerr=stats["std"].fillna(0), ls="none", marker=marker,
                    ms=4, capsize=2, color=color, label=label)
        if law is not None and law.alpha.usable:
            grid = np.geomspace(stats["n_train"].min(), stats["n_train"].max(), 64)
            ax.plot(grid, law.predict(grid), color=color, ls=ls, lw=1)
    style_axes(ax, task, "training-set size n", metric.replace("_", " "), logx=False, logy=False)
    ax.set_xscale("log")
    ax.legend(fontsize=7)


def fig_learning_curves(df: pd.DataFrame, manifests: pd.DataFrame,
                        out_dir: str | Path) -> FigureResult | NotMeasured:
    """One panel per task: the fitted metric (test error, or bits per byte for text) against training-set size;
    the table is ``bench.analysis.learning.summary``."""
    name, title = "learning_curves", "Learning curves: error vs training-set size"
    src = source(df, manifests, "data_scaling")
    rows = None if src is None else src.rows
    if rows is None or "n_train" not in rows or "task" not in rows:
        return not_measured(name, title, "data_scaling", "no data_scaling rows (task, model, n_train, seed)")
    rows = rows[(rows["status"] == "ok") & rows["task"].isin(list(learning.FIT_METRIC))]
    tasks = sorted(rows["task"].unique())
    if not tasks:
        return not_measured(name, title, "data_scaling", "no finished data_scaling rows")
    fig, axes = new_figure(1, len(tasks), (6.0 * len(tasks), 4.8))
    for ax, task in zip(axes[0], tasks):
        learning_panel(ax, rows, task)
    caption = ("Held-out error (bits per byte for text) against the number of training examples, mean ± std over "
               "seeds, with a·n^(−α) + c fitted to every seed's point (α with its 95% CI; n/a and no curve where "
               "the fit is not one); black and grey, dashed and dotted: the baselines with a built-in inductive "
               "bias and no attention. The table gives α and c with 95% bootstrap CIs, the data "
               "needed for the target, and where the Transformer overtakes each baseline (NaN: not in range).")
    table = learning.summary(rows)
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


def share_panel(ax, table: pd.DataFrame) -> None:
    """Accuracy share against the transfer-set size, per student: solid KD, dashed labels only."""
    for student, r in table.groupby("student", sort=True):
        r = r.sort_values("n_train")
        speed = f"{r['speedup'].median():.2f}× faster"
        for method, ls, marker in (("kd", "-", "o"), ("labels", "--", "s")):
            ax.plot(r["n_train"], r[f"{method}_share"], ls=ls, marker=marker, ms=5, color=color_of(student),
                    label=f"{student} ({speed}), {'KD' if method == 'kd' else 'labels only'}")
    ax.axhline(1.0, color="black", ls=":", lw=0.8, label="the teacher")


def gain_panel(ax, table: pd.DataFrame, rows: pd.DataFrame) -> None:
    """The paired KD gain per size: each seed's gain as a dot, the mean as a line, zero as the reference."""
    for student, r in table.groupby("student", sort=True):
        r = r.sort_values("n_train")
        ax.plot(r["n_train"], r["kd_gain"], color=color_of(student), marker="o", ms=5, label=f"{student}, mean")
        for n, g in rows[rows["student"] == student].groupby("n_train"):
            gains = paired_gains(g, "accuracy_share")
            ax.plot([n] * len(gains), gains, ls="none", marker=".", ms=7, alpha=0.6, color=color_of(student))
    ax.axhline(0.0, color="black", lw=0.8, label="no gain")


def fig_distillation(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "distillation", "Distillation: accuracy share and KD gain per transfer-set size"
    src = source(df, manifests, "distillation")
    rows = distillation_rows(src.rows) if src is not None else None
    if rows is None:
        return not_measured(name, title, "distillation", "no distillation rows (student, method, speedup, share)")
    table = kd_gain_table(rows)
    fig, axes = new_figure(1, 2, (13.0, 4.8))
    share_panel(axes[0, 0], table)
    gain_panel(axes[0, 1], table, rows)
    style_axes(axes[0, 0], "accuracy share of the teacher", "transfer-set size n (examples)",
               "student accuracy / teacher accuracy", logy=False)
    style_axes(axes[0, 1], "KD gain, paired by seed (dots: seeds)", "transfer-set size n (examples)",
               "KD share − labels share", logy=False)
    legend_right(axes[0, 0])
    legend_right(axes[0, 1])
    for ax in axes[0]:
        sizes = sorted(table["n_train"].dropna().unique())
        ax.set_xticks(sizes, [f"{n:,.0f}" for n in sizes], minor=False)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    seeds = int(table["n_seeds"].max())
    caption = ("Each student's accuracy as a share of its teacher's per transfer-set size n (the first n of the "
               "teacher's training examples), trained on the teacher's soft targets (KD) or on the labels only, "
               f"mean over {seeds} seeds, with the speed-up over the teacher in the legend. The right panel gives "
               "the KD gain (KD share − labels share) paired by seed, each seed a dot and the mean a line, never "
               "pooled over sizes; the table gives it per size with its range over seeds (kd_gain_min, "
               "kd_gain_max).")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)
