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
                                plain_log_ticks, save, style_axes)


BASELINE_STYLES = (("black", "s", "--"), ("0.45", "^", ":"), ("black", "D", "-."))  # colour, marker, fit line
PRETRAINED_STYLE = ("crimson", "*", "-")  # the fine-tuned Transformer: never a hashed colour near scratch's
SELF_SUPERVISION_MODELS = frozenset({learning.REFERENCE, learning.PRETRAINED})  # and the baselines


def model_style(model: str, bases: list[str]) -> tuple[str, str, str]:
    """(colour, marker, line style): a variant's colour with dots and a solid line; the pretrained model crimson
    stars; each baseline its own grey, marker and dash, so two baselines never look alike."""
    if model == learning.PRETRAINED:
        return PRETRAINED_STYLE
    if model not in bases:
        return color_of(model), "o", "-"
    return BASELINE_STYLES[sorted(bases).index(model) % len(BASELINE_STYLES)]


TRIVIAL = (("majority_error", "majority class", (0, (1, 1))),
           ("centroid_error", "byte-histogram centroid (fitted on n)", (0, (4, 1, 1, 1))))  # column, label, dash


def seed_points(ax, g: pd.DataFrame, metric: str, color: str, marker: str) -> None:
    """Every seed's point; a censored run (its step cap hit while still improving) hollow."""
    censored = g["censored"].fillna(False).astype(bool) if "censored" in g else pd.Series(False, index=g.index)
    for hollow, part in g.groupby(censored):
        ax.plot(part["n_train"], part[metric], ls="none", marker=marker, ms=4, alpha=0.6, color=color,
                mfc="none" if hollow else color)


def trivial_lines(ax, rows: pd.DataFrame) -> None:
    """The trivial rules' median test error per n, as thin grey lines (the floor any model must beat)."""
    for column, label, dash in TRIVIAL:
        if column in rows and rows[column].notna().any():
            med = rows.groupby("n_train")[column].median()
            ax.plot(med.index, med.values, color="0.55", lw=1, ls=dash, label=f"trivial: {label}")


def learning_panel(ax, rows: pd.DataFrame, task: str) -> None:
    """Per model: every seed's point (hollow: censored), the median over seeds as a line, and the fitted power
    law (dotted, over the measured sizes only, and only where it is a fit that follows the seeds); baselines in
    black and grey with their own markers; the trivial rules as thin grey lines."""
    metric, bases = learning.FIT_METRIC[task], learning.baselines(rows)
    task_rows = rows[rows["task"] == task]
    for model, g in task_rows.groupby("model", sort=True):
        g = g.dropna(subset=[metric])
        color, marker, ls = model_style(model, bases)
        law = learning.fitted_law(g, metric)
        status = learning.law_status(g, metric, law)
        fit = "" if law is None else f", α={law.alpha}" if status == "ok" else ", α n/a"
        med = g.groupby("n_train")[metric].median()
        ax.plot(med.index, med.values, color=color, ls=ls, marker=marker, ms=5, lw=1.5,
                label=f"{model}{' (baseline)' if model in bases else ''}{fit}")
        seed_points(ax, g, metric, color, marker)
        if status == "ok":
            grid = np.geomspace(med.index.min(), med.index.max(), 64)
            ax.plot(grid, law.predict(grid), color=color, ls=":", lw=1)
    trivial_lines(ax, task_rows)
    style_axes(ax, task, "labelled training examples n", metric.replace("_", " "), logx=True, logy=False)
    legend_right(ax, fontsize=7)


def fig_learning_curves(df: pd.DataFrame, manifests: pd.DataFrame,
                        out_dir: str | Path) -> FigureResult | NotMeasured:
    """One panel per task: the fitted metric (test error, or bits per byte for text_bytes) against the number
    of labelled training examples; the table is ``bench.analysis.learning.summary``."""
    name, title = "learning_curves", "Learning curves: error vs training-set size"
    src = source(df, manifests, "data_scaling")
    rows = None if src is None else src.rows
    if rows is None or "n_train" not in rows or "task" not in rows:
        return not_measured(name, title, "data_scaling", "no data_scaling rows (task, model, n_train, seed)")
    rows = rows[(rows["status"] == "ok") & rows["task"].isin(list(learning.FIT_METRIC))]
    tasks = sorted(rows["task"].unique())
    if not tasks:
        return not_measured(name, title, "data_scaling", "no finished data_scaling rows")
    fig, axes = new_figure(len(tasks), 1, (10.0, 4.2 * len(tasks)))
    for ax, task in zip(axes[:, 0], tasks):
        learning_panel(ax, rows, task)
    caption = ("Held-out test error (bits per byte for text_bytes) against the number of labelled training "
               "examples, every seed a point (hollow: its step cap was hit while still improving) and the "
               "median a line, with a·n^(−α) + c dotted over the measured sizes where it is a fit that stays "
               "within two seed ranges of every median and the trivial rules in thin grey; pretrained is the "
               "full-attention Transformer fine-tuned from a body pretrained on unlabelled train-split text. "
               "The table gives α and c with 95% bootstrap CIs, the data needed for the target (measured on the "
               "median curve, and fitted but never read past 4× the largest size), and where the Transformer "
               "overtakes each baseline, measured and fitted with its CI over seed resamples or not identified.")
    fits = learning.summary(rows)
    crossings = ("Where the Transformer overtakes each baseline", readable_crossovers(learning.crossover_table(fits)))
    return FigureResult(name, title, save(fig, out_dir, name), readable_fits(fits), caption, src.manifests,
                        extra=(crossings,))


def _with_ci(value: float, lo: float, hi: float) -> str:
    """A number and its 95% CI as one short cell; blank when there is no number."""
    if value != value:
        return ""
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]" if lo == lo and hi == hi else f"{value:.3g}"


def readable_fits(fits: pd.DataFrame) -> pd.DataFrame:
    """``learning.summary`` as the report shows it: α and c with their CIs in one cell each, no crossovers."""
    if fits.empty:
        return fits
    fits = fits.reindex(columns=[*fits.columns, *(c for c in ("alpha", "alpha_lo", "alpha_hi", "floor_c", "c_lo",
                                                                 "c_hi", "data_for_target") if c not in fits)])
    shown = fits[["task", "model", "baseline", "metric", "n_sizes", "seeds", "n_params", "metric_at_min",
                  "metric_at_max", "fit"]].copy()
    shown["alpha [95% CI]"] = [_with_ci(*r) for r in fits[["alpha", "alpha_lo", "alpha_hi"]].to_numpy(float)]
    shown["floor c [95% CI]"] = [_with_ci(*r) for r in fits[["floor_c", "c_lo", "c_hi"]].to_numpy(float)]
    shown["target"] = fits["target"]
    shown["n for target, measured"] = fits.get("data_for_target_measured_text")
    shown["n for target, fitted"] = fits["data_for_target"]
    return shown


def readable_crossovers(table: pd.DataFrame) -> pd.DataFrame:
    """``learning.crossover_table`` with the fitted crossover and its CI in one cell, "not identified" where
    fewer than half the seed resamples find one."""
    if table.empty:
        return table
    fitted = [_with_ci(*r) or "not identified" for r in table[["fitted", "fitted_lo", "fitted_hi"]].to_numpy(float)]
    return pd.DataFrame({"task": table["task"], "baseline": table["baseline"],
                         "measured crossover n": table["measured"], "fitted crossover n [95% CI]": fitted,
                         "resamples that find one": table["resamples"]})


def fig_self_supervision(df: pd.DataFrame, manifests: pd.DataFrame,
                         out_dir: str | Path) -> FigureResult | NotMeasured:
    """The labels saved by pretraining at each labelled n, with its CI over seed resamples; the table is
    ``bench.analysis.learning.labels_saved``."""
    name, title = "self_supervision", "Self-supervision: labels saved by pretraining"
    src = source(df, manifests, "data_scaling")
    table = learning.labels_saved(None if src is None else src.rows)
    if src is None or table.empty:
        return not_measured(name, title, "data_scaling", "no data_scaling rows of both pretrained and transformer")
    tasks = sorted(table["task"].unique())
    fig, axes = new_figure(len(tasks), 2, (16.0, 4.4 * len(tasks)))
    for (left, ax), task in zip(axes, tasks):
        compared = src.rows[(src.rows["status"] == "ok") & src.rows["model"].isin(SELF_SUPERVISION_MODELS
                                                                                   | learning.baselines(src.rows))]
        learning_panel(left, compared, task)
        left.set_title(f"{task}: error vs labelled n")
        saved_panel(ax, table[table["task"] == task], color_of(task), task)
        ax.axhline(1.0, color="black", lw=0.8, ls="--", label="no labels saved (factor 1)")
        style_axes(ax, f"{task}: labels saved by pretraining", "labelled training examples n (pretrained)",
                   "labels saved (scratch n' / n)")
        plain_log_ticks(ax, "y", "×")
        legend_right(ax, fontsize=7)
    caption = ("Left: test error against labelled n for the Transformer trained from scratch, the same model "
               f"fine-tuned from a next-byte-pretrained body ({pretrain_budget(table)} of pretraining per seed on "
               "unlabelled train-split text) and the attention-free baselines, seeds as "
               "points and the trivial rules in grey. Right: the labelled n' scratch needs to reach the "
               "pretrained error at n, divided by n (interpolated in log n, bars a 95% CI over seed resamples; a "
               "triangle is a bound, ▲ scratch never gets there within the measured sizes, ▼ it does at the "
               "smallest, and × a CI end cut at that range).")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


def pretrain_budget(table: pd.DataFrame) -> str:
    """The pretraining cost as the caption gives it: steps, and seconds where the rows recorded them."""
    parts = [f"{table[c].median():.0f} {unit}" for c, unit in (("pretrain_steps", "steps"), ("pretrain_s", "s"))
             if c in table and table[c].notna().any()]
    return ", ".join(parts) or "an unrecorded budget"


def saved_panel(ax, t: pd.DataFrame, color: str, task: str) -> None:
    """Labels-saved factors of one task: measured points with CI bars, censored ones as triangles at their bound."""
    n = t["n_train"].to_numpy(dtype=float)
    sizes = (n.min(), n.max())
    value = t["labels_saved"].to_numpy(dtype=float)
    shown = np.where(np.isinf(value), sizes[1] / n, np.where(value == 0, sizes[0] / n, value))
    lo, hi = t["labels_saved_lo"].to_numpy(dtype=float), t["labels_saved_hi"].to_numpy(dtype=float)
    # a CI end that is itself a bound (scratch reaches the error at its smallest size, or never) stops there
    lo_shown = np.where(lo == 0, sizes[0] / n, np.where(np.isinf(lo), sizes[1] / n, lo))
    hi_shown = np.where(np.isinf(hi), sizes[1] / n, np.where(hi == 0, sizes[0] / n, hi))
    exact = np.isfinite(value) & (value > 0)
    ax.errorbar(n[exact], shown[exact], yerr=[np.clip(shown[exact] - lo_shown[exact], 0, None),
                                              np.clip(hi_shown[exact] - shown[exact], 0, None)],
                ls="-", marker="o", ms=5, capsize=3, color=color, label=f"{task}: factor, 95% CI")
    open_end = exact & ((lo == 0) | np.isinf(hi))
    if open_end.any():
        ends = np.where(lo == 0, lo_shown, hi_shown)[open_end]
        ax.plot(n[open_end], ends, ls="none", marker="x", ms=6, color=color,
                label=f"{task}: CI end at the measured range (open beyond)")
    for mask, marker, label in ((np.isinf(value), "^", "above"), (value == 0, "v", "below")):
        if mask.any():
            ax.plot(n[mask], shown[mask], ls="none", marker=marker, ms=7, color=color,
                    label=f"{task}: bound, factor {label} it")


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
