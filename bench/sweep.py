"""The Sweep protocol: everything ``bench.run.run_sweep`` may use of a sweep, declared in one frozen dataclass.

A sweep module defines its Config (a ``bench.config.RunConfig`` subclass), profiles, ``cases`` and ``execute``,
and exposes them as one ``SWEEP = Sweep(...)``; the optional hooks have defaults, so ``run_sweep`` never sniffs
a module for attributes. An adaptive sweep (limits, accuracy's learning-rate
tuning) gives a ``plan`` instead of a fixed case list: a generator that yields a case to run (and receives its
``Outcome``), a list of cases to run as one parallel batch (and receives their outcomes, in order), or a
``Summary`` record to write, so the manifest, the writer, resume and progress stay in ``run_sweep``. On resume
the plan gets the records already stored, by case id, and yields only what is missing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Mapping, Optional, Union

from bench.config import Case, RunConfig
from bench.outcome import Outcome


@dataclass(frozen=True)
class Summary:
    """A record a plan found (a limit, say): written with its own ``kind``, never executed."""

    case: Case
    outcome: Outcome
    kind: str = "limit"


Plan = Generator[Union[Case, list, Summary], Union[Outcome, list, None], None]


def no_cases(cfg: Any) -> Iterable[Case]:
    """The ``cases`` of an adaptive sweep: its ``plan`` yields them as it goes."""
    return ()


def never(cfg: Any, case: Case) -> bool:
    """The default ``fresh_child``: every case runs in the sweep's long-lived worker."""
    return False


def config_cap(cfg: RunConfig, case: Case) -> Optional[int]:
    """The default ``mem_cap``: the config's ``mem_cap_bytes`` (None: the Worker's default)."""
    return cfg.mem_cap_bytes


def config_time_cap(cfg: RunConfig, case: Case) -> float:
    """The default ``time_cap``: the config's ``time_cap_s``."""
    return cfg.time_cap_s


def no_extra(cfg: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Sweep:
    """One sweep, as ``run_sweep`` sees it.

    ``metrics`` names every column ``execute`` (or a plan's ``Summary``) may add to a row; the store rejects others.
    ``parallel``: cases may run ``cfg.jobs`` at a time (metrics that do not need an idle machine).
    ``fresh_child(cfg, case)``: run this case in a child that ran no other. ``calibration``: a worker target
    ("module:function") whose metrics go into the manifest. ``mem_cap(cfg, case)``: the worker's memory cap for a
    case; ``time_cap(cfg, case)``: its time cap in seconds. ``manifest(cfg)``: extra manifest fields.
    ``plan(cfg, done)``: the adaptive planner (see the module); ``done`` maps finished case ids to their records.
    ``summarize(df)``: the one-screen table printed after a run (None: counts by status).
    """

    name: str
    config: type
    profiles: Mapping[str, RunConfig]
    cases: Callable[[Any], Iterable[Case]]
    execute: Callable[[Case], dict]
    metrics: tuple[str, ...]
    parallel: bool = False
    fresh_child: Callable[[Any, Case], bool] = never
    calibration: Optional[str] = None
    mem_cap: Callable[[Any, Case], Optional[int]] = config_cap
    time_cap: Callable[[Any, Case], float] = config_time_cap
    manifest: Callable[[Any], dict] = no_extra
    plan: Optional[Callable[[Any, Mapping[str, dict]], Plan]] = None
    summarize: Optional[Callable[[Any], Any]] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self.config)}
        if not issubclass(self.config, RunConfig):
            raise TypeError(f"sweep {self.name!r}: its Config must extend bench.config.RunConfig")
        if self.parallel and "jobs" not in names:
            raise TypeError(f"sweep {self.name!r} is parallel but its Config has no `jobs` field")

    @property
    def target(self) -> str:
        """The worker target of ``execute``: ``"module:function"``."""
        return f"{self.execute.__module__}:{self.execute.__name__}"

    def jobs(self, cfg: Any) -> int:
        """How many workers run cases at once."""
        return int(cfg.jobs) if self.parallel else 1


# The metrics of ``bench.measure.time_callable``, which several sweeps return as they are.
TIMING = ("first_call_s", "median_s", "iqr_s", "repeats", "number_per_run", "block_times_s", "rounds", "stable")
