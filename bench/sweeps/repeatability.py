"""Can the harness's numbers be trusted twice? The same cases measured again, each in a fresh child process.

Every (variant, T, phase) is measured ``repeats`` times, repeats outermost, each case in a child of its own: do
the peak memories agree within 5% across fresh children (beside the RSS peak, the live tensor bytes tell heap
layout from measurement), and are the steady-state times stable? More: docs/sweeps.md#repeatability.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

import variants
from bench.config import Case, ConfigError
from bench.sweep import TIMING, Sweep
from bench.analysis.repeatability import summary
from bench.measure import live_bytes_metric, peak_memory, phase_callable, time_callable
from bench.sweeps import efficiency

NAME = "repeatability"


@dataclass(frozen=True)
class Config(efficiency.Config):
    """The efficiency sweep's case fields and checks, other defaults, plus how many fresh children measure each
    case."""

    seq_lens: tuple[int, ...] = (4096,)  # T, sequence lengths
    phases: tuple[str, ...] = ("forward", "forward_backward")  # forward | forward_backward | train_step
    causal: tuple[bool, ...] = (False,)  # causal settings measured
    min_run_time: float = 0.2
    time_cap_s: float = 300.0
    repeats: int = 2  # fresh children that measure each case

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
SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, fresh_child=fresh_child,
              summarize=summary, metrics=(*TIMING, "peak_bytes", "peak_live_bytes", "child_pid"))
