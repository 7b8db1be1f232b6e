"""Sweeps: one module per question, named after the question.

Each sweep module defines:
- ``NAME``: the name used on the command line and stored in every row's ``sweep`` column;
- ``Config``: a frozen dataclass (typed fields, defaults) with an optional ``validate()`` raising ``ConfigError``;
- ``PROFILES``: ``{"quick": Config(...), "full": Config(...)}``;
- ``cases(cfg) -> Iterator[Case]``: the points to measure, in the order to run them;
- ``execute(case) -> dict``: measures one case inside the isolated worker and returns its metrics (SI units).
  Raise ``NotImplementedError`` for an unsupported combination; an out-of-memory error propagates as is.
- its end-of-run summary, if any, is ``bench.analysis.summaries.SUMMARIES[NAME]`` (sweeps do no analysis).

The registry below is explicit: add one line per new sweep.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from bench.config import ConfigError

SWEEPS: dict[str, str] = {
    "efficiency": "bench.sweeps.efficiency",
    "limits": "bench.sweeps.limits",
    "approximation": "bench.sweeps.approximation",
    "peers": "bench.sweeps.peers",
    "accuracy": "bench.sweeps.accuracy",
    "data_scaling": "bench.sweeps.data_scaling",
    "distillation": "bench.sweeps.distillation",
    "repeatability": "bench.sweeps.repeatability",
}

# What `attention-limits all` runs, in order. Without the `peers` extra installed, the peers rows say unsupported.
MAIN_JOB: tuple[str, ...] = ("efficiency", "limits", "peers", "repeatability", "approximation", "accuracy",
                             "data_scaling", "distillation")


def get(name: str) -> ModuleType:
    name = name.replace("-", "_")  # `run data-scaling` and `run data_scaling` are the same sweep
    if name not in SWEEPS:
        raise ConfigError(f"unknown sweep {name!r}; known: {', '.join(sorted(SWEEPS)) or 'none'}")
    return importlib.import_module(SWEEPS[name])


def names() -> list[str]:
    return sorted(SWEEPS)
