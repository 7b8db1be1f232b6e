"""Can the harness's numbers be trusted twice? The same cases measured again, each in a fresh child process.

Every (variant, T, phase) is measured ``repeats`` times, repeats outermost (so machine drift spreads over all
cases), and every case runs in a child of its own (``fresh_child``): a new interpreter, a new heap, no allocator
state carried over from the case before. The questions, answered by ``bench.analysis.repeatability``:
- peak memory: does each case's peak agree across fresh children within 5% (the harness's memory target)? Beside
  the RSS peak, the peak of live tensor bytes (CPU): when it agrees exactly and the RSS does not, the case's own
  heap layout differs between processes (a freed hole that the next tensor fits in one process and not another),
  not the measurement.
- time: is each steady-state time stable (IQR/median <= 3% for cases of 1 ms or more, after the harness's own
  re-rounds, ``bench.measure.time_callable``), and how far apart are the medians of the fresh children?
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

import variants
from bench.config import Case, ConfigError
from bench.measure import live_bytes_metric, peak_memory, phase_callable, time_callable
from bench.sweeps import efficiency

NAME = "repeatability"


@dataclass(frozen=True)
class Config(efficiency.Config):
    """The efficiency sweep's case fields and checks, other defaults, plus how many fresh children measure each
    case."""

    seq_lens: tuple[int, ...] = (4096,)
    phases: tuple[str, ...] = ("forward", "forward_backward")
    causal: tuple[bool, ...] = (False,)
    min_run_time: float = 0.2
    time_cap_s: float = 300.0
    repeats: int = 2

    def validate(self) -> None:
        super().validate()
        if self.repeats < 2:
            raise ConfigError(f"--repeats must be >= 2 (a repeat needs two measurements), got {self.repeats}")


PROFILES = {
    # 16 fresh children (~2 s each to start torch): forward+backward, the phase with the most allocations
    "quick": Config(phases=("forward_backward",)),
    "full": Config(seq_lens=(1024, 4096, 16384), repeats=3, min_run_time=0.5, time_cap_s=600.0),
}


def cases(cfg: Config) -> Iterator[Case]:
    names = cfg.variants or tuple(variants.names())
    for repeat in range(cfg.repeats):
        for T in sorted(cfg.seq_lens):
            for name in names:
                for causal in cfg.causal:
                    for phase in cfg.phases:
                        yield Case.make(NAME, variant=name, T=T, phase=phase, repeat=repeat, causal=causal,
                                        B=cfg.batch, H=cfg.heads, D=cfg.head_dim, dtype=cfg.dtype,
                                        device=cfg.device, threads=cfg.threads, min_run_time=cfg.min_run_time,
                                        seed=cfg.seed)


def fresh_child(cfg: Config, case: Case) -> bool:
    """Every case runs in a child that ran no other case (``run_sweep``)."""
    return True


def execute(case: Case) -> dict[str, Any]:
    """Runs in a fresh worker child: steady-state time, then the case's own peak memory."""
    spec = variants.get(case["variant"]).spec
    if case["causal"] and not spec.supports_causal:
        raise NotImplementedError(f"{spec.name} does not support causal attention")
    shape = efficiency.shape_of(case)
    torch.set_num_threads(case["threads"])
    fn = phase_callable(case["variant"], shape, case["phase"], seed=case["seed"])
    out: dict[str, Any] = time_callable(fn, case["threads"], case["min_run_time"])
    out["peak_bytes"] = peak_memory(fn, shape.device)
    out.update(live_bytes_metric(fn, shape.device))
    out["child_pid"] = os.getpid()  # evidence that each repeat ran in a process of its own
    return out
