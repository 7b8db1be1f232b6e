"""Figures of the efficiency sweep: time and peak memory against T, and the fraction of the GEMM peak."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import efficiency as eff
from bench.analysis.fit import Estimate
from bench.analysis.select import curve, ok_rows, source
from bench.plots.common import (FigureResult, NotMeasured, at_log, binary_bytes, color_of, legend_right,
                                new_figure, not_measured, plain_log_ticks, save, seconds, style_axes, units)

TIME_CAPTION = ("Median time per call against T on log-log axes, bars ±IQR/2 (the lower one capped at half the "
                "median), with the exponent k fitted over the four largest T and its 95% bootstrap CI in the "
                "legend. Stars mark where a variant becomes and stays faster than full_sdpa; in the table a "
                "crossover equal to the smallest T means faster everywhere, blank means not faster at the largest T.")
FAILED = {"oom": ("X", "tab:red"), "timeout": ("s", "tab:orange"), "killed": ("X", "tab:purple")}


# ----------------------------------------------------------------------------------------- time vs length

def fit_label(k: float, lo: float, hi: float, n: int) -> str:
    """"k=1.02 [0.98, 1.05]", or "k=n/a (why)" where the fit is not one (``Estimate.usable``)."""
    return f"k={Estimate(k, lo, hi, n)}"


def time_curve(ax, group: pd.DataFrame, variant: str, causal, fit: dict) -> pd.DataFrame:
    c = curve(group, "T", "median_s")
    half = group.groupby("T", sort=True)["iqr_s"].median().reindex(c["T"]).fillna(0).to_numpy() / 2
    low = np.minimum(half, c["median_s"].to_numpy() / 2)  # a log axis cannot show a bar below zero
    label = fit_label(fit["exponent"], fit["ci_lo"], fit["ci_hi"], fit["n_fit"])
    ax.errorbar(c["T"], c["median_s"], yerr=[low, half], color=color_of(variant), ls="--" if causal else "-",
                marker="o", ms=3, capsize=2, label=f"{variant}{' (causal)' if causal else ''}: {label}")
    return c


def mark_crossover(ax, c: pd.DataFrame, x: float, marked: list) -> None:
    if np.isfinite(x) and len(c) > 1 and c["T"].min() < x <= c["T"].max():
        ax.plot([x], [at_log(x, c["T"], c["median_s"])], marker="*", ms=12, color="gold", mec="black",
                ls="none", zorder=5, label=None if marked else "crossover with full_sdpa")
        marked.append(x)


def time_panel(ax, sub: pd.DataFrame, phase: str, table: pd.DataFrame) -> None:
    fits = {(r["variant"], r["causal"]): r for r in table[table["phase"] == phase].to_dict("records")}
    marked: list = []
    for (variant, causal), group in sub.groupby(["variant", "causal"], sort=True):
        fit = fits[(variant, bool(causal))]
        c = time_curve(ax, group, variant, causal, fit)
        mark_crossover(ax, c, fit["crossover_vs_full_sdpa"], marked)
    style_axes(ax, f"{phase}  (solid: non-causal, dashed: causal)", "sequence length T", "median time")
    units(ax, "y", seconds)
    legend_right(ax)


def fig_time(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "time_vs_length", "Time vs sequence length"
    src = source(df, manifests, "efficiency")
    rows = ok_rows(src.rows, "T", "median_s", "iqr_s").dropna(subset=["median_s"]) if src else None
    if rows is None or rows.empty:
        return not_measured(name, title, "efficiency", "no efficiency rows with a time")
    table = eff.time_table(rows)
    phases = [p for p in eff.PHASES if p in set(rows["phase"])]
    fig, axes = new_figure(len(phases), 1, (10.0, 3.8 * len(phases)))
    for ax, phase in zip(axes[:, 0], phases):
        time_panel(ax, rows[rows["phase"] == phase], phase, table)
    return FigureResult(name, title, save(fig, out_dir, name), table, TIME_CAPTION, src.manifests)


# --------------------------------------------------------------------------------------- memory vs length

def mark_failure(ax, c: pd.DataFrame, variant: str, record: dict, marked: set) -> None:
    """A marker at the first failed T of a curve, at the height where the curve ends."""
    if not record["failure"]:
        return
    marker, color = FAILED[record["failure"]]
    ax.plot([c["T"].iloc[-1], record["first_failure_t"]], [c["peak_bytes"].iloc[-1]] * 2, color=color_of(variant),
            ls=":", lw=1)
    ax.plot([record["first_failure_t"]], [c["peak_bytes"].iloc[-1]], marker=marker, ms=9, color=color, ls="none",
            zorder=5, label=None if record["failure"] in marked else record["failure"])
    marked.add(record["failure"])


def memory_panel(ax, ok: pd.DataFrame, table: pd.DataFrame) -> None:
    marked: set = set()
    for record in table.to_dict("records"):
        variant = record["variant"]
        group = ok[ok["variant"] == variant]
        c, a = curve(group, "T", "peak_bytes"), curve(group, "T", "bytes_analytic")
        ax.plot(c["T"], c["peak_bytes"], color=color_of(variant), marker="o", ms=3, label=f"{variant} measured")
        ax.plot(a["T"], a["bytes_analytic"], color=color_of(variant), ls="--", lw=1, label=f"{variant} analytic")
        mark_failure(ax, c, variant, record, marked)
    style_axes(ax, "forward, non-causal: measured peak (solid) and analytic prediction (dashed)",
               "sequence length T", "peak memory beyond the inputs")
    ax.set_yscale("log", base=2)
    units(ax, "y", binary_bytes)
    legend_right(ax, ncol=1)


def memory_caption(cpu: bool) -> str:
    how = "child-process RSS high-water mark" if cpu else "CUDA caching allocator's max_memory_allocated"
    live = ("over the live tensor bytes (torch's allocation events: the gap is the heap's fragmentation)" if cpu
            else "over the live tensor bytes (not measured on CUDA, where the allocator's peak already is that)")
    return (f"Peak memory of one forward beyond its inputs ({how}) against T, beside each spec's analytic "
            "memory_bytes (dashed); a cross or square marks the first T that ran out of memory or time. The "
            "table gives the measured exponent k of peak = a + b·T^k fitted over the five largest T (a: fixed "
            "buffers, which would bend a log-log slope below 1) with its 95% CI, the same fit of the analytic "
            "curve, the declared exponent, at the largest T the measured peak over the analytic bytes and "
            f"{live}, and the measured exponent of the causal forward and of forward+backward (non-causal, "
            "causal).")


def fig_memory(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "memory_vs_length", "Peak memory vs sequence length"
    src = source(df, manifests, "efficiency")
    if src is None or "peak_bytes" not in src.rows:
        return not_measured(name, title, "efficiency", "no efficiency rows with peak memory")
    every = src.rows.assign(T=pd.to_numeric(src.rows["T"]))
    rows = every[(every["phase"] == "forward") & (every["causal"] == False)]  # noqa: E712 (pandas mask)
    ok = ok_rows(rows, "peak_bytes", *(["bytes_analytic"] if "bytes_analytic" in rows else []))
    if ok.empty or "bytes_analytic" not in ok:
        return not_measured(name, title, "efficiency", "no forward non-causal rows with peak and analytic bytes")
    table = eff.memory_table(ok, rows, ok_rows(every, "peak_bytes"))
    fig, axes = new_figure(1, 1, (10.0, 5.0))
    memory_panel(axes[0, 0], ok, table)
    cpu = str(src.manifests["device"].iloc[0]) == "cpu" if "device" in src.manifests else True
    return FigureResult(name, title, save(fig, out_dir, name), table, memory_caption(cpu), src.manifests)


# -------------------------------------------------------------------------------------- fraction of GEMM peak

def fig_flops(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "flops_fraction", "Achieved FLOP/s as a fraction of the GEMM peak"
    src = source(df, manifests, "efficiency")
    if src is None or "flops_analytic" not in src.rows or "gemm_peak_flops" not in src.manifests:
        return not_measured(name, title, "efficiency", "no forward rows with analytic FLOPs and a GEMM peak")
    rows = eff.flops_rows(src.rows, src.manifests)
    if rows.empty:
        return not_measured(name, title, "efficiency", "no forward rows with analytic FLOPs and a GEMM peak")
    fig, axes = new_figure(1, 1, (10.0, 4.8))
    ax = axes[0, 0]
    for (variant, causal), group in rows.groupby(["variant", "causal"], sort=True):
        c = curve(group, "T", "fraction_of_peak")
        ax.plot(c["T"], c["fraction_of_peak"], color=color_of(variant), ls="--" if causal else "-", marker="o",
                ms=3, label=f"{variant}{' (causal)' if causal else ''}")
    ax.axhline(1.0, color="black", lw=0.8, ls=":", label="GEMM peak")
    style_axes(ax, "forward (solid: non-causal, dashed: causal)", "sequence length T", "fraction of GEMM peak")
    plain_log_ticks(ax, "y")
    legend_right(ax)
    caption = ("Executed forward FLOPs divided by the median forward time, as a fraction of a square GEMM's "
               "FLOP/s measured on the same machine at the start of the run (the table: each curve's largest T). "
               "Executed FLOPs are the spec's analytic count (flops_analytic, what the math path computes) except "
               "for a causal kernel that skips the masked blocks (full_sdpa's fused kernel), which executes "
               "T(T+1)/2 of the T² (query, key) pairs (flops_executed), while kernels that compute and mask keep "
               "the full count.")
    return FigureResult(name, title, save(fig, out_dir, name), eff.flops_table(rows), caption, src.manifests)
