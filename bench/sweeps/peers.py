"""Are our variants at least as fast, and no hungrier, than the widely used public implementations of the same
methods?

One case per (peer, T, phase, impl): ``impl="ours"`` times our variant, ``impl="peer"`` the public one configured to
compute the same thing (``bench.peers``), on identical inputs with the same harness: steady-state time, the least
of ``PEAK_PROBES`` peak-memory probes and the live tensor bytes. The reported time ratio is the median of
side-by-side rounds (``paired_ratios``); peer rows also carry the like-for-like error checks. Why each choice:
docs/sweeps.md#peers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from bench import peers
from bench.config import Case, ConfigError, MeasureConfig
from bench.sweep import TIMING, Sweep
from bench.analysis.peers import summary
from bench.measure import (DTYPES, Shape, live_bytes_metric, make_qkv, paired_ratios, peak_memory,
                           resolve_device, time_callable)

NAME = "peers"
PHASES = ("forward", "forward_backward")
IMPLS = ("ours", "peer")
PEAK_PROBES = 3


@dataclass(frozen=True)
class Config(MeasureConfig):
    peers: tuple[str, ...] = ()  # empty: every registered peer (those not installed give unsupported rows)
    seq_lens: tuple[int, ...] = (1024, 2048, 4096)  # T, sequence lengths
    phases: tuple[str, ...] = PHASES  # forward | forward_backward
    min_run_time: float = 0.2  # seconds of timed calls per round (torch Timer.blocked_autorange)
    agree_qk_scale: float = 0.25  # q, k scaled by this for the like-for-like error check (small logits)
    paired_rounds: int = 15  # rounds of side-by-side blocks (ours, peer) behind the reported time ratio
    paired_block_s: float = 0.04  # seconds per block

    def validate(self) -> None:
        super().validate()
        for name in self.peers:
            if name not in peers.PEERS:
                raise ConfigError(f"unknown peer {name!r}; known: {', '.join(peers.names())}")
        if not self.seq_lens or any(t <= 0 for t in self.seq_lens):
            raise ConfigError(f"sequence lengths must be positive, got {self.seq_lens}")
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise ConfigError(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
        if self.min_run_time <= 0 or self.agree_qk_scale <= 0 or self.paired_block_s <= 0:
            raise ConfigError("--min-run-time, --agree-qk-scale and --paired-block-s must be > 0")
        if self.paired_rounds < 3:
            raise ConfigError(f"--paired-rounds must be >= 3 (a median and a spread), got {self.paired_rounds}")


PROFILES = {
    "quick": Config(),
    "full": Config(seq_lens=(1024, 2048, 4096, 8192, 16384), min_run_time=1.0, time_cap_s=600.0),
}


def cases(cfg: Config) -> Iterator[Case]:
    """T outermost; the ours/peer pair of each (peer, phase) adjacent."""
    names = cfg.peers or tuple(peers.names())
    for T in sorted(cfg.seq_lens):
        for name in names:
            for phase in cfg.phases:
                for impl in IMPLS:
                    yield Case.make(NAME, peer=name, variant=peers.get(name).ours, T=T, phase=phase, impl=impl,
                                    B=cfg.batch, H=cfg.heads, D=cfg.head_dim, dtype=cfg.dtype, device=cfg.device,
                                    threads=cfg.threads, min_run_time=cfg.min_run_time, seed=cfg.seed,
                                    agree_qk_scale=cfg.agree_qk_scale, paired_rounds=cfg.paired_rounds,
                                    paired_block_s=cfg.paired_block_s)


def shape_of(case: Case) -> Shape:
    return Shape(case["B"], case["H"], case["T"], case["D"], case["dtype"], case["device"], False)


def phase_fn(module: nn.Module, shape: Shape, phase: str, seed: int) -> Callable[[], Any]:
    """The same harness for both impls: inputs built here, outside the timing; forward under inference_mode;
    forward_backward is ``out.sum().backward()`` with every gradient (inputs and parameters) dropped after."""
    q, k, v = make_qkv(shape, seed, requires_grad=phase == "forward_backward")
    if phase == "forward":
        def forward() -> Tensor:
            with torch.inference_mode():
                return module(q, k, v)
        return forward
    if phase != "forward_backward":
        raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")
    leaves = [q, k, v, *module.parameters()]

    def forward_backward() -> None:
        module(q, k, v).sum().backward()
        for t in leaves:
            t.grad = None
    return forward_backward


def execute(case: Case) -> dict[str, Any]:
    """Runs inside the worker child: time, then peak memory, then (peer rows) agreement with ours."""
    spec = peers.get(case["peer"])
    peers.require(spec)  # ours is measured only beside an installed peer: the question is the ratio
    shape = shape_of(case)
    torch.set_num_threads(case["threads"])
    build = peers.build_ours if case["impl"] == "ours" else peers.build_peer
    module = build(spec, shape)
    fn = phase_fn(module, shape, case["phase"], case["seed"])
    out: dict[str, Any] = time_callable(fn, case["threads"], case["min_run_time"])
    probes = [peak_memory(fn, shape.device) for _ in range(PEAK_PROBES)]
    out["peak_bytes"], out["peak_bytes_probes"] = min(probes), probes
    out.update(live_bytes_metric(fn, shape.device))
    out["peer_requirement"] = spec.requirement
    out["peer_installed"] = peers.installed_version(spec)
    if case["impl"] == "peer":
        grads = case["phase"] == "forward_backward"
        out.update(peers.agreement(spec, shape, seed=case["seed"], grads=grads))
        small = peers.agreement(spec, shape, seed=case["seed"], qk_scale=case["agree_qk_scale"])
        out["rel_err_small_logits"] = small["rel_err"]
        out.update(paired_time(spec, shape, case, fn))
    return out


def paired_time(spec: peers.PeerSpec, shape: Shape, case: Case, peer_fn: Callable[[], Any]) -> dict[str, Any]:
    """Ours over the peer, timed side by side in this process (``bench.measure.paired_ratios``): the median of
    the per-round ratios, their quartiles and the rounds themselves."""
    import numpy as np

    ours_fn = phase_fn(peers.build_ours(spec, shape), shape, case["phase"], case["seed"])
    ratios = paired_ratios(ours_fn, peer_fn, case["threads"], case["paired_block_s"], case["paired_rounds"])
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return {"paired_time_ratio": float(med), "paired_time_ratio_q1": float(q1), "paired_time_ratio_q3": float(q3),
            "paired_ratios": [float(f"{r:.4g}") for r in ratios]}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, summarize=summary,
              metrics=(*TIMING, "peak_bytes", "peak_bytes_probes", "peak_live_bytes", "peer_installed",
                       "peer_requirement", "rel_err", "max_abs_err", "grad_rel_err", "rel_err_small_logits",
                       "ours_vs_full", "peer_vs_full", "mean_v_vs_full", "peer_vs_mean_v", "paired_ratios",
                       "paired_time_ratio", "paired_time_ratio_q1",
                       "paired_time_ratio_q3"))
