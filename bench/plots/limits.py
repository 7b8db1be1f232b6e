"""The limit figure: the largest T each variant fits under a memory and a time budget."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.limits import limits_table
from bench.analysis.select import source
from bench.plots.common import FigureResult, NotMeasured, color_of, new_figure, not_measured, save, style_axes


def bar_text(width: float, censored: bool, fail: float, why: str) -> str:
    if censored and not fail > 0:
        return f"≥ {width:,.0f} (search cap)"
    if censored:  # a probe's own cap stopped the search at ``fail``
        return f"≥ {width:,.0f} ({why.split(' ')[0]} at {fail:,.0f}: probe cap)"
    why = "" if why in ("", "over budget") else f", {why}"  # limits_table fills a missing reason with ""
    return f"{width:,.0f} (fails at {fail:,.0f}{why})" if width else f"< {fail:,.0f}{why}"


def limit_bar(ax, table: pd.DataFrame, budget: str) -> None:
    sub = table[table["budget"] == budget].sort_values("variant")
    y = np.arange(len(sub))
    widths = sub["max_fit_t"].fillna(0).to_numpy()
    ax.barh(y, widths, color=[color_of(v) for v in sub["variant"]],
            hatch=["//" if c else "" for c in sub["censored"]], edgecolor="black")
    for yi, (w, cens, fail, why) in enumerate(zip(widths, sub["censored"], sub["min_fail_t"], sub["min_fail_why"])):
        ax.text(max(w, 1) * 1.1, yi, bar_text(w, cens, fail, why), va="center", fontsize=8)
    ax.set_yticks(y, list(sub["variant"]))
    positive = widths[widths > 0]
    left = 2.0 ** np.floor(np.log2(positive.min() / 8)) if len(positive) else 1.0
    ax.set_xlim(left, max(widths.max(), 1) * 64)  # room for the label beside the longest bar


def budget_label(budget: str, value) -> str:
    return f"{float(value) / 2 ** 30:g} GiB" if budget == "memory" else f"{float(value) * 1e3:g} ms forward"


def fig_limits(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "limits", "The limit: largest T under a memory and a time budget"
    src = source(df, manifests, "limits")
    if src is None or "max_fit_t" not in src.rows:
        return not_measured(name, title, "limits", "no limit records in the limits sweep")
    table = limits_table(src.rows)
    budgets = [b for b in ("memory", "time") if b in set(table["budget"])]
    if not budgets:
        return not_measured(name, title, "limits", "no limit found with status ok")
    fig, axes = new_figure(1, len(budgets), (6.0 * len(budgets), 1.6 + 0.45 * table["variant"].nunique()))
    for ax, budget in zip(axes[0], budgets):
        value = table.loc[table["budget"] == budget, "budget_value"].iloc[0]
        limit_bar(ax, table, budget)
        style_axes(ax, f"{budget} budget: {budget_label(budget, value)}", "largest T that fits", "", logx=True,
                   logy=False)
        ax.grid(False, axis="y")
    caption = ("For each variant, the largest sequence length whose forward fits the memory budget (inputs plus "
               "peak) and the time budget (median forward), found by doubling then bisection. Hatched bars are "
               "censored, the true limit higher: the search reached its cap without failing, or a probe was "
               "stopped by its own cap rather than the budget (min_fail_why says which: over budget, a memory "
               "probe's oom above 1.5× the budget, a time probe's timeout, or a probe cap that censors).")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)
