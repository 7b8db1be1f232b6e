"""How far is each approximate variant's output from exact softmax attention, as a function of T and its budget r?

No training: each case builds seeded q, k, v, runs one variant forward (non-causal, no padding) and compares it with
``variants.reference_attention`` in float64 on the same inputs: the output error relative to ‖Y‖ and to ‖V‖, the
attention-matrix error where P̂ is affordable, the same metrics of the trivial outputs (zeros, mean(v)), and the
input regime (exact attention's entropy, the logit scale). Budgets r set one parameter per variant
(``BUDGET_PARAM``); per T the grid is r <= T plus r = T, the exactness limit. Each variant runs as published
(Nyström: 6 iterations of the paper's pseudo-inverse), Linformer with training-free E, F, and labelled ablations.
Grid decisions and the regimes: docs/sweeps.md#approximation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

import variants
from bench.config import Case, ConfigError, ShapeConfig
from bench.sweep import Sweep
from bench.analysis.approximation import summary
from bench.measure import DTYPES, log2_grid, resolve_device
from bench.measure import approximation as metrics

NAME = "approximation"
REGIMES = ("random", "peaked")
SCALE_REGIME = "scale"  # the input-scale sweep's cases: q and k both times one of cfg.scales
LINFORMER_INITS = ("fitted", "pooled", "normal")  # E, F: least squares on the inputs, mean-pooling, N(0, 1/k)
# The configuration each case key names: (label, is it an ablation of what the figure draws).
CONFIGS: dict[tuple[str, str], tuple[str, bool]] = {
    ("pinv", "iterative"): ("published", False), ("pinv", "exact"): ("exact pinv", True),
    ("init", "fitted"): ("fitted E, F", False), ("init", "pooled"): ("pooled E, F", False),
    ("init", "normal"): ("random E, F", True),
}

# The parameter each variant's budget r sets; None: the variant has no budget (one case per T).
BUDGET_PARAM: dict[str, str | None] = {
    "linear_performer": "n_features",
    "linear_elu": None,
    "low_rank_linformer": "k",
    "low_rank_nystrom": "landmarks",
    "sparse_window": "window",
    "sparse_bigbird": "window",
}

# Smallest budget at which theory says the variant equals softmax attention (None: no budget does).
EXACT_LIMIT: dict[str, Callable[[Case], int | None]] = {
    "sparse_window": lambda c: c["T"] - 1,  # reach |i - j| <= w covers every pair once w >= T - 1
    "sparse_bigbird": lambda c: c["T"] - 1,
    "low_rank_nystrom": lambda c: c["T"],  # one token per landmark: F·A⁺·B = P·P⁺·P = P, once A⁺ has converged
    "low_rank_linformer": lambda c: c["T"] if c["init"] == "pooled" else None,  # E = F = I at k = T

}


@dataclass(frozen=True)
class Config(ShapeConfig):
    variants: tuple[str, ...] = ()  # empty: every registered variant whose spec is not exact
    seq_lens: tuple[int, ...] = (256, 1024)  # T, sequence lengths
    budgets: tuple[int, ...] = log2_grid(8, 4096)  # shared r grid; per T only r <= T, plus r = T ...
    full_budget_max_t: int = 4096  # ... where T is at most this (r = T: the exactness limit, the costliest case)
    regimes: tuple[str, ...] = REGIMES  # random | peaked inputs
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # input and variant seeds (median and IQR over them)
    pinv_iters: tuple[int, ...] = (6,)  # low_rank_nystrom: the paper's 6 iterations
    exact_pinv: bool = True  # low_rank_nystrom: add the exact-pseudo-inverse ablation
    linformer_inits: tuple[str, ...] = LINFORMER_INITS  # low_rank_linformer E, F: fitted | pooled | normal
    max_landmarks: int = 2048  # low_rank_nystrom: larger budgets skipped (m³ pseudo-inverse)
    scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # input-scale sweep at the largest T (output errors only) ...
    scale_budget: int = 64  # ... and this budget, every variant in its drawn (non-ablation) configurations
    p_error_max_flops: float = 1.5e10  # form P̂ (T/D forwards) only where they cost at most this many FLOPs
    bigbird_block: int = 32  # sparse_bigbird block_size = min(bigbird_block, window)
    peak_scale: float = 8.0  # "peaked" regime: q multiplied by this
    input_scale: float = 1.0  # q and k multiplied by this in every regime (the Performer's convergence knob)
    heads: int = 2  # H, attention heads
    head_dim: int = 32  # D, dims per head
    dtype: str = "float64"  # float64: the error is the approximation's alone, not rounding
    threads: int = 1  # torch threads per worker child
    jobs: int = 2  # worker processes at once (each with `threads` threads)
    time_cap_s: float = 300.0  # seconds one case may run before its child is killed (status timeout)

    def validate(self) -> None:
        """Raise ConfigError on the first problem, in one line."""
        super().validate()
        self._validate_names()
        self._validate_grids()
        self._validate_scalars()

    def _validate_names(self) -> None:
        for name in self.variants:
            try:
                variants.get(name)
            except variants.UnknownVariantError as exc:
                raise ConfigError(str(exc)) from None
        unknown = sorted(set(self.regimes) - set(REGIMES))
        if unknown or not self.regimes:
            raise ConfigError(f"unknown or no regime(s) {', '.join(unknown)}; known: {', '.join(REGIMES)}")
        unknown = sorted(set(self.linformer_inits) - set(LINFORMER_INITS))
        if unknown:
            raise ConfigError(f"unknown linformer init(s) {', '.join(unknown)}; known: {', '.join(LINFORMER_INITS)}")

    def _validate_grids(self) -> None:
        for label in ("seq_lens", "budgets", "pinv_iters"):
            values = getattr(self, label)
            if not values or any(v < 1 for v in values):
                raise ConfigError(f"--{label.replace('_', '-')} must be positive, got {values}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError(f"--seeds must be >= 0, got {self.seeds}")
        short = [t for t in self.seq_lens if t < min(self.budgets)]
        if short:  # budgets above T are skipped per T (r = T is added), so none of those asked for would run
            raise ConfigError(f"--budgets={','.join(map(str, self.budgets))} all exceed T={short[0]} (a window, "
                              f"rank or landmark count is at most T); add budgets <= {short[0]} or drop that length")

    def _validate_scalars(self) -> None:
        for label in ("max_landmarks", "bigbird_block", "jobs", "scale_budget", "full_budget_max_t"):
            if getattr(self, label) < 1:
                raise ConfigError(f"--{label.replace('_', '-')} must be >= 1")
        for label in ("peak_scale", "input_scale", "p_error_max_flops"):
            if not getattr(self, label) > 0:
                raise ConfigError(f"--{label.replace('_', '-')} must be > 0")
        if any(not s > 0 for s in self.scales):
            raise ConfigError(f"--scales must be > 0, got {self.scales}")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds)


PROFILES = {
    # three budgets and the r = T limit at the shorter T only keep five seeds near the old run time
    "quick": Config(budgets=(8, 64, 512), full_budget_max_t=256),
    "full": Config(seq_lens=(256, 1024, 4096), seeds=(0, 1, 2, 3, 4), time_cap_s=900.0),
}


# ------------------------------------------------------------------------------------------------------ the grid

def selected_variants(cfg: Config) -> tuple[str, ...]:
    """cfg.variants, or every registered variant that is not exact."""
    return cfg.variants or tuple(n for n in variants.names() if not variants.get(n).spec.exact)


def budget_name(variant: str) -> str | None:
    """The variant parameter the budget sets; None for budgetless (exact, linear_elu, or not in BUDGET_PARAM)."""
    return BUDGET_PARAM.get(variant)


def budget_grid(cfg: Config, variant: str, T: int) -> list[int | None]:
    """Budgets to run at length T: cfg.budgets ∩ [1, T] plus T itself (T <= full_budget_max_t); [None] for a
    budgetless variant."""
    param = budget_name(variant)
    if param is None:
        return [None]
    cap = min(T, cfg.max_landmarks) if param == "landmarks" else T
    full = (T,) if T <= cfg.full_budget_max_t else ()
    return sorted({r for r in (*cfg.budgets, *full) if r <= cap})


def _nystrom_extra(cfg: Config, T: int, budget: int | None) -> list[dict[str, Any]]:
    extra = [{"pinv": "iterative", "pinv_iters": n} for n in sorted(set(cfg.pinv_iters))]
    return extra + ([{"pinv": "exact"}] if cfg.exact_pinv else [])


def _bigbird_extra(cfg: Config, T: int, budget: int | None) -> list[dict[str, Any]]:
    return [{"block_size": min(cfg.bigbird_block, budget)}]


def _linformer_extra(cfg: Config, T: int, budget: int | None) -> list[dict[str, Any]]:
    return [{"init": init} for init in LINFORMER_INITS if init in cfg.linformer_inits]


# Per-variant extra case keys, one dict per case to yield (keys named after the variant's params, or "init").
EXTRA_PARAMS: dict[str, Callable[[Config, int, int | None], list[dict[str, Any]]]] = {
    "low_rank_nystrom": _nystrom_extra,
    "sparse_bigbird": _bigbird_extra,
    "low_rank_linformer": _linformer_extra,
}


def extra_params(cfg: Config, variant: str, T: int, budget: int | None) -> list[dict[str, Any]]:
    """The extra-key dicts for one (variant, T, budget): [{}] for a variant without extras."""
    fn = EXTRA_PARAMS.get(variant)
    return [{}] if fn is None else fn(cfg, T, budget)


def _variant_cases(cfg: Config, T: int, name: str, budgets: list[int | None], drawn_only: bool = False):
    """(budget, extra) for one variant at T; ``drawn_only`` leaves the labelled ablations out."""
    for budget in budgets:
        for extra in extra_params(cfg, name, T, budget):
            if not (drawn_only and configuration(extra)[1]):
                yield budget, extra


def scale_budget(cfg: Config, variant: str, T: int) -> list[int | None]:
    """The budget of the input-scale sweep: cfg.scale_budget (capped at T); [None] for a budgetless variant."""
    return [None] if budget_name(variant) is None else [min(cfg.scale_budget, T)]


def cases(cfg: Config) -> Iterator[Case]:
    """One Case per (T, regime, seed, variant, budget[, pinv | init]), shortest T first; then the input-scale
    sweep at the largest T (regime "scale": q and k times s, the drawn configurations at ``scale_budget``, P̂ not
    formed)."""
    shape = dict(B=cfg.batch, H=cfg.heads, D=cfg.head_dim, dtype=cfg.dtype, device=cfg.device, threads=cfg.threads,
                 p_error_max_flops=cfg.p_error_max_flops)
    for T in sorted(set(cfg.seq_lens)):
        for regime in cfg.regimes:
            q_scale = cfg.input_scale * (cfg.peak_scale if regime == "peaked" else 1.0)
            for seed in cfg.seeds:
                for name in selected_variants(cfg):
                    for budget, extra in _variant_cases(cfg, T, name, budget_grid(cfg, name, T)):
                        yield Case.make(NAME, variant=name, T=T, budget=budget, regime=regime, seed=seed,
                                        q_scale=q_scale, k_scale=cfg.input_scale, **shape, **extra)
    T = max(cfg.seq_lens)
    for scale in sorted(set(cfg.scales)):
        for seed in cfg.seeds:
            for name in selected_variants(cfg):
                for budget, extra in _variant_cases(cfg, T, name, scale_budget(cfg, name, T), drawn_only=True):
                    yield Case.make(NAME, variant=name, T=T, budget=budget, regime=SCALE_REGIME, seed=seed,
                                    q_scale=scale, k_scale=scale, **{**shape, "p_error_max_flops": 0}, **extra)


def configuration(keys: dict[str, Any]) -> tuple[str, bool]:
    """(label, ablation?) of a case's configuration: "published" unless a pinv or init key says otherwise."""
    for key in ("pinv", "init"):
        if keys.get(key) is not None:
            return CONFIGS[key, keys[key]]
    return "published", False


# ------------------------------------------------------------------------------------------------- measurement

def make_inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, H, T, D) i.i.d. N(0, 1) from the case seed, q and k scaled by ``q_scale``, ``k_scale``; in the
    case dtype and device."""
    gen = torch.Generator().manual_seed(case["seed"])
    shape = (case["B"], case["H"], case["T"], case["D"])
    q, k, v = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3))
    dev, dtype = resolve_device(case["device"]), DTYPES[case["dtype"]]
    return (q * case["q_scale"]).to(dev, dtype), (k * case["k_scale"]).to(dev, dtype), v.to(dev, dtype)


def attention_stats(q: torch.Tensor, k: torch.Tensor, chunk: int = 512) -> dict[str, float]:
    """Mean row entropy (nats) and mean row max-probability of exact softmax(qkᵀ/√D), float64, query chunks; and
    the logit scale mean‖q‖·mean‖k‖/√D (the largest logit two typical tokens can make: a trained model's own
    ‖q‖, ‖k‖ place it on this axis)."""
    kd = k.double().transpose(-2, -1)  # (B, H, D, T)
    ent, pmax = 0.0, 0.0
    for start in range(0, q.shape[-2], chunk):
        scores = q[..., start:start + chunk, :].double() @ kd / math.sqrt(q.shape[-1])  # (B, H, c, T)
        logp = scores.log_softmax(dim=-1)
        p = logp.exp()
        ent += float(-(p * logp).sum(dim=-1).sum())
        pmax += float(p.amax(dim=-1).sum())
    rows = q.numel() // q.shape[-1]
    norms = [float(x.double().norm(dim=-1).mean()) for x in (q, k)]
    return {"ref_entropy": ent / rows, "ref_max_prob": pmax / rows,
            "logit_scale": norms[0] * norms[1] / math.sqrt(q.shape[-1])}


def variant_params(case: Case) -> dict[str, Any]:
    """The variant's constructor params: its budget, then any case key named after one of its params (seed,
    pinv_iters, block_size), so variant randomness follows the case seed."""
    spec = variants.get(case["variant"]).spec
    params = {key: case[key] for key in spec.default_params if case.get(key) is not None}
    param = budget_name(case["variant"])
    if param is not None:
        params[param] = case["budget"]
    return params


def build(case: Case) -> variants.Attention:
    """The variant for this case, on the case device and dtype; Nyström's exact-pinv ablation is its unregistered
    subclass; random parts (Linformer's normal E, F) drawn from the case seed."""
    name = case["variant"]
    if not variants.get(name).spec.exact and name not in BUDGET_PARAM:
        raise NotImplementedError(f"{NAME}: no budget parameter known for {name}; add it to BUDGET_PARAM")
    cls = metrics.ExactPinvNystrom if case.get("pinv") == "exact" else variants.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case["seed"])
        attn = cls(d_head=case["D"], n_heads=case["H"], causal=False, max_seq_len=case["T"], **variant_params(case))
    return attn.to(device=resolve_device(case["device"]), dtype=DTYPES[case["dtype"]])


def set_projections_(attn: variants.Attention, case: Case, qkv, ref: torch.Tensor) -> None:
    """Linformer's training-free E, F: pooled, or fitted to these inputs; "normal" keeps the seeded init."""
    if case.get("init") == "pooled":
        metrics.pool_projections_(attn, case["T"])
    elif case.get("init") == "fitted":
        metrics.fit_projections_(attn, *qkv, ref)


def attended_fraction(attn: variants.Attention, T: int) -> float | None:
    """Fraction of the T×T (query, key) pairs a sparse variant attends to; None for dense-support variants."""
    pattern = getattr(attn, "pattern", None)
    return None if pattern is None else float(pattern(T).double().mean())


def exactness(case: Case) -> dict[str, Any]:
    """The budget where theory says the variant is exact (None: never) and whether this case reaches it."""
    limit = EXACT_LIMIT.get(case["variant"], lambda c: None)(case)
    exact = variants.get(case["variant"]).spec.exact
    reached = exact or (limit is not None and case["budget"] is not None and case["budget"] >= limit)
    return {"exact_limit": limit, "at_exact_limit": bool(reached)}


def matrix_metrics(attn: variants.Attention, case: Case, q: torch.Tensor, k: torch.Tensor) -> dict[str, Any]:
    """P̂'s error and the uniform matrix's, where the T/D forwards that form P̂ cost at most p_error_max_flops;
    blank (None) elsewhere, so no point is ever estimated."""
    T, D = case["T"], case["D"]
    cost = -(-T // D) * attn.spec.analytic_flops(case["B"], case["H"], T, D, **attn.params)
    p = metrics.exact_matrix(q, k)
    out: dict[str, Any] = metrics.trivial_matrix_errors(p)
    if cost > case["p_error_max_flops"]:
        return {**out, "p_error": None, "p_tv": None}
    return {**out, **metrics.matrix_errors(metrics.effective_matrix(attn, q, k), p)}


def execute(case: Case) -> dict[str, Any]:
    """One forward of one variant against float64 exact attention on the same inputs, and the trivial outputs."""
    torch.set_num_threads(case["threads"])
    attn = build(case)
    q, k, v = make_inputs(case)
    with torch.no_grad():
        ref = variants.reference_attention(q.double(), k.double(), v.double())
        set_projections_(attn, case, (q, k, v), ref)
        row = {**metrics.output_errors(attn(q, k, v), ref, v), **metrics.trivial_errors(ref, v),
               **attention_stats(q, k), **matrix_metrics(attn, case, q, k)}
        row["attended_fraction"] = attended_fraction(attn, case["T"])
    row["config"], row["ablation"] = configuration(case.as_dict())
    row["budget_name"] = budget_name(case["variant"])
    return {**row, **exactness(case)}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=summary,
              metrics=("rel_error", "v_error", "max_abs_error", "ref_rms", "zeros_rel_error", "zeros_v_error",
                       "mean_v_rel_error", "mean_v_v_error", "p_error", "p_tv", "uniform_p_error", "uniform_p_tv",
                       "ref_entropy", "ref_max_prob", "logit_scale", "attended_fraction", "config", "ablation",
                       "budget_name", "exact_limit", "at_exact_limit"))
