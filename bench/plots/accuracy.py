"""Figures of the accuracy sweep: accuracy against T per task (per-seed points, medians, the best trivial rule),
and the accuracy–speed Pareto front at each measured length."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.accuracy import KEEP_FRACTION, REFERENCE, accuracy_rows, accuracy_table, falls_behind, lr_choices
from bench.analysis.pareto import pareto_table
from bench.analysis.select import source
from bench.plots.common import (FigureResult, NotMeasured, color_of, legend_right, length_label, new_figure,
                                not_measured, save, seconds, style_axes, units)

LINE = {"causal": "-", "bidirectional": "--"}
MARKER = {"causal": "o", "bidirectional": "s"}


def accuracy_source(df: pd.DataFrame, manifests: pd.DataFrame):
    """The accuracy sweep's source (one file, one machine) and its rows as ``accuracy_rows`` gives them."""
    src = source(df, manifests, "accuracy")
    return src, accuracy_rows(src.rows if src is not None else None)


def _variant_lines(ax, rows: pd.DataFrame, table: pd.DataFrame, xs: dict[int, int]) -> None:
    """Per variant and posing: every seed as a small point (x marks a censored run), the median as a line."""
    spread = np.linspace(-0.1, 0.1, max(1, table["variant"].nunique()))
    for i, ((variant, pose), g) in enumerate(table.groupby(["variant", "posing"], sort=True)):
        color, dx = color_of(variant), spread[i % len(spread)]
        x = [xs[T] + dx for T in g["T"]]
        ax.plot(x, g["accuracy_median"], LINE[pose], marker=MARKER[pose], ms=4, color=color,
                mfc=color if pose == "causal" else "white", label=f"{variant} ({pose})")
        seeds = rows[(rows["variant"] == variant) & (rows["posing"] == pose)]
        censored = (seeds["censored"].fillna(False).astype(bool) if "censored" in seeds
                    else pd.Series(False, index=seeds.index))
        pick = seeds[~censored]
        ax.scatter([xs[T] + dx for T in pick["T"]], pick["accuracy"], s=14, marker=".", color=color, alpha=0.6)
        pick = seeds[censored]  # drawn over the median's marker, so a one-seed censored point still shows it
        ax.scatter([xs[T] + dx for T in pick["T"]], pick["accuracy"], s=46, marker="x", color="black", lw=1.2,
                   zorder=5)


def task_sources(df: pd.DataFrame, manifests: pd.DataFrame) -> list[tuple[str, object, pd.DataFrame]]:
    """Per task: (task, its source, its rows), each task from the best results file that has it (standard before
    quick), all on the machine of the sweep's best file. A panel never mixes files."""
    first = source(df, manifests, "accuracy")
    if first is None or "task" not in df:
        return []
    mine = df[df["sweep"] == "accuracy"]
    out = []
    for task in sorted(mine["task"].dropna().astype(str).unique()):
        rows = mine[mine["task"].astype(str) == task]
        src = source(rows, manifests[manifests["run_id"].isin(set(rows["run_id"]))], "accuracy",
                     machine=first.machine)
        chosen = accuracy_rows(src.rows) if src is not None else None
        if chosen is not None:
            out.append((task, src, chosen))
    return out


def fig_accuracy(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_vs_length", "Accuracy vs sequence length, per task"
    panels = task_sources(df, manifests)
    if not panels:
        return not_measured(name, title, "accuracy", "no accuracy rows (task, variant, T, seed, accuracy)")
    tables = [accuracy_table(rows).assign(profile=str(src.manifests["profile"].iloc[0])) for _, src, rows in panels]
    table = pd.concat(tables, ignore_index=True)
    fig, axes = new_figure(len(panels), 1, (10.5, 3.9 * len(panels)))
    for ax, (task, src, rows), here in zip(axes[:, 0], panels, tables):
        Ts = sorted(int(t) for t in here["T"].unique())
        xs = {T: i for i, T in enumerate(Ts)}  # equal spacing per length (they double)
        _variant_lines(ax, rows, here, xs)
        if "trivial_accuracy" in here:
            trivial = here.groupby("T")["trivial_accuracy"].median()
            ax.plot([xs[int(T)] for T in trivial.index], trivial.to_numpy(), ":", color="0.3", lw=1.5,
                    label="best trivial rule")
        style_axes(ax, f"task: {task} ({here['profile'].iloc[0]} profile, {here['n_seeds'].max()} seeds)",
                   "sequence length T", "test accuracy", logx=False, logy=False)
        ax.set_xticks(range(len(Ts)), [length_label(T) for T in Ts])
        ax.set_ylim(-0.03, 1.03)
        legend_right(ax, fontsize=8)
    caption = ("Test accuracy against T with each variant's budget and tuned learning rate fixed across T (each "
               "panel from one results file, its profile in the title): lines join the median over seeds, dots are "
               "single seeds (black x: a run censored at the step cap), solid lines with filled circles are posed "
               "causally and dashed lines with open squares bidirectionally (Linformer and Nyström cannot be "
               "causal). Dotted grey is the best rule that does not retrieve (majority, first or last value, fixed "
               "offset, bag of tokens) on the same test rows.")
    extra = []
    choices = pd.concat([lr_choices(src.rows) for _, src, _ in panels], ignore_index=True)
    if not choices.empty:
        extra.append(("Learning rate chosen per task and variant: best validation accuracy of each grid lr at "
                      "tune_T with the first seed (ties within 0.005: fewest steps).", choices))
    behind = falls_behind(table)
    if not behind.empty:
        extra.append((f"Where each variant falls below {KEEP_FRACTION:.0%} of {REFERENCE}'s median accuracy at the "
                      f"same T and in the same posing (blank: it keeps up at every T compared); lengths where {REFERENCE} "
                      "itself did no better than the best trivial rule are not compared, and are listed.", behind))
    sources = pd.concat([src.manifests for _, src, _ in panels], ignore_index=True).drop_duplicates("run_id")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, sources, tuple(extra))


def efficiency_source(df: pd.DataFrame, manifests: pd.DataFrame, machine: str, Ts: list[int]):
    """One efficiency results file on ``machine``: of those with rows at some accuracy length, the one covering
    the most of them (ties: ``select.source``'s order)."""
    best, covered = None, 0
    for T in Ts:
        src = source(df, manifests, "efficiency", machine=machine, at_T=T)
        if src is None or "median_s" not in src.rows:
            continue
        n = len(set(Ts) & set(int(t) for t in src.rows["T"].dropna()))
        if n > covered:
            best, covered = src, n
    return best


def pareto_points(ax, table: pd.DataFrame) -> None:
    """Filled points on the front, open ones off it (bars: the spread over tasks), and the front as a step line."""
    for _, r in table.iterrows():
        color = color_of(r["variant"])
        ax.errorbar([r["forward_s"]], [r["accuracy"]], yerr=[[r["accuracy"] - r["accuracy_min"]],
                    [r["accuracy_max"] - r["accuracy"]]], marker=MARKER[r["posing"]],
                    mfc=color if r["pareto"] else "white", color=color, capsize=2, ls="none",
                    label=f"{r['variant']} ({r['posing']})")
    front = table[table["pareto"]].sort_values("forward_s")
    ax.step(front["forward_s"], front["accuracy"], where="post", color="black", lw=0.8, label="Pareto front")


def fig_pareto(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_speed_pareto", "Accuracy–speed Pareto front, one panel per length"
    acc_src, acc = accuracy_source(df, manifests)
    if acc is None:
        return not_measured(name, title, "accuracy", "no accuracy rows to place on the front")
    Ts = sorted(int(t) for t in acc["T"].unique())
    eff_src = efficiency_source(df, manifests, acc_src.machine, Ts)
    if eff_src is None:
        return not_measured(name, title, "efficiency", f"no forward times measured at the accuracy lengths "
                            f"{Ts} on the accuracy sweep's machine ({acc_src.machine})")
    table = pareto_table(accuracy_table(acc), eff_src.rows)
    if table.empty:
        return not_measured(name, title, "efficiency", "no variant has both an accuracy and a forward time at one T")
    panels = sorted(table["T"].unique())
    fig, axes = new_figure(1, len(panels), (4.2 * len(panels) + 2.4, 4.6))
    for ax, T in zip(axes[0], panels):
        pareto_points(ax, table[table["T"] == T])
        style_axes(ax, f"T = {length_label(T)}", "forward time", "accuracy (mean over tasks)", logx=False,
                   logy=False)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        lo, hi = ax.get_xlim()
        if hi / lo < 6:  # at least a ratio of 6 holds two 1-2-5 ticks (else matplotlib falls back to dense ones)
            mid = np.sqrt(lo * hi)
            ax.set_xlim(mid / np.sqrt(6), mid * np.sqrt(6))
        units(ax, "x", seconds)
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)  # one entry per variant over every panel
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False)
    missing = [T for T in Ts if T not in panels]
    profile = str(eff_src.manifests["profile"].iloc[0])
    caption = (f"At each length, the mean over tasks of each variant's median test accuracy against its median "
               f"forward time at the same T and in the same posing (causal or not), from the efficiency sweep "
               f"({profile} profile) on the same machine; bars: the range over tasks. Filled points lie on that "
               "length's Pareto front, where no other variant is both faster and more accurate"
               + (f"; no panel at T = {', '.join(map(str, missing))}, which the efficiency sweep did not measure."
                  if missing else "."))
    sources = pd.concat([acc_src.manifests, eff_src.manifests], ignore_index=True)
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, sources)
