"""How do time, peak memory and FLOPs grow with sequence length T, per variant and phase?

Every variant × T (powers of two) × phase (forward, forward_backward, train_step) × causal. Each case runs in the
isolated worker: steady-state time (median, IQR, repeats) beside the first call, the case's own peak memory, and
for the forward phase the FLOPs counted on the math path beside the spec's analytic count, and (CPU) the peak of
live tensor bytes beside the RSS peak and the spec's analytic bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch

import variants
from bench.config import Case, ConfigError
from bench.measure import (DTYPES, PHASES, Shape, counted_flops, live_bytes_metric, log2_grid, peak_memory,
                           phase_callable, time_callable)

NAME = "efficiency"
CALIBRATION = "bench.measure:gemm_calibration"  # GEMM peak, stored in the manifest


@dataclass(frozen=True)
class Config:
    variants: tuple[str, ...] = ()  # empty: every registered variant
    seq_lens: tuple[int, ...] = log2_grid(128, 4096)
    phases: tuple[str, ...] = PHASES
    causal: tuple[bool, ...] = (False, True)
    train_step_max_t: int = 1024  # the whole-model step is the slowest phase: measured up to this T only
    quadratic_max_t: int = 0  # variants declared quadratic in time (time_exponent >= 2) stop here; 0: no cap
    fresh_child_min_t: int = 0  # cases with T >= this run in a child that ran no other case; 0: never (see below)
    batch: int = 1
    heads: int = 4
    head_dim: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 2
    min_run_time: float = 0.1
    time_cap_s: float = 120.0
    seed: int = 0

    def validate(self) -> None:
        for name in self.variants:
            variants.get(name)
        bad = [t for t in self.seq_lens if t <= 0]
        if bad or not self.seq_lens:
            raise ConfigError(f"sequence lengths must be positive, got {self.seq_lens}")
        if self.fresh_child_min_t < 0:
            raise ConfigError(f"--fresh-child-min-t must be >= 0 (0: never), got {self.fresh_child_min_t}")
        if self.quadratic_max_t < 0:
            raise ConfigError(f"--quadratic-max-t must be >= 0 (0: no cap), got {self.quadratic_max_t}")
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise ConfigError(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        if self.device != "cpu" and not (self.device.startswith("cuda") and torch.cuda.is_available()):
            raise ConfigError(f"device {self.device!r} is not available here (torch.cuda.is_available() is "
                              f"{torch.cuda.is_available()})")
        for label in ("batch", "heads", "head_dim", "threads"):
            if getattr(self, label) < 1:
                raise ConfigError(f"--{label.replace('_', '-')} must be >= 1")


PROFILES = {
    "quick": Config(),
    # The sub-quadratic variants go on to 131072 so that the top of their range lies past the last-level cache
    # (their working set is ~1 KiB per token per tensor at B=1, H=4, D=64): fitted over 4096..32768, the exponent
    # of a memory-bound variant mixes in the step from cache to DRAM bandwidth. The quadratic ones stop at 32768
    # (full_sdpa's forward+backward takes 20 s there and would take ~80 s a call at 65536).
    # From T = 32768 up each case gets a child of its own (~2 s each, ~70 cases): in a worker that has run other
    # cases, glibc serves a large allocation from a free chunk that earlier cases left in the middle of the
    # retained heap before it would mmap one, and the pages of such a chunk stay resident when the tensor is freed
    # (nothing trims the middle of a heap), so the RSS peak of one forward+backward counted temporaries that had
    # already died: at T = 131072 linformer read 704 MiB after the other variants' cases and 576 MiB (2x its
    # 288 MiB at 65536) in a child of its own, nystrom 804 and 675 MiB, which bent both exponents to ~1.17.
    "full": Config(seq_lens=log2_grid(128, 131072), min_run_time=0.5, time_cap_s=600.0, train_step_max_t=8192,
                   quadratic_max_t=32768, fresh_child_min_t=32768),
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
        params = dict(spec.default_params)
        out.update(live_bytes_metric(fn, shape.device))  # beside the RSS peak: the heap's fragmentation is the gap
        out["flops"] = counted_flops(case["variant"], shape)
        out["flops_analytic"] = int(spec.flops(shape.B, shape.H, shape.T, shape.D, causal=shape.causal, **params))
        out["bytes_analytic"] = int(spec.memory_bytes(shape.B, shape.H, shape.T, shape.D, causal=shape.causal,
                                                      elem_bytes=elem, **params))
    return out


def config_dict(cfg: Config) -> dict[str, Any]:
    return asdict(cfg)
