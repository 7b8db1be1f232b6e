"""What every figure shares: byte-stable styling and saving, units on the axes, colours, and the results types.

Each ``fig_*(df, manifests, out_dir)`` takes the frames of ``bench.store.load`` / ``load_manifests`` and returns a
``FigureResult`` (the PNG and SVG it wrote, the analysis table it shows, a caption and the manifests of the
results it came from) or ``NotMeasured`` when its sweep has no usable rows. Files are byte-stable given the same
results: fixed rcParams and fonts, ``svg.hashsalt``, no timestamps in the metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import variants  # noqa: E402

RC = {"font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
      "legend.fontsize": 8, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
      "figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "attention-limits", "svg.fonttype": "none",
      "path.simplify": True, "axes.prop_cycle": matplotlib.rcParamsDefault["axes.prop_cycle"]}
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None, "Creator": "attention-limits"}
SAVE_HOOKS: list[Callable[[matplotlib.figure.Figure, str], None]] = []  # see each figure before it is saved


@dataclass(frozen=True)
class FigureResult:
    name: str
    title: str
    paths: tuple[Path, ...]
    table: pd.DataFrame
    caption: str
    sources: pd.DataFrame  # the manifest lines of the results drawn
    extra: tuple[tuple[str, pd.DataFrame], ...] = ()  # further (heading, table) pairs shown after the table


@dataclass(frozen=True)
class NotMeasured:
    name: str
    title: str
    reason: str
    command: str


def not_measured(name: str, title: str, sweep: str, reason: str) -> NotMeasured:
    """A figure's "not measured yet" section, naming the command that measures its sweep."""
    command = "attention-limits limits" if sweep == "limits" else f"attention-limits run {sweep}"
    return NotMeasured(name, title, reason, command)


def color_of(name: str) -> str:
    known = variants.names()
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    i = known.index(name) if name in known else len(known) + sum(map(ord, name))
    return matplotlib.colors.to_hex(palette[i % len(palette)])


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (9.0, 4.5)):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")
    return fig, axes


def save(fig, out_dir: str | Path, name: str) -> tuple[Path, ...]:
    """``<out_dir>/<name>.png`` and ``.svg`` without timestamps; closes the figure. Each of ``SAVE_HOOKS`` is
    called with the figure and its name first (the readability tests inspect every figure the report draws)."""
    for hook in SAVE_HOOKS:
        hook(fig, name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.png", out / f"{name}.svg")
    with plt.rc_context(RC):
        fig.savefig(paths[0], metadata=PNG_METADATA, bbox_inches="tight")
        fig.savefig(paths[1], metadata=SVG_METADATA, bbox_inches="tight")
    plt.close(fig)
    return paths


def length_label(x: float, _pos=None) -> str:
    """A sequence length as a tick: "2,048", and from 128K on in K = 1024 or M = 1024², the convention of
    context lengths ("128K", "4M"), so that a decade of lengths fits under one panel."""
    if x >= 2 ** 17 and x % 1024 == 0:
        return f"{x / 2 ** 20:g}M" if x % 2 ** 20 == 0 else f"{x / 1024:g}K"
    return f"{x:,.0f}"


def style_axes(ax, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True) -> None:
    with plt.rc_context(RC):
        if logx:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(length_label))
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


def plain_log_ticks(ax, axis: str, suffix: str = "") -> None:
    """Plain-number ticks ("0.5", "2×") on a log axis, as many per decade as its span leaves room for: a log
    axis under a decade otherwise shows only minor ticks printed as 2×10⁰, 3×10⁰. Call after plotting."""
    lo, hi = sorted(getattr(ax, f"get_{axis}lim")())
    decades = np.log10(hi / lo) if lo > 0 else np.inf
    subs = ((1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 0.4 else
            (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,))
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(matplotlib.ticker.LogLocator(10, subs=subs))
    target.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def bounded_yerr(mean, spread, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(2, n) error-bar lengths of mean ± spread clipped to the metric's range [lo, hi] (an accuracy bar never
    reaches above 1); a missing spread draws no bar."""
    mean = np.asarray(mean, dtype=float)
    spread = np.nan_to_num(np.asarray(spread, dtype=float))
    return np.vstack([np.clip(np.minimum(spread, mean - lo), 0, None), np.clip(np.minimum(spread, hi - mean), 0, None)])


def legend_right(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kw)


def at_log(x: float, xs, ys) -> float:
    """y at x on a log-log polyline."""
    return float(np.exp(np.interp(np.log(x), np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)))))


def phase_label(phase: str) -> str:
    return "fwd+bwd" if phase == "forward_backward" else "fwd"


def case_bars(ax, table: pd.DataFrame, names, heights, **bar_kw) -> None:
    """One bar per row of ``table`` coloured by its variant, labelled "name / phase T=" under the axis."""
    labels = [f"{n}\n{phase_label(p)} T={t}" for n, p, t in zip(names, table["phase"], table["T"])]
    x = np.arange(len(table))
    ax.bar(x, heights, color=[color_of(v) for v in table["variant"]], edgecolor="black", linewidth=0.5, **bar_kw)
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
