"""The approximation figure: the error of each approximate variant against exact attention, against its budget and
against T (per input regime), and against the input scale, beside the trivial outputs' errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.approximation import (REF_BUDGET, approximation_rows, error_table, largest_t_table,
                                          trivial_table, vs_t)
from bench.analysis.select import source
from bench.plots.common import FigureResult, NotMeasured, color_of, new_figure, not_measured, save, style_axes

LABELS = {"p_tv": "attention-matrix error\nmean row TV ½Σ|P̂−P|",
          "v_error": "output error ‖Ŷ−Y‖/‖V‖"}
FITTED_TO_OUTPUT = "fitted E, F"
EXACT_BELOW = 1e-9  # a median under this is drawn as "exact" on the axis floor, not as a point stretching the axis
STYLE = {"published": "-", "fitted E, F": "-", "pooled E, F": "--"}  # ablations: ":"
TRIVIAL_STYLE = {"zeros": ("black", "-."), "mean(v)": ("0.45", "--"), "uniform P": ("0.45", "--")}


def config_label(variant: str, config: str, ablation: bool) -> str:
    if config == "published":
        return variant
    return f"{variant} ({'ablation: ' if ablation else ''}{config})"


def draw_curve(ax, sub: pd.DataFrame, x: str, label: str, color: str, ls: str) -> None:
    """Median with its IQR as error bars; medians under EXACT_BELOW as triangles on the axis floor."""
    sub = sub.sort_values(x)
    exact = sub["median"] < EXACT_BELOW
    shown = sub[~exact]
    if len(shown):
        err = np.vstack([shown["median"] - shown["q25"], shown["q75"] - shown["median"]]).clip(min=0)
        ax.errorbar(shown[x], shown["median"], yerr=err, ls=ls, color=color, marker="o", ms=3, capsize=2,
                    lw=1.0 if ls == ":" else 1.5, label=label)
    if exact.any():
        ax.plot(sub.loc[exact, x], [0.0] * int(exact.sum()), ls="none", marker="v", ms=6, color=color,
                transform=ax.get_xaxis_transform(), clip_on=False, label=None if len(shown) else label)


def draw_trivial(ax, trivial: pd.DataFrame, x: str) -> None:
    """The trivial outputs' errors: a curve along ``x`` where the table has it, else one flat line."""
    for name in [c for c in trivial.columns if c in TRIVIAL_STYLE]:
        color, ls = TRIVIAL_STYLE[name]
        style = dict(color=color, ls=ls, lw=2.0, alpha=0.8, label=f"trivial: {name}")
        if x in trivial and len(trivial) > 1:
            t = trivial.sort_values(x)
            ax.plot(t[x], t[name], **style)
        elif len(trivial):
            ax.axhline(float(trivial[name].iloc[0]), **style)


def draw_panel(ax, table: pd.DataFrame, trivial: pd.DataFrame, x: str) -> None:
    """Every configuration of ``table`` (one regime) along ``x``; budgetless variants as a flat line."""
    for (variant, config, ablation), sub in table.groupby(["variant", "config", "ablation"], sort=True):
        label, color = config_label(variant, config, ablation), color_of(variant)
        ls = ":" if ablation else STYLE.get(config, "-")
        if x == "budget" and sub["budget"].isna().all():
            ax.axhline(float(sub["median"].iloc[0]), color=color, ls=ls, lw=1.0, label=f"{label}, no budget")
        else:
            draw_curve(ax, sub, x, label, color, ls)
    draw_trivial(ax, trivial, x)


def regime_panels(axes, rows: pd.DataFrame, metric: str, row: int) -> None:
    """Row ``row`` of the figure for ``metric``: vs budget at the largest T, then vs T, one column per regime.
    A configuration fitted to the output (not to P) is left out of the matrix rows: its P̂ is not row-stochastic."""
    if metric == "p_tv":
        rows = rows[rows["config"] != FITTED_TO_OUTPUT]
    T_max = rows["T"].max()
    for col, regime in enumerate(("random", "peaked")):
        mine = rows[rows["regime"] == regime]
        at = mine[mine["T"] == T_max]
        ax_r, ax_t = axes[row, col], axes[row + 1, col]
        draw_panel(ax_r, error_table(at, metric), trivial_table(at, metric, "T"), "budget")
        draw_panel(ax_t, vs_t(error_table(mine, metric)), trivial_table(mine, metric, "T"), "T")
        style_axes(ax_r, f"{regime} inputs: vs budget r at T = {T_max:g}", "budget r", LABELS[metric])
        style_axes(ax_t, f"{regime} inputs: vs T at r nearest {REF_BUDGET}", "sequence length T", LABELS[metric])


def scale_panel(ax, rows: pd.DataFrame) -> None:
    """The input-scale sweep: output error against the logit scale mean‖q‖·mean‖k‖/√D."""
    mine = rows[rows["regime"] == "scale"]
    table = error_table(mine, "v_error", x="logit_scale_bin")
    draw_panel(ax, table, trivial_table(mine, "v_error", "logit_scale_bin"), "logit_scale_bin")
    T = mine["T"].max() if len(mine) else np.nan
    style_axes(ax, f"vs input scale at T = {T:g}, r = {REF_BUDGET} (q, k ~ N(0, s²))",
               "logit scale mean‖q‖·mean‖k‖/√D (median over seeds)", LABELS["v_error"], logx=False)
    ax.set_xscale("log")


def with_scale_bins(rows: pd.DataFrame) -> pd.DataFrame:
    """The input-scale rows get one x per scale: the median logit scale of its inputs (equal across variants)."""
    if "logit_scale" not in rows:
        return rows.assign(logit_scale_bin=np.nan)
    return rows.assign(logit_scale_bin=rows.groupby(["regime", "T", "q_scale"])["logit_scale"].transform("median"))


def fig_approximation(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "approximation_error", "Approximation error vs budget, T and input scale"
    src = source(df, manifests, "approximation")
    needed = {"variant", "T", "v_error", "p_tv", "config"}
    if src is None or not needed <= set(src.rows):
        return not_measured(name, title, "approximation", f"no approximation rows with {', '.join(sorted(needed))}")
    rows = with_scale_bins(approximation_rows(src.rows))
    if rows.empty:
        return not_measured(name, title, "approximation", "no approximation rows with status ok")
    fig, axes = new_figure(5, 2, (13.0, 22.0))
    regime_panels(axes, rows, "p_tv", 0)
    regime_panels(axes, rows, "v_error", 2)
    scale_panel(axes[4, 0], rows)
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    axes[4, 1].axis("off")  # the empty panel holds the figure's one legend
    fig.legend(handles.values(), handles.keys(), loc="center", frameon=False, ncols=1,
               bbox_to_anchor=(0.5, 0.5), bbox_transform=axes[4, 1].transAxes)
    return FigureResult(name, title, save(fig, out_dir, name), largest_t_table(rows), caption(rows), src.manifests)


def caption(rows: pd.DataFrame) -> str:
    seeds = int(rows.groupby(["variant", "config", "regime", "T", "budget"], dropna=False).size().median())
    return (f"Error of each approximate variant against float64 exact attention on the same inputs, median and "
            f"interquartile range over {seeds} seeds on log axes: rows 1-2 the mean row total variation between "
            "the attention matrix P̂ the variant applies (its output on the identity, formed where affordable) and "
            "exact P, rows 3-4 the output error normalised by ‖V‖, columns 'random' q, k ~ N(0, 1) (diffuse "
            "attention) and 'peaked' (q times 8), bottom the output error against the input scale s (q, k ~ "
            "N(0, s²)), with the trivial outputs (zeros; mean(v), the uniform P) as thick grey lines that a useful "
            "variant stays under. Nyström runs as published (segment-mean landmarks, 6 iterations of the paper's "
            "pseudo-inverse) and Linformer, whose E, F the method learns, with mean-pooled E, F (exact at k = T) "
            "and with F fitted by least squares to these inputs' exact output (an in-sample best case that fits "
            "Ŷ, not P̂, so drawn in the output rows only); dotted lines are labelled ablations (exact "
            "pseudo-inverse, random N(0, 1/k) E, F), triangles on the bottom axis mark exact points (error below "
            "1e-9), and the table gives every metric at the largest T.")
