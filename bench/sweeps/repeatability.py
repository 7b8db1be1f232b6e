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
from bench.measure import (MIN_STABLE_MEDIAN_S, STABLE_REL_IQR, live_bytes_metric, peak_memory, phase_callable,
                           time_callable)
from bench.sweep import TIMING, Sweep
from bench.sweeps import efficiency

NAME = "repeatability"
MEMORY_TOLERANCE = 0.05  # fresh-child peaks of one case within 5% of their mean


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


def repeat_table(df):
    """Per variant × phase × T: fresh-child peak memory spread (max |peak − mean| / mean) and whether it is within
    5%; the worst timing IQR/median among its repeats (cases >= 1 ms) and the spread of their medians."""
    import pandas as pd

    ok = df[(df["sweep"] == NAME) & (df["status"] == "ok")]
    rows = []
    for (name, phase, T), g in ok.groupby(["variant", "phase", "T"], sort=True):
        if len(g) < 2:
            continue
        peak = g["peak_bytes"].astype(float)
        mem_spread = float((peak - peak.mean()).abs().max() / peak.mean())
        live = g["peak_live_bytes"].astype(float) if "peak_live_bytes" in g else pd.Series([float("nan")])
        live_spread = float((live - live.mean()).abs().max() / live.mean()) if live.notna().all() else float("nan")
        med = g["median_s"].astype(float)
        timed = med >= MIN_STABLE_MEDIAN_S
        rel_iqr = (g["iqr_s"].astype(float) / med)[timed]
        rows.append({"variant": name, "phase": phase, "T": int(T), "repeats": len(g),
                     "peak_mib": peak.mean() / 2 ** 20, "mem_spread": mem_spread,
                     "mem_ok": mem_spread <= MEMORY_TOLERANCE, "live_spread": live_spread,
                     "median_ms": med.mean() * 1e3,
                     "median_spread": float((med - med.mean()).abs().max() / med.mean()),
                     "max_rel_iqr": float(rel_iqr.max()) if len(rel_iqr) else float("nan"),
                     "time_ok": bool((rel_iqr <= STABLE_REL_IQR).all()) if len(rel_iqr) else None})
    return pd.DataFrame(rows)


def summarize(df) -> str:
    table = repeat_table(df)
    if table.empty:
        from bench.run import summary_table

        return summary_table(df)
    mem = f"memory within {MEMORY_TOLERANCE:.0%} across fresh children: {int(table['mem_ok'].sum())}/{len(table)}"
    timed = table.dropna(subset=["time_ok"])
    tim = (f"timing IQR/median <= {STABLE_REL_IQR:.0%} (cases >= 1 ms): "
           f"{int(timed['time_ok'].astype(bool).sum())}/{len(timed)}")
    shown = table.copy()
    for col in ("mem_spread", "live_spread", "median_spread", "max_rel_iqr"):
        shown[col] = shown[col].map(lambda x: f"{x:.1%}")
    for col in ("peak_mib", "median_ms"):
        shown[col] = shown[col].map(lambda x: f"{x:.3g}")
    return f"{shown.to_string(index=False)}\n{mem}\n{tim}"


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, fresh_child=fresh_child,
              summarize=summarize, metrics=(*TIMING, "peak_bytes", "peak_live_bytes", "child_pid"))
