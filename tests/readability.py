"""Checks that a drawn figure can be read: tick labels that do not overlap, a legend wherever colour encodes
something, integers not printed as floats.

Used on every figure the report draws (``tests/test_figures_readable.py``, through ``bench.plots.common.SAVE_HOOKS``).
"""
from __future__ import annotations

import re
from itertools import combinations

import matplotlib.colors
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

FLOAT_INTEGER = re.compile(r"\d+\.0\b")
FRACTION = re.compile(r"\d\.\d*[1-9]")


def _visible_labels(axis, renderer) -> list:
    """(text, window box) of the tick labels drawn inside the axis's view interval."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
    index = 0 if axis.axis_name == "x" else 1
    return [(t.get_text(), t.get_window_extent(renderer)) for t in axis.get_ticklabels(which="both")
            if t.get_visible() and t.get_text().strip() and lo - tol <= t.get_position()[index] <= hi + tol]


def overlapping_tick_labels(fig: Figure) -> list[str]:
    """Pairs of tick labels on one axis whose boxes overlap, drawn at the figure's own size and dpi."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for i, ax in enumerate(fig.axes):
        for axis in (ax.xaxis, ax.yaxis):
            for (ta, a), (tb, b) in combinations(_visible_labels(axis, renderer), 2):
                if a.width > 0 and b.width > 0 and a.overlaps(b):
                    problems.append(f"axes {i} ({ax.get_title()!r}) {axis.axis_name}: {ta!r} overlaps {tb!r}")
    return problems


def _colours(ax) -> set[str]:
    """The colours of an axes' lines and scatter markers (bars name their case in the tick labels)."""
    found = {matplotlib.colors.to_hex(line.get_color()) for line in ax.lines if line.get_visible()}
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            found |= {matplotlib.colors.to_hex(c) for c in coll.get_facecolors()}
    return found


def missing_legends(fig: Figure) -> list[str]:
    """Axes drawing lines or markers in more than one colour with no legend on the axes or the figure."""
    if fig.legends:
        return []
    return [f"axes {i} ({ax.get_title()!r}): {len(_colours(ax))} colours and no legend"
            for i, ax in enumerate(fig.axes) if len(_colours(ax)) > 1 and ax.get_legend() is None]


def float_integer_labels(fig: Figure) -> list[str]:
    """Tick labels of an axis whose numbers are all integers printed with ".0" ("T=1024.0"); "4.0" beside "3.5"
    on a decimal axis is a float and fine."""
    fig.canvas.draw()
    problems = []
    for i, ax in enumerate(fig.axes):
        for axis in (ax.xaxis, ax.yaxis):
            texts = [t.get_text() for t in axis.get_ticklabels(which="both") if t.get_text().strip()]
            if any(FRACTION.search(t) for t in texts):
                continue
            problems += [f"axes {i} ({ax.get_title()!r}) {axis.axis_name}: {t!r}"
                         for t in texts if FLOAT_INTEGER.search(t)]
    return problems


def problems(fig: Figure) -> list[str]:
    """Every readability problem of a drawn figure (empty: it reads)."""
    return overlapping_tick_labels(fig) + missing_legends(fig) + float_integer_labels(fig)
