"""The report's figures: one function per figure, reading results only (never measuring).

Each ``fig_*(df, manifests, out_dir)`` takes the frames of ``bench.store.load`` / ``load_manifests`` and returns a
``FigureResult`` (the PNG and SVG it wrote, the table of the numbers it shows, a two-sentence caption and the
manifests of the results it came from) or ``NotMeasured`` when its sweep has no usable rows. Files are
byte-stable given the same results: fixed rcParams and fonts, ``svg.hashsalt``, no timestamps in the metadata.

When a sweep has several results files (profiles, devices), a figure draws one of them: the ``full`` profile
before ``quick``, then the file with most rows, then the file name (``source``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import variants  # noqa: E402
from bench.fit import crossover, loglog_exponent  # noqa: E402

RC = {"font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
      "legend.fontsize": 8, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
      "figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "attention-limits", "svg.fonttype": "none",
      "path.simplify": True, "axes.prop_cycle": matplotlib.rcParamsDefault["axes.prop_cycle"]}
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None, "Creator": "attention-limits"}
PHASES = ("forward", "forward_backward", "train_step")
REFERENCES = ("full_sdpa", "full_naive")
FAILED = {"oom": ("X", "tab:red"), "timeout": ("s", "tab:orange"), "killed": ("X", "tab:purple")}
PROFILE_RANK = {"full": 0, "quick": 1}
REF_BUDGET = 64  # approximation vs T: each variant's shared budget nearest this


@dataclass(frozen=True)
class FigureResult:
    name: str
    title: str
    paths: tuple[Path, ...]
    table: pd.DataFrame
    caption: str
    sources: pd.DataFrame  # the manifest lines of the results drawn


@dataclass(frozen=True)
class NotMeasured:
    name: str
    title: str
    reason: str
    command: str


@dataclass(frozen=True)
class Source:
    rows: pd.DataFrame
    manifests: pd.DataFrame


# ------------------------------------------------------------------------------------------------ data helpers

def run_command(sweep: str) -> str:
    return "attention-limits limits" if sweep == "limits" else f"attention-limits run {sweep}"


def not_measured(name: str, title: str, sweep: str, reason: str) -> NotMeasured:
    return NotMeasured(name, title, reason, run_command(sweep))


def source(df: pd.DataFrame, manifests: pd.DataFrame, sweep: str) -> Source | None:
    """The rows (all columns of other sweeps dropped) and manifests of one results file of ``sweep``."""
    if "sweep" not in df or "sweep" not in manifests:
        return None
    mine = manifests[manifests["sweep"] == sweep]
    rows = df[df["sweep"] == sweep]
    if mine.empty or rows.empty:
        return None
    counts = rows["run_id"].value_counts()
    stats = [(PROFILE_RANK.get(str(g["profile"].iloc[0]), 2), -int(counts.reindex(g["run_id"]).fillna(0).sum()),
              path) for path, g in mine.groupby("path", sort=True)]
    path = min(stats)[2]
    chosen = mine[mine["path"] == path]
    rows = rows[rows["run_id"].isin(set(chosen["run_id"]))].dropna(axis=1, how="all")
    rows = rows.drop_duplicates("case_id", keep="last") if "case_id" in rows else rows
    return Source(rows.reset_index(drop=True), chosen.reset_index(drop=True))


def ok_rows(rows: pd.DataFrame, *numeric: str) -> pd.DataFrame:
    """Rows with status ok, the named columns as floats."""
    out = rows[rows["status"] == "ok"].copy() if "status" in rows else rows.copy()
    for col in numeric:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def pick(frame: pd.DataFrame, *names: str) -> str | None:
    """The first of ``names`` that is a column with a value."""
    return next((n for n in names if n in frame and frame[n].notna().any()), None)


def curve(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Median of ``y`` per ``x``, sorted, positive values only (log axes)."""
    c = frame.groupby(x, sort=True)[y].median().reset_index()
    return c[(c[y] > 0) & (c[x] > 0)]


def exponent(T, y) -> tuple[float, float, float, int]:
    """(k, lo, hi, n) of y ∝ T^k over the top 4 T; NaNs with fewer than two distinct T."""
    try:
        e = loglog_exponent(T, y, top=4)
    except ValueError:
        return np.nan, np.nan, np.nan, 0
    return e.value, e.lo, e.hi, e.n


def memory_exponent(T, y) -> tuple[float, float, float, int]:
    """(k, lo, hi, n) of y = a + b·T^k over the top 5 T (``efficiency.memory_exponent``); NaNs below three T."""
    from bench.sweeps.efficiency import memory_exponent as fit

    e = fit(T, y)
    return (np.nan, np.nan, np.nan, 0) if e is None else (e.value, e.lo, e.hi, e.n)


def declared(variant: str, attr: str) -> float:
    try:
        return float(getattr(variants.get(variant).spec, attr))
    except (variants.UnknownVariantError, AttributeError):
        return np.nan


def color_of(name: str) -> str:
    known = variants.names()
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    i = known.index(name) if name in known else len(known) + sum(map(ord, name))
    return matplotlib.colors.to_hex(palette[i % len(palette)])


def sorted_table(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(rows)
    return table.sort_values(keys, kind="stable").reset_index(drop=True) if not table.empty else table


# --------------------------------------------------------------------------------------------- figure helpers

def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (9.0, 4.5)):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")
    return fig, axes


def save(fig, out_dir: str | Path, name: str) -> tuple[Path, ...]:
    """``<out_dir>/<name>.png`` and ``.svg`` without timestamps; closes the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.png", out / f"{name}.svg")
    with plt.rc_context(RC):
        fig.savefig(paths[0], metadata=PNG_METADATA, bbox_inches="tight")
        fig.savefig(paths[1], metadata=SVG_METADATA, bbox_inches="tight")
    plt.close(fig)
    return paths


def style_axes(ax, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True) -> None:
    with plt.rc_context(RC):
        if logx:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
        if logy:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)


def seconds(x: float, _pos=None) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if x >= scale:
            return f"{x / scale:g} {unit}"
    return f"{x * 1e9:g} ns"


def binary_bytes(x: float, _pos=None) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024:
            return f"{x:g} {unit}"
        x /= 1024
    return f"{x:g} TiB"


def units(ax, axis: str, fmt: Callable[[float, object], str]) -> None:
    """Tick labels in display units (the data stay in s and bytes)."""
    if fmt is seconds:  # 1-2-5 ticks, so a range under a decade still gets labels
        getattr(ax, f"{axis}axis").set_major_locator(matplotlib.ticker.LogLocator(10, subs=(1.0, 2.0, 5.0)))
    getattr(ax, f"{axis}axis").set_major_formatter(matplotlib.ticker.FuncFormatter(fmt))
    getattr(ax, f"{axis}axis").set_minor_formatter(matplotlib.ticker.NullFormatter())


def legend_right(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kw)


def at_log(x: float, xs, ys) -> float:
    """y at x on a log-log polyline."""
    return float(np.exp(np.interp(np.log(x), np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)))))


def causal_label(causal) -> str:
    return "causal" if bool(causal) else "non-causal"


# ----------------------------------------------------------------------------------------- 1. time vs length

def crossovers(sub: pd.DataFrame, c: pd.DataFrame, variant: str, causal) -> dict[str, float]:
    """Crossover T of one (variant, causal) curve with each reference in the same phase and causality."""
    out = {}
    for ref in REFERENCES:
        ref_rows = sub[(sub["variant"] == ref) & (sub["causal"] == causal)]
        both = c.merge(curve(ref_rows, "T", "median_s"), on="T", suffixes=("", "_ref"))
        x = crossover(both["T"], both["median_s"], both["median_s_ref"]) if variant != ref and len(both) else None
        out[f"crossover_vs_{ref}"] = np.nan if x is None else x
    return out


def time_curve(ax, group: pd.DataFrame, variant: str, causal, marked: list) -> dict:
    c = curve(group, "T", "median_s")
    half = group.groupby("T", sort=True)["iqr_s"].median().reindex(c["T"]).fillna(0).to_numpy() / 2
    low = np.minimum(half, c["median_s"].to_numpy() / 2)  # a log axis cannot show a bar below zero
    k, lo, hi, n = exponent(group["T"], group["median_s"])
    ax.errorbar(c["T"], c["median_s"], yerr=[low, half], color=color_of(variant), ls="--" if causal else "-",
                marker="o", ms=3, capsize=2,
                label=f"{variant}{' (causal)' if causal else ''}: {fit_label(k, lo, hi, n)}")
    return {"k": k, "lo": lo, "hi": hi, "n": n, "curve": c}


def fit_label(k: float, lo: float, hi: float, n: int) -> str:
    if not np.isfinite(k):
        return "k: too few points"
    return f"k={k:.2f} [{lo:.2f}, {hi:.2f}]" if n > 2 else f"k={k:.2f} ({n} points, no CI)"


def mark_crossover(ax, c: pd.DataFrame, x: float, marked: list) -> None:
    if np.isfinite(x) and len(c) > 1 and c["T"].min() < x <= c["T"].max():
        ax.plot([x], [at_log(x, c["T"], c["median_s"])], marker="*", ms=12, color="gold", mec="black",
                ls="none", zorder=5, label=None if marked else "crossover with full_sdpa")
        marked.append(x)


def time_panel(ax, sub: pd.DataFrame, phase: str) -> list[dict]:
    records, marked = [], []
    for (variant, causal), group in sub.groupby(["variant", "causal"], sort=True):
        fit = time_curve(ax, group, variant, causal, marked)
        cross = crossovers(sub, fit["curve"], variant, causal)
        mark_crossover(ax, fit["curve"], cross["crossover_vs_full_sdpa"], marked)
        records.append({"variant": variant, "phase": phase, "causal": bool(causal), "exponent": fit["k"],
                        "ci_lo": fit["lo"], "ci_hi": fit["hi"], "n_fit": fit["n"],
                        "declared": declared(variant, "time_exponent"), **cross})
    style_axes(ax, f"{phase}  (solid: non-causal, dashed: causal)", "sequence length T", "median time")
    units(ax, "y", seconds)
    legend_right(ax)
    return records


def fig_time(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "time_vs_length", "Time vs sequence length"
    src = source(df, manifests, "efficiency")
    rows = ok_rows(src.rows, "T", "median_s", "iqr_s").dropna(subset=["median_s"]) if src else None
    if rows is None or rows.empty:
        return not_measured(name, title, "efficiency", "no efficiency rows with a time")
    phases = [p for p in PHASES if p in set(rows["phase"])]
    fig, axes = new_figure(len(phases), 1, (10.0, 3.8 * len(phases)))
    records = [r for ax, p in zip(axes[:, 0], phases) for r in time_panel(ax, rows[rows["phase"] == p], p)]
    table = sorted_table(records, ["phase", "causal", "variant"])
    caption = ("Median time per call against T on log-log axes, bars ±IQR/2 (the lower one capped at half the "
               "median), with the exponent k fitted over the four largest T and its 95% bootstrap CI in the legend. "
               "Stars mark where a variant becomes and "
               "stays faster than full_sdpa; in the table a crossover equal to the smallest T means faster "
               "everywhere, blank means not faster at the largest T.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# --------------------------------------------------------------------------------------- 2. memory vs length

def mark_failures(ax, rows: pd.DataFrame, variant: str, c: pd.DataFrame, marked: set) -> list[dict]:
    """Markers at the first failed T of a curve, at the height where the curve ends."""
    bad = rows[(rows["variant"] == variant) & rows["status"].isin(list(FAILED))]
    if bad.empty or c.empty:
        return []
    first = bad.sort_values("T").iloc[0]
    marker, color = FAILED[str(first["status"])]
    ax.plot([c["T"].iloc[-1], first["T"]], [c["peak_bytes"].iloc[-1]] * 2, color=color_of(variant), ls=":", lw=1)
    ax.plot([first["T"]], [c["peak_bytes"].iloc[-1]], marker=marker, ms=9, color=color, ls="none", zorder=5,
            label=None if first["status"] in marked else str(first["status"]))
    marked.add(first["status"])
    return [{"variant": variant, "first_failure_t": float(first["T"]), "failure": str(first["status"])}]


def memory_panel(ax, ok: pd.DataFrame, everything: pd.DataFrame) -> list[dict]:
    records, failures, marked = [], {}, set()
    for variant, group in ok.groupby("variant", sort=True):
        c, a = curve(group, "T", "peak_bytes"), curve(group, "T", "bytes_analytic")
        ax.plot(c["T"], c["peak_bytes"], color=color_of(variant), marker="o", ms=3, label=f"{variant} measured")
        ax.plot(a["T"], a["bytes_analytic"], color=color_of(variant), ls="--", lw=1, label=f"{variant} analytic")
        for f in mark_failures(ax, everything, variant, c, marked):
            failures[variant] = f
        k, lo, hi, n = memory_exponent(c["T"], c["peak_bytes"])
        records.append({"variant": variant, "exponent": k, "ci_lo": lo, "ci_hi": hi, "n_fit": n,
                        "analytic_exponent": memory_exponent(a["T"], a["bytes_analytic"])[0],
                        "declared": declared(variant, "memory_exponent")})
    for r in records:
        r.update(failures.get(r["variant"], {"first_failure_t": np.nan, "failure": ""}))
        r.update(top_ratios(ok[ok["variant"] == r["variant"]]))
    return records


def top_ratios(rows: pd.DataFrame) -> dict[str, float]:
    """At the largest T: measured peak over the spec's analytic bytes, and over the live tensor bytes (on CPU, the
    heap's fragmentation), where the rows have them."""
    if rows.empty:
        return {}
    top = rows.sort_values("T").iloc[-1]
    out = {"top_t": float(top["T"]), "peak_over_analytic": float(top["peak_bytes"]) / float(top["bytes_analytic"])}
    live = pd.to_numeric(top.get("peak_live_bytes", np.nan), errors="coerce")
    out["peak_over_live"] = float(top["peak_bytes"]) / live if live and np.isfinite(live) else np.nan
    return out


def other_memory_exponents(table: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """The table's measured memory exponent for the other phase × causal combinations, one column each."""
    if table.empty:
        return table
    for phase, causal, col in (("forward", True, "exp_fwd_causal"), ("forward_backward", False, "exp_fwd_bwd"),
                               ("forward_backward", True, "exp_fwd_bwd_causal")):
        sub = ok[(ok["phase"] == phase) & (ok["causal"] == causal)]
        table[col] = [memory_exponent(*curve(sub[sub["variant"] == v], "T", "peak_bytes").T.to_numpy())[0]
                      for v in table["variant"]]
    return table


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
    fig, axes = new_figure(1, 1, (10.0, 5.0))
    table = other_memory_exponents(sorted_table(memory_panel(axes[0, 0], ok, rows), ["variant"]),
                                   ok_rows(every, "peak_bytes"))
    style_axes(axes[0, 0], "forward, non-causal: measured peak (solid) and analytic prediction (dashed)",
               "sequence length T", "peak memory beyond the inputs")
    axes[0, 0].set_yscale("log", base=2)
    units(axes[0, 0], "y", binary_bytes)
    legend_right(axes[0, 0], ncol=1)
    cpu = str(src.manifests["device"].iloc[0]) == "cpu" if "device" in src.manifests else True
    how = "child-process RSS high-water mark" if cpu else "CUDA caching allocator's max_memory_allocated"
    live = ("over the live tensor bytes (torch's allocation events: the gap is the heap's fragmentation)" if cpu
            else "over the live tensor bytes (not measured on CUDA, where the allocator's peak already is that)")
    caption = (f"Peak memory of one forward beyond its inputs ({how}) against T, beside each spec's analytic "
               "memory_bytes (dashed); a cross or square marks the first T that ran out of memory or time. The "
               "table gives the measured exponent k of peak = a + b·T^k fitted over the five largest T (a: fixed "
               "buffers, which would bend a log-log slope below 1) with its 95% CI, the same fit of the analytic "
               "curve, the declared exponent, at the largest T the measured peak over the analytic bytes and "
               f"{live}, and the measured exponent of the causal forward and of forward+backward (non-causal, "
               "causal).")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# ------------------------------------------------------------------------------------------------ 3. the limit

def limit_bar(ax, table: pd.DataFrame, budget: str) -> None:
    sub = table[table["budget"] == budget].sort_values("variant")
    y = np.arange(len(sub))
    widths = sub["max_fit_t"].fillna(0).to_numpy()
    ax.barh(y, widths, color=[color_of(v) for v in sub["variant"]],
            hatch=["//" if c else "" for c in sub["censored"]], edgecolor="black")
    for yi, (w, cens, fail, why) in enumerate(zip(widths, sub["censored"], sub["min_fail_t"], sub["min_fail_why"])):
        why = "" if why in ("", "over budget") else f", {why}"  # limit_rows fills a missing one with ""
        text = f"≥ {w:,.0f} (search cap)" if cens else (f"{w:,.0f} (fails at {fail:,.0f}{why})" if w else
                                                         f"< {fail:,.0f}{why}")
        ax.text(max(w, 1) * 1.1, yi, text, va="center", fontsize=8)
    ax.set_yticks(y, list(sub["variant"]))
    positive = widths[widths > 0]
    left = 2.0 ** np.floor(np.log2(positive.min() / 8)) if len(positive) else 1.0
    ax.set_xlim(left, max(widths.max(), 1) * 16)


def limit_rows(rows: pd.DataFrame) -> pd.DataFrame:
    found = ok_rows(rows[rows["kind"] == "limit"], "max_fit_t", "min_fail_t")
    found["censored"] = found["censored"].fillna(False).astype(bool) if "censored" in found else False
    found["budget_value"] = [r.get("mem_budget_bytes") if r["budget"] == "memory" else r.get("time_budget_s")
                             for _, r in found.iterrows()]
    found["min_fail_why"] = found["min_fail_why"].fillna("") if "min_fail_why" in found else ""
    cols = ["variant", "budget", "budget_value", "max_fit_t", "min_fail_t", "min_fail_why", "censored"]
    return found[cols].sort_values(["budget", "variant"]).reset_index(drop=True)


def fig_limits(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "limits", "The limit: largest T under a memory and a time budget"
    src = source(df, manifests, "limits")
    if src is None or "max_fit_t" not in src.rows:
        return not_measured(name, title, "limits", "no limit rows (T == 0) in the limits sweep")
    table = limit_rows(src.rows)
    budgets = [b for b in ("memory", "time") if b in set(table["budget"])]
    if not budgets:
        return not_measured(name, title, "limits", "no limit found with status ok")
    fig, axes = new_figure(1, len(budgets), (6.0 * len(budgets), 1.6 + 0.45 * table["variant"].nunique()))
    for ax, budget in zip(axes[0], budgets):
        value = table.loc[table["budget"] == budget, "budget_value"].iloc[0]
        limit_bar(ax, table, budget)
        label = f"{float(value) / 2 ** 30:g} GiB" if budget == "memory" else f"{float(value) * 1e3:g} ms forward"
        style_axes(ax, f"{budget} budget: {label}", "largest T that fits", "", logx=True, logy=False)
        ax.grid(False, axis="y")
    caption = ("For each variant, the largest sequence length whose forward fits the memory budget (inputs plus "
               "peak) and the time budget (median forward), found by doubling then bisection. Hatched bars hit "
               "the search cap without failing, so the true limit is higher (censored), and min_fail_why says what "
               "stopped a search: over budget, or a probe's oom or timeout cap, which bounds the limit from below.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# ------------------------------------------------------------------------------------ 4. fraction of GEMM peak

def flops_rows(src: Source) -> pd.DataFrame:
    rows = ok_rows(src.rows, "T", "median_s", "flops_analytic")
    rows = rows[(rows["phase"] == "forward") & rows["flops_analytic"].notna()]
    peaks = pd.to_numeric(src.manifests.set_index("run_id")["gemm_peak_flops"], errors="coerce")
    rows = rows.assign(gemm_peak_flops=rows["run_id"].map(peaks))
    rows = rows.assign(achieved_flops=rows["flops_analytic"] / rows["median_s"])
    return rows.assign(fraction_of_peak=rows["achieved_flops"] / rows["gemm_peak_flops"]).dropna(
        subset=["fraction_of_peak"])


def fig_flops(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "flops_fraction", "Achieved FLOP/s as a fraction of the GEMM peak"
    src = source(df, manifests, "efficiency")
    if src is None or "flops_analytic" not in src.rows or "gemm_peak_flops" not in src.manifests:
        return not_measured(name, title, "efficiency", "no forward rows with analytic FLOPs and a GEMM peak")
    rows = flops_rows(src)
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
    legend_right(ax)
    last = rows[rows["T"] == rows.groupby(["variant", "causal"])["T"].transform("max")]
    cols = ["variant", "causal", "T", "flops_analytic", "median_s", "achieved_flops", "gemm_peak_flops",
            "fraction_of_peak"]
    table = last[cols].sort_values(["causal", "variant"]).reset_index(drop=True)
    caption = ("Analytic forward FLOPs divided by the median forward time, as a fraction of a square GEMM's "
               "FLOP/s measured on the same machine at the start of the run. The table is at each curve's "
               "largest T; causal variants that skip masked work do fewer FLOPs than the analytic count.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# ------------------------------------------------------------------------------------------ 5. accuracy vs T

def accuracy_rows(src: Source | None) -> tuple[pd.DataFrame, str, str] | None:
    """(ok rows, length column, model column) of the accuracy sweep, or None without the needed columns."""
    if src is None:
        return None
    rows = src.rows
    t_col, m_col = pick(rows, "T", "seq_len", "length"), pick(rows, "variant", "model")
    if t_col is None or m_col is None or pick(rows, "accuracy") is None:
        return None
    rows = ok_rows(rows, t_col, "accuracy").dropna(subset=["accuracy"])
    rows = rows.assign(task=rows["task"].astype(str) if "task" in rows else "task")
    return (rows, t_col, m_col) if not rows.empty else None


def fig_accuracy(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_vs_length", "Accuracy vs sequence length, per task"
    src = source(df, manifests, "accuracy")
    got = accuracy_rows(src)
    if got is None:
        return not_measured(name, title, "accuracy", "no accuracy rows (task, variant, T, seed, accuracy)")
    rows, t_col, m_col = got
    table = (rows.groupby(["task", m_col, t_col], sort=True)["accuracy"].agg(["mean", "std", "count"])
             .reset_index().rename(columns={m_col: "variant", t_col: "T", "mean": "accuracy_mean",
                                            "std": "accuracy_std", "count": "n_seeds"}))
    tasks = sorted(table["task"].unique())
    fig, axes = new_figure(len(tasks), 1, (10.0, 3.6 * len(tasks)))
    for ax, task in zip(axes[:, 0], tasks):
        for variant, g in table[table["task"] == task].groupby("variant", sort=True):
            ax.errorbar(g["T"], g["accuracy_mean"], yerr=g["accuracy_std"].fillna(0), color=color_of(variant),
                        marker="o", ms=3, capsize=2, label=variant)
        style_axes(ax, f"task: {task}", "sequence length T", "accuracy", logy=False)
        legend_right(ax)
    caption = ("Test accuracy of each variant, mean ± std over seeds, against the sequence length of each task. "
               "A variant whose accuracy falls as T grows is losing information that full attention keeps.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# ----------------------------------------------------------------------------------------------- 5b. Pareto

def pareto_mask(time_s: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point is both at least as fast and at least as accurate (and better in one)."""
    return np.array([not np.any((time_s <= t) & (acc >= a) & ((time_s < t) | (acc > a)))
                     for t, a in zip(time_s, acc)])


def pareto_table(acc: pd.DataFrame, t_col: str, m_col: str, eff: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over tasks and seeds at the largest T, beside the forward time at the nearest T."""
    T = float(acc[t_col].max())
    at = acc[acc[t_col] == T].groupby(m_col, sort=True)["accuracy"].agg(["mean", "std", "count"]).reset_index()
    fwd = ok_rows(eff[(eff["phase"] == "forward") & (eff["causal"] == False)], "T", "median_s")  # noqa: E712
    fwd = fwd.dropna(subset=["median_s"])
    records = []
    for _, r in at.iterrows():
        mine = fwd[fwd["variant"] == r[m_col]]
        if mine.empty:
            continue
        t_eff = float(mine["T"].iloc[np.argmin(np.abs(np.log(mine["T"].to_numpy(float) / T)))])
        records.append({"variant": r[m_col], "T_accuracy": T, "accuracy_mean": r["mean"], "accuracy_std": r["std"],
                        "n": int(r["count"]), "T_time": t_eff,
                        "forward_s": float(mine.loc[mine["T"] == t_eff, "median_s"].median())})
    table = sorted_table(records, ["variant"])
    if not table.empty:
        table["pareto"] = pareto_mask(table["forward_s"].to_numpy(), table["accuracy_mean"].to_numpy())
    return table


def fig_pareto(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "accuracy_speed_pareto", "Accuracy–speed Pareto front"
    acc_src, eff_src = source(df, manifests, "accuracy"), source(df, manifests, "efficiency")
    got = accuracy_rows(acc_src)
    if got is None:
        return not_measured(name, title, "accuracy", "no accuracy rows to place on the front")
    if eff_src is None or "median_s" not in eff_src.rows:
        return not_measured(name, title, "efficiency", "no forward times to place the accuracies against")
    table = pareto_table(*got, eff_src.rows)
    if table.empty:
        return not_measured(name, title, "efficiency", "no variant has both an accuracy and a forward time")
    fig, axes = new_figure(1, 1, (8.0, 4.8))
    ax = axes[0, 0]
    for _, r in table.iterrows():
        ax.errorbar([r["forward_s"]], [r["accuracy_mean"]], yerr=[0 if pd.isna(r["accuracy_std"]) else
                    r["accuracy_std"]], marker="o" if r["pareto"] else "s", mfc=color_of(r["variant"]) if
                    r["pareto"] else "white", color=color_of(r["variant"]), capsize=2, ls="none", label=r["variant"])
    front = table[table["pareto"]].sort_values("forward_s")
    ax.step(front["forward_s"], front["accuracy_mean"], where="post", color="black", lw=0.8, label="Pareto front")
    T = int(table["T_accuracy"].iloc[0])
    style_axes(ax, f"T = {T} (forward time at the nearest measured T)", "forward time (s)",
               "accuracy (mean over tasks)", logx=False, logy=False)
    ax.set_xscale("log")
    units(ax, "x", seconds)
    legend_right(ax)
    caption = (f"Mean accuracy over tasks and seeds at T = {T} against the median non-causal forward time of the "
               "same variant from the efficiency sweep. Filled points lie on the Pareto front: no other variant is "
               "both faster and more accurate.")
    sources = pd.concat([acc_src.manifests, eff_src.manifests], ignore_index=True)
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, sources)


# ------------------------------------------------------------------------------------- 6. approximation error

def approximation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """ok rows; Nyström at its largest pinv_iters (converged), Linformer with random (normal) projections."""
    rows = rows if "budget" in rows else rows.assign(budget=np.nan)
    rows = ok_rows(rows, "T", "budget", "rel_error").dropna(subset=["rel_error"])
    if "pinv_iters" in rows:
        iters = pd.to_numeric(rows["pinv_iters"])
        top = iters.groupby(rows["variant"]).transform("max")
        rows = rows[iters.isna() | (iters == top)]
    if "init" in rows:
        rows = rows[rows["init"].isna() | (rows["init"] == "normal")]
    regime = rows["regime"].astype(str) if "regime" in rows else "random"
    return rows.assign(regime=regime, rel_error=rows["rel_error"].clip(lower=1e-16))


def approximation_table(rows: pd.DataFrame) -> pd.DataFrame:
    keys = ["variant", "regime", "T", "budget"]
    g = rows.groupby(keys, sort=True, dropna=False)["rel_error"].agg(["mean", "std", "count"]).reset_index()
    return g.rename(columns={"mean": "rel_error_mean", "std": "rel_error_std", "count": "n_seeds"})


def reference_budget(sub: pd.DataFrame) -> float:
    """The budget present at every T of a variant nearest REF_BUDGET (NaN: budgetless)."""
    shared = set.intersection(*[set(g["budget"].dropna()) for _, g in sub.groupby("T")])
    return min(shared, key=lambda b: (abs(np.log(b / REF_BUDGET)), b)) if shared else np.nan


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
    style_axes(ax_r, f"vs budget r at T = {T_max:g}", "budget r (features / rank / landmarks / window)",
               "relative error ‖Ŷ−Y‖/‖Y‖")
    style_axes(ax_t, f"vs T at a fixed budget (nearest r = {REF_BUDGET})", "sequence length T",
               "relative error ‖Ŷ−Y‖/‖Y‖")
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


# -------------------------------------------------------------------------------------- 7. learning curves

def fig_learning_curves(df: pd.DataFrame, manifests: pd.DataFrame,
                        out_dir: str | Path) -> FigureResult | NotMeasured:
    """One panel per task: the fitted metric (test error, or bits per byte for text) against training-set size,
    mean ± std over seeds, with each model's power law; the table is the data_scaling sweep's own summary."""
    from bench.sweeps.data_scaling import FIT_METRIC, MODELS, fitted_law, summarize

    name, title = "learning_curves", "Learning curves: error vs training-set size"
    src = source(df, manifests, "data_scaling")
    rows = None if src is None else src.rows
    if rows is None or "n_train" not in rows or "task" not in rows:
        return not_measured(name, title, "data_scaling", "no data_scaling rows (task, model, n_train, seed)")
    rows = rows[(rows["status"] == "ok") & rows["task"].isin(list(FIT_METRIC))]
    tasks = sorted(rows["task"].unique())
    if not tasks:
        return not_measured(name, title, "data_scaling", "no finished data_scaling rows")
    fig, axes = new_figure(1, len(tasks), (6.0 * len(tasks), 4.8))
    for ax, task in zip(axes[0], tasks):
        metric = FIT_METRIC[task]
        for model, g in rows[rows["task"] == task].groupby("model", sort=True):
            g = g.dropna(subset=[metric])
            base = model in MODELS and MODELS[model].baseline
            stats = g.groupby("n_train", sort=True)[metric].agg(["mean", "std"]).reset_index()
            color = "black" if base else color_of(model)
            law = fitted_law(g, metric)
            label = f"{model}{' (baseline)' if base else ''}" + (f": α={law.alpha.value:.2f}" if law else "")
            ax.errorbar(stats["n_train"], stats["mean"], yerr=stats["std"].fillna(0), ls="none", marker="o",
                        ms=4, capsize=2, color=color, label=label)
            if law is not None:
                grid = np.geomspace(stats["n_train"].min(), stats["n_train"].max(), 64)
                ax.plot(grid, law.predict(grid), color=color, ls="--" if base else "-", lw=1)
        style_axes(ax, task, "training-set size n", metric.replace("_", " "), logx=False, logy=False)
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    caption = ("Held-out error (bits per byte for text) against the number of training examples, mean ± std over "
               "seeds, with a·n^(−α) + c fitted to every seed's point; black, dashed: the baselines with a "
               "built-in inductive bias and no attention. The table gives α and c with 95% bootstrap CIs, the data "
               "needed for the target, and where the Transformer overtakes each baseline (NaN: not in range).")
    table = summarize(rows)
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# --------------------------------------------------------------------------------------------- 8. distillation

def distillation_rows(rows: pd.DataFrame) -> pd.DataFrame | None:
    """student, method (KD | labels), speedup, accuracy_share: taken or derived from the columns present."""
    student, method = pick(rows, "student", "variant", "model"), pick(rows, "method", "recipe", "loss", "kd")
    share = rows["accuracy_share"] if "accuracy_share" in rows else (
        rows["accuracy"] / rows["teacher_accuracy"] if {"accuracy", "teacher_accuracy"} <= set(rows) else None)
    speed = rows["speedup"] if "speedup" in rows else (
        rows["teacher_s"] / rows["student_s"] if {"teacher_s", "student_s"} <= set(rows) else None)
    if student is None or method is None or share is None or speed is None:
        return None
    labels = rows[method].map(lambda m: ("KD" if m else "labels") if isinstance(m, (bool, np.bool_)) else str(m))
    out = pd.DataFrame({"student": rows[student].astype(str), "method": labels,
                        "speedup": pd.to_numeric(speed), "accuracy_share": pd.to_numeric(share)}).dropna()
    return out if not out.empty else None


def fig_distillation(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    name, title = "distillation", "Distillation: accuracy share vs speed-up"
    src = source(df, manifests, "distillation")
    rows = distillation_rows(ok_rows(src.rows)) if src is not None else None
    if rows is None:
        return not_measured(name, title, "distillation", "no distillation rows (student, method, speedup, share)")
    table = (rows.groupby(["student", "method"], sort=True)
             .agg(speedup=("speedup", "median"), accuracy_share_mean=("accuracy_share", "mean"),
                  accuracy_share_std=("accuracy_share", "std"), n_seeds=("accuracy_share", "size")).reset_index())
    fig, axes = new_figure(1, 1, (9.0, 4.8))
    ax, markers = axes[0, 0], {}
    for (student, method), r in table.groupby(["student", "method"], sort=True):
        marker = markers.setdefault(method, "os^Dv"[len(markers) % 5])
        ax.errorbar(r["speedup"], r["accuracy_share_mean"], yerr=r["accuracy_share_std"].fillna(0), ls="none",
                    marker=marker, ms=6, capsize=2, color=color_of(student), label=f"{student} ({method})")
    for student, r in table.groupby("student", sort=True):
        ax.plot(r["speedup"], r["accuracy_share_mean"], color=color_of(student), lw=0.8, alpha=0.6)
    ax.axhline(1.0, color="black", ls=":", lw=0.8)
    style_axes(ax, "students: marker = training signal", "speed-up over the teacher (×)",
               "student accuracy / teacher accuracy", logx=False, logy=False)
    ax.set_xscale("log")
    legend_right(ax)
    caption = ("Each student's accuracy as a share of its teacher's against its speed-up, trained on the teacher's "
               "soft targets (KD) or on the labels only, mean ± std over seeds. A line joins the two recipes of "
               "one student, so its slope shows what distillation adds at that speed.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# -------------------------------------------------------------------------------------------- 9. repeatability

def repeat_bars(ax, table: pd.DataFrame, column: str, bound: float, title: str, ylabel: str) -> None:
    """One bar per variant × phase (phase by hatch), the target bound as a dotted line."""
    labels = [f"{v}\n{'fwd+bwd' if p == 'forward_backward' else 'fwd'} T={t}"
              for v, p, t in zip(table["variant"], table["phase"], table["T"])]
    x = np.arange(len(table))
    ax.bar(x, table[column] * 100, color=[color_of(v) for v in table["variant"]],
           edgecolor="black", linewidth=0.5)
    ax.axhline(bound * 100, color="black", ls=":", lw=1.0, label=f"target {bound:.0%}")
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    style_axes(ax, title, "", ylabel, logx=False, logy=False)
    ax.legend(loc="upper right")


def fig_repeatability(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    from bench.sweeps import repeatability as rep

    name, title = "repeatability", "Repeatability: the same cases measured again in fresh processes"
    src = source(df, manifests, rep.NAME)
    table = rep.repeat_table(ok_rows(src.rows, "peak_bytes", "median_s", "iqr_s")) if src is not None else None
    if table is None or table.empty:
        return not_measured(name, title, rep.NAME, "no case measured in two fresh children")
    table = table.sort_values(["T", "phase", "variant"], kind="stable").reset_index(drop=True)
    fig, axes = new_figure(1, 2, (11.0, 4.6))
    repeat_bars(axes[0, 0], table, "mem_spread", rep.MEMORY_TOLERANCE, "peak memory across fresh children",
                "max |peak − mean| / mean (%)")
    repeat_bars(axes[0, 1], table.fillna({"max_rel_iqr": 0.0}), "max_rel_iqr", rep.STABLE_REL_IQR,
                "steady-state timing spread", "worst IQR / median (%)")
    caption = ("Every case was measured once per fresh child process (new interpreter and heap); left, how far "
               "its peak memory moved between children, against the 5% target (the table adds the same spread of "
               "live tensor bytes, which does not depend on the heap's layout); right, the worst timing "
               "IQR/median among its repeats (cases under 1 ms are drawn at 0: the 3% bound is not applied "
               "to them). The table also gives how far the repeats' medians lie apart.")
    return FigureResult(name, title, save(fig, out_dir, name), table, caption, src.manifests)


# ---------------------------------------------------------------------------------- 11. against public code

PEER_RATIOS = (("time_ratio", "time"), ("bytes_ratio", "peak memory (RSS)"), ("live_bytes_ratio", "live bytes"))


def peer_bars(ax, table: pd.DataFrame, column: str, title: str) -> None:
    """One bar per peer × phase × T, ours/peer on a log axis, parity (1) as a dotted line."""
    labels = [f"{p}\n{'fwd+bwd' if ph == 'forward_backward' else 'fwd'} T={t}"
              for p, ph, t in zip(table["peer"], table["phase"], table["T"])]
    x = np.arange(len(table))
    q1, q3 = f"{column}_q1", f"{column}_q3"
    yerr = None
    if q1 in table and q3 in table and table[q1].notna().any():  # the spread of side-by-side rounds
        yerr = np.vstack([(table[column] - table[q1]).clip(lower=0), (table[q3] - table[column]).clip(lower=0)])
        yerr = np.nan_to_num(yerr)
    ax.bar(x, table[column], color=[color_of(v) for v in table["variant"]], edgecolor="black", linewidth=0.5,
           yerr=yerr, capsize=2, error_kw={"lw": 0.8})
    ax.axhline(1.0, color="black", ls=":", lw=1.0, label="parity")
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    style_axes(ax, title, "", "ours / peer (< 1: ours better)", logx=False, logy=True)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.legend(loc="upper right")


def fig_peers(df: pd.DataFrame, manifests: pd.DataFrame, out_dir: str | Path) -> FigureResult | NotMeasured:
    from bench.sweeps import peers as sweep

    name, title = "peers", "Ours against the public PyTorch implementations of the same methods"
    src = source(df, manifests, sweep.NAME)
    table = sweep.summarize(src.rows) if src is not None else None
    if table is None or table.empty:
        return not_measured(name, title, sweep.NAME, "no pair of ours and a peer measured")
    table = table.sort_values(["peer", "phase", "T"], kind="stable").reset_index(drop=True)
    ratios = [(c, t) for c, t in PEER_RATIOS if c in table and table[c].notna().any()]
    fig, axes = new_figure(1, len(ratios), (5.0 * len(ratios), 5.0))
    for ax, (column, what) in zip(axes[0], ratios):
        peer_bars(ax, table, column, what)
    keep = ["peer", "variant", "phase", "T", *(c for c, _ in ratios), "time_ratio_q1", "time_ratio_q3",
            "time_ratio_separate", "rel_err", "grad_rel_err", "rel_err_small_logits"]
    caption = ("Each of our variants beside a widely used public PyTorch implementation of the same method "
               "(bench/peers.py says which package and version, configured to compute the same function, checked "
               "by rel_err), measured by the same harness in the same run. Bars give ours / peer for time (the "
               "median over rounds that time a block of each side by side, whiskers their quartiles; the ratio "
               "of separately measured medians is in the table), the RSS peak (least of three probes) and the "
               "peak of live tensor bytes; below 1, ours is faster or smaller.")
    return FigureResult(name, title, save(fig, out_dir, name), table[[c for c in keep if c in table]], caption,
                        src.manifests)


FIGURES: tuple[Callable[..., FigureResult | NotMeasured], ...] = (
    fig_time, fig_memory, fig_limits, fig_flops, fig_accuracy, fig_pareto, fig_approximation, fig_learning_curves,
    fig_distillation, fig_repeatability, fig_peers,
)
