"""The report's figures, one function per figure, drawing tables of ``bench.analysis`` (never measuring).

``FIGURES`` lists them in report order; each ``fig_*(df, manifests, out_dir)`` returns a ``FigureResult`` or
``NotMeasured`` (``bench.plots.common``).
"""
from __future__ import annotations

from typing import Callable

from bench.plots.accuracy import fig_accuracy, fig_pareto
from bench.plots.approximation import fig_approximation
from bench.plots.common import FigureResult, NotMeasured
from bench.plots.efficiency import fig_flops, fig_memory, fig_time
from bench.plots.interpretability import fig_interpretability
from bench.plots.learning import fig_distillation, fig_learning_curves, fig_self_supervision
from bench.plots.limits import fig_limits
from bench.plots.reliability import fig_peers, fig_repeatability

FIGURES: tuple[Callable[..., FigureResult | NotMeasured], ...] = (
    fig_time, fig_memory, fig_limits, fig_flops, fig_accuracy, fig_pareto, fig_interpretability, fig_approximation, fig_learning_curves,
    fig_self_supervision, fig_distillation, fig_repeatability, fig_peers,
)

__all__ = ["FIGURES", "FigureResult", "NotMeasured", "fig_accuracy", "fig_approximation", "fig_distillation",
           "fig_flops", "fig_interpretability", "fig_learning_curves", "fig_limits", "fig_memory", "fig_pareto", "fig_peers",
           "fig_repeatability", "fig_self_supervision", "fig_time"]
