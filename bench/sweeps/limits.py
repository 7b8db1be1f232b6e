"""The limit itself: for each variant, the largest T whose forward fits a memory budget, and the largest T whose
forward fits a time budget.

An adaptive sweep: ``plan`` searches each (variant, budget) by doubling from ``start_t`` then bisecting on
multiples of ``grid``; ``run_sweep`` runs each probe in a capped worker (an oom probe is a row, never a crash) and
writes each limit found as a ``kind="limit"`` record. The memory probe counts the inputs plus the forward's peak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Mapping

import torch

import variants
from bench.config import Case, ConfigError, MeasureConfig
from bench.isolate import default_mem_cap_bytes
from bench.outcome import Outcome
from bench.sweep import TIMING, Plan, Summary, Sweep, no_cases
from bench.analysis.limits import censored_why, censoring, summary
from bench.measure import Shape, peak_memory, phase_callable, resolve_device, time_callable

NAME = "limits"
GiB = 1024 ** 3
BUDGETS = ("memory", "time")


@dataclass(frozen=True)
class Config(MeasureConfig):
    variants: tuple[str, ...] = ()  # empty: every registered variant
    budgets: tuple[str, ...] = BUDGETS  # memory | time
    causal: bool = False  # causal attention (variants that cannot be causal are unsupported)
    mem_budget_bytes: int = 4 * GiB  # the memory budget: inputs plus the forward's peak
    time_budget_s: float = 0.25  # the time budget: the forward's median seconds
    start_t: int = 1024  # the first T probed
    max_t: int = 2 ** 22  # the search cap: a limit above it is censored
    grid: int = 256  # bisection stays on multiples of this
    bisect_steps: int = 4  # bisection steps after doubling found a bracket
    memory_time_cap_s: float = 600.0  # time cap of a memory probe: an O(T)-memory kernel is O(T²) time

    def validate(self) -> None:
        super().validate()
        for name in self.variants:
            variants.get(name)
        unknown = sorted(set(self.budgets) - set(BUDGETS))
        if unknown:
            raise ConfigError(f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(BUDGETS)}")
        if self.start_t < 1 or self.max_t < self.start_t:
            raise ConfigError(f"need 1 <= --start-t <= --max-t, got {self.start_t}, {self.max_t}")
        if self.mem_budget_bytes < 64 * 1024 ** 2:
            raise ConfigError(f"--mem-budget-bytes={self.mem_budget_bytes} is below the 64 MiB a case needs to run")
        if self.time_budget_s <= 0:
            raise ConfigError("--time-budget-s must be > 0")
        if not self.memory_time_cap_s > 0:
            raise ConfigError("--memory-time-cap-s must be > 0")


PROFILES = {
    # time_cap_s bounds each time probe; memory probes get memory_time_cap_s, so full_sdpa's O(T)-memory search
    # goes past the 5 s where it stopped before, until a probe's cap censors it (its 1 GiB limit is ~250k tokens,
    # minutes per forward)
    "quick": Config(mem_budget_bytes=1 * GiB, time_budget_s=0.1, bisect_steps=3, max_t=2 ** 20, time_cap_s=5.0,
                    memory_time_cap_s=30.0),
    "full": Config(),
}


def probe_case(cfg: Config, variant: str, budget: str, T: int) -> Case:
    return Case.make(NAME, variant=variant, budget=budget, T=T, B=cfg.batch, H=cfg.heads, D=cfg.head_dim,
                     dtype=cfg.dtype, device=cfg.device, threads=cfg.threads, causal=cfg.causal,
                     mem_budget_bytes=cfg.mem_budget_bytes, time_budget_s=cfg.time_budget_s, seed=cfg.seed)


def execute(case: Case) -> dict[str, Any]:
    """One probe, inside the worker: does T fit the budget of this kind?"""
    spec = variants.get(case["variant"]).spec
    if case["causal"] and not spec.supports_causal:
        raise NotImplementedError(f"{spec.name} does not support causal attention")
    torch.set_num_threads(case["threads"])
    shape = Shape(case["B"], case["H"], case["T"], case["D"], case["dtype"], case["device"], case["causal"])
    if case["budget"] == "time":
        # a fits-or-not probe against the budget: a median of at least 3 calls and one re-round suffice
        t = time_callable(phase_callable(case["variant"], shape, "forward", seed=case["seed"]), case["threads"],
                          min_run_time=0.05, min_repeats=3, max_rounds=2)
        return {**t, "fits": bool(t["median_s"] <= case["time_budget_s"])}
    held = allocated_bytes(shape.device)
    before = held()
    fn = phase_callable(case["variant"], shape, "forward", seed=case["seed"])
    inputs = held() - before
    extra = peak_memory(fn, shape.device)
    total = inputs + extra
    return {"input_bytes": inputs, "peak_bytes": extra, "total_bytes": total,
            "fits": bool(total <= case["mem_budget_bytes"])}


def allocated_bytes(device: str) -> Callable[[], int]:
    """What holds a case's inputs, read before and after building them: RSS on CPU (``bench.measure.probes``), the
    caching allocator's allocated bytes on CUDA."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.memory_allocated(dev)
    from bench.measure import rss_bytes

    return rss_bytes


def search_steps(start: int, max_t: int, grid: int, steps: int) -> Generator[int, bool, tuple[int | None, int | None]]:
    """Yields the T to probe next and receives whether it fit; returns (largest T that fit, smallest T that did
    not), by doubling from ``start``, then bisection on multiples of ``grid``.

    (None, start-ish) when even the smallest probe failed; (max_t-ish, None) when the cap was never hit.
    """
    lo: int | None = None
    hi: int | None = None
    T = start
    if (yield T):
        lo = T
        while T * 2 <= max_t:
            T *= 2
            if not (yield T):
                hi = T
                break
            lo = T
    else:
        hi = T
        while T // 2 >= 1:
            T //= 2
            if (yield T):
                lo = T
                break
            hi = T
    if lo is None or hi is None:
        return lo, hi
    for _ in range(steps):
        mid = ((lo + hi) // 2 // grid) * grid
        if mid <= lo or mid >= hi:
            break
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def search(probe: Callable[[int], bool], start: int, max_t: int, grid: int,
           steps: int) -> tuple[int | None, int | None]:
    """``search_steps`` driven by a ``probe(T) -> fits`` callable."""
    walk = search_steps(start, max_t, grid, steps)
    try:
        T = next(walk)
        while True:
            T = walk.send(probe(T))
    except StopIteration as stop:
        return stop.value


def pairs(cfg: Config) -> Iterator[tuple[str, str]]:
    for name in cfg.variants or tuple(variants.names()):
        for budget in cfg.budgets:
            yield name, budget


def limit_case(cfg: Config, variant: str, budget: str) -> Case:
    """The case of a found limit: a probe's params without T (written as a ``kind="limit"`` record)."""
    params = probe_case(cfg, variant, budget, 0).as_dict()
    del params["T"]
    return Case.make(NAME, **params)


def _search(cfg: Config, variant: str, budget: str) -> Plan:
    """One (variant, budget) search: yields its probes, then the limit found as a ``Summary``."""
    result, failures, fitted = limit_case(cfg, variant, budget), {}, []  # failures: T -> over budget | oom | ...
    walk = search_steps(cfg.start_t, cfg.max_t, cfg.grid, cfg.bisect_steps)
    T = next(walk)
    while True:
        outcome = yield probe_case(cfg, variant, budget, T)
        if outcome.status == "unsupported":
            yield Summary(result, Outcome("unsupported", error=outcome.error))
            return
        fits = outcome.status == "ok" and bool(outcome.metrics.get("fits"))
        if fits:
            fitted.append(T)
        else:
            failures[T] = "over budget" if outcome.status == "ok" else outcome.status
            if censoring(budget, failures[T]):  # the probe's cap, not the budget: no bracket to bisect
                yield Summary(result, Outcome("ok", {"max_fit_t": max(fitted, default=None), "min_fail_t": T,
                                                     "censored": True, "min_fail_why": censored_why(failures[T])}))
                return
        try:
            T = walk.send(fits)
        except StopIteration as stop:
            lo, hi = stop.value
            break
    yield Summary(result, Outcome("ok", {"max_fit_t": lo, "min_fail_t": hi, "censored": hi is None,
                                         "min_fail_why": failures.get(hi, "")}))


def plan(cfg: Config, done: Mapping[str, dict]) -> Plan:
    """Every (variant, budget) search whose limit is not in ``done`` yet, in turn."""
    for variant, budget in pairs(cfg):
        if limit_case(cfg, variant, budget).id not in done:
            yield from _search(cfg, variant, budget)


def mem_cap(cfg: Config, case: Case) -> int | None:
    """Memory probes run under 1.5× the memory budget (over-budget probes are measured, not killed, and a runaway
    one stops early); time probes under the default cap, or a time search would end on that cap instead of the
    time budget."""
    return int(cfg.mem_budget_bytes * 1.5) if case["budget"] == "memory" else cfg.mem_cap_bytes


def time_cap(cfg: Config, case: Case) -> float:
    """Memory probes run under ``memory_time_cap_s`` (an O(T)-memory, O(T²)-time kernel reaches its memory limit
    only after long forwards), time probes under ``time_cap_s``."""
    return cfg.memory_time_cap_s if case["budget"] == "memory" else cfg.time_cap_s


def manifest(cfg: Config) -> dict[str, Any]:
    """The probes' caps; a CUDA worker without one may use the whole GPU (``Worker.for_device``): None."""
    default = None if cfg.run_device.startswith("cuda") else default_mem_cap_bytes()
    time_cap = default if cfg.mem_cap_bytes is None else cfg.mem_cap_bytes
    return {"mem_cap_bytes": int(cfg.mem_budget_bytes * 1.5), "time_probe_mem_cap_bytes": time_cap,
            "memory_probe_time_cap_s": cfg.memory_time_cap_s}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=no_cases, execute=execute, plan=plan,
              metrics=(*TIMING, "fits", "input_bytes", "peak_bytes", "total_bytes", "max_fit_t", "min_fail_t",
                       "censored", "min_fail_why"),
              mem_cap=mem_cap, time_cap=time_cap, manifest=manifest, summarize=summary)
