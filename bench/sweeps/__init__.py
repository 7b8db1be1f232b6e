"""Sweeps: one module per question, named after the question, each exposing one ``SWEEP = bench.sweep.Sweep(...)``.

A sweep module defines its ``Config`` (a frozen dataclass extending ``bench.config.RunConfig``, one trailing
comment per field: its ``--help`` line), ``PROFILES`` (``{"quick": Config(...), "full": Config(...)}``),
``cases(cfg)`` and ``execute(case) -> dict`` (measures one case inside the isolated worker, SI units; raise
``NotImplementedError`` for an unsupported combination), and declares the rest in its ``Sweep``
(its end-of-run ``summarize`` comes from ``bench.analysis``: sweeps do no analysis).

The registry below is explicit: add one line per new sweep.
"""
from __future__ import annotations

import importlib

from bench.config import ConfigError
from bench.sweep import Sweep

SWEEPS: dict[str, str] = {
    "efficiency": "bench.sweeps.efficiency",
    "limits": "bench.sweeps.limits",
    "approximation": "bench.sweeps.approximation",
    "peers": "bench.sweeps.peers",
    "accuracy": "bench.sweeps.accuracy",
    "interpretability": "bench.sweeps.interpretability",
    "data_scaling": "bench.sweeps.data_scaling",
    "distillation": "bench.sweeps.distillation",
    "repeatability": "bench.sweeps.repeatability",
}

# What `attention-limits all` runs, in order. Without the `peers` extra installed, the peers rows say unsupported.
MAIN_JOB: tuple[str, ...] = ("efficiency", "limits", "peers", "repeatability", "approximation", "accuracy",
                             "interpretability", "data_scaling", "distillation")


def get(name: str) -> Sweep:
    """The registered sweep ``name`` (``run data-scaling`` and ``run data_scaling`` are the same sweep)."""
    name = name.replace("-", "_")
    if name not in SWEEPS:
        raise ConfigError(f"unknown sweep {name!r}; known: {', '.join(sorted(SWEEPS)) or 'none'}")
    return importlib.import_module(SWEEPS[name]).SWEEP


def names() -> list[str]:
    return sorted(SWEEPS)
