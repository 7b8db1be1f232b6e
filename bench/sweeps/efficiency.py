"""How do time, peak memory and FLOPs grow with sequence length T, per variant and phase?

Every variant × T (powers of two) × phase (forward, forward_backward, train_step) × causal. Each case runs in the
isolated worker: steady-state time (median, IQR, repeats) beside the first call, the case's own peak memory, and
for the forward phase the FLOPs counted on the math path beside the spec's analytic count, and (CPU) the peak of
live tensor bytes beside the RSS peak and the spec's analytic bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch

import variants
from bench.config import Case, ConfigError, MeasureConfig, require_nonempty
from bench.sweep import TIMING, Sweep
from bench.analysis.efficiency import summary
from bench.measure import (DTYPES, PHASES, Shape, counted_flops, live_bytes_metric, log2_grid, peak_memory,
                           phase_callable, time_callable)

NAME = "efficiency"
CALIBRATION = "bench.measure:gemm_calibration"  # GEMM peak, stored in the manifest


@dataclass(frozen=True)
class Config(MeasureConfig):
    variants: tuple[str, ...] = ()  # empty: every registered variant
    seq_lens: tuple[int, ...] = log2_grid(64, 4096)  # T, sequence lengths
    phases: tuple[str, ...] = PHASES  # forward | forward_backward | train_step
    causal: tuple[bool, ...] = (False, True)  # causal settings measured (false, true)
    train_step_max_t: int = 1024  # the whole-model step is the slowest phase: measured up to this T only
    quadratic_max_t: int = 0  # variants declared quadratic in time (time_exponent >= 2) stop here; 0: no cap
    fresh_child_min_t: int = 0  # cases with T >= this run in a child that ran no other case; 0: never
    min_run_time: float = 0.1  # seconds of timed calls per round (torch Timer.blocked_autorange)

    def validate(self) -> None:
        super().validate()
        for name in self.variants:
            variants.get(name)
        require_nonempty(self, ("seq_lens", "phases", "causal"))
        if any(t <= 0 for t in self.seq_lens):
            raise ConfigError(f"sequence lengths must be positive, got {self.seq_lens}")
        if self.fresh_child_min_t < 0:
            raise ConfigError(f"--fresh-child-min-t must be >= 0 (0: never), got {self.fresh_child_min_t}")
        if self.quadratic_max_t < 0:
            raise ConfigError(f"--quadratic-max-t must be >= 0 (0: no cap), got {self.quadratic_max_t}")
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise ConfigError(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")


PROFILES = {
    "quick": Config(),
    # past the last-level cache for the sub-quadratic variants; fresh children from 32768 (docs/sweeps.md)
    "full": Config(seq_lens=log2_grid(128, 131072), min_run_time=0.5, time_cap_s=600.0, train_step_max_t=8192,
                   quadratic_max_t=32768, fresh_child_min_t=32768),
    # one GPU (README, Scaling out): from past the launch-bound lengths until each variant runs out of the GPU's
    # memory (oom rows), the quadratic ones until their time does; bf16 here, fp32 in gpu_fp32 (docs/sweeps.md)
    "gpu": Config(seq_lens=log2_grid(1024, 1 << 23), dtype="bfloat16", device="cuda", min_run_time=0.2,
                  time_cap_s=600.0, train_step_max_t=16384, quadratic_max_t=1 << 19),
    "gpu_fp32": Config(seq_lens=log2_grid(1024, 1 << 23), dtype="float32", device="cuda", min_run_time=0.2,
                       time_cap_s=600.0, train_step_max_t=16384, quadratic_max_t=1 << 18),
}


def fresh_child(cfg: Config, case: Case) -> bool:
    """Whether ``case`` runs in a child that ran no other case (``run_sweep``): T >= ``cfg.fresh_child_min_t``."""
    return bool(cfg.fresh_child_min_t) and case["T"] >= cfg.fresh_child_min_t


def skipped(cfg: Config, name: str, T: int, phase: str) -> bool:
    """Cases the profile leaves out by design: long whole-model steps and quadratic variants beyond their cap."""
    if phase == "train_step" and T > cfg.train_step_max_t:
        return True
    return bool(cfg.quadratic_max_t) and T > cfg.quadratic_max_t and variants.get(name).spec.time_exponent >= 2


def cases(cfg: Config) -> Iterator[Case]:
    names = cfg.variants or tuple(variants.names())
    for T in sorted(cfg.seq_lens):
        for name in names:
            for causal in cfg.causal:
                for phase in cfg.phases:
                    if skipped(cfg, name, T, phase):
                        continue
                    yield Case.make(NAME, variant=name, T=T, phase=phase, causal=causal, B=cfg.batch, H=cfg.heads,
                                    D=cfg.head_dim, dtype=cfg.dtype, device=cfg.device, threads=cfg.threads,
                                    min_run_time=cfg.min_run_time, seed=cfg.seed)


def shape_of(case: Case) -> Shape:
    return Shape(case["B"], case["H"], case["T"], case["D"], case["dtype"], case["device"], case["causal"])


def execute(case: Case) -> dict[str, Any]:
    """Runs inside the worker child: time, then peak memory, then (forward) FLOPs of one case."""
    spec = variants.get(case["variant"]).spec
    if case["causal"] and not spec.supports_causal:
        raise NotImplementedError(f"{spec.name} does not support causal attention")
    shape = shape_of(case)
    torch.set_num_threads(case["threads"])
    fn = phase_callable(case["variant"], shape, case["phase"], seed=case["seed"])
    out: dict[str, Any] = time_callable(fn, case["threads"], case["min_run_time"])
    out["peak_bytes"] = peak_memory(fn, shape.device)
    if case["phase"] == "forward":
        elem = torch.finfo(shape.torch_dtype).bits // 8
        out.update(live_bytes_metric(fn, shape.device))  # beside the RSS peak: the heap's fragmentation is the gap
        out["flops"] = counted_flops(case["variant"], shape)
        out["flops_analytic"] = spec.analytic_flops(shape.B, shape.H, shape.T, shape.D, causal=shape.causal)
        out["bytes_analytic"] = spec.analytic_bytes(shape.B, shape.H, shape.T, shape.D, causal=shape.causal,
                                                    elem_bytes=elem)
    return out


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, calibration=CALIBRATION,
              fresh_child=fresh_child, summarize=summary,
              metrics=(*TIMING, "peak_bytes", "peak_live_bytes", "flops", "flops_analytic", "bytes_analytic"))
