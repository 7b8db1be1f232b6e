"""The limit itself: for each variant, the largest T whose forward fits a memory budget, and the largest T whose
forward fits a time budget.

Found by doubling from ``start_t`` then bisecting (on multiples of ``grid``) between the last T that fit and the
first that did not. Every probe runs in the isolated worker under a memory cap, so a probe that runs out of memory
is a row (status oom), never a crash of this process. The memory probe counts everything the case allocates: the
inputs q, k, v plus the forward's peak (on CPU from the RSS high-water mark, see ``bench.isolate``; on CUDA from
the caching allocator's statistics, see ``bench.measure.peak_memory``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

import variants
from bench.config import Case, ConfigError
from bench.measure import Shape, peak_memory, phase_callable, resolve_device, time_callable

NAME = "limits"
GiB = 1024 ** 3
BUDGETS = ("memory", "time")


@dataclass(frozen=True)
class Config:
    variants: tuple[str, ...] = ()
    budgets: tuple[str, ...] = BUDGETS
    batch: int = 1
    heads: int = 4
    head_dim: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 2
    causal: bool = False
    mem_budget_bytes: int = 4 * GiB
    time_budget_s: float = 0.25
    start_t: int = 1024
    max_t: int = 2 ** 22
    grid: int = 256
    bisect_steps: int = 4
    time_cap_s: float = 120.0
    seed: int = 0

    def validate(self) -> None:
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
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


PROFILES = {
    # time_cap_s bounds each probe: full_sdpa's O(T) memory search otherwise runs O(T²) forwards for minutes
    "quick": Config(mem_budget_bytes=1 * GiB, time_budget_s=0.1, bisect_steps=3, max_t=2 ** 20, time_cap_s=5.0),
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
        # a fits-or-not probe against the budget: a median of at least 3 calls and one re-round suffice (the
        # efficiency sweep's 5 calls and 4 rounds cost the quick limits run 40 s more, on probes far off budget)
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
    """What holds a case's inputs, read before and after building them: RSS on CPU (``bench.isolate``), the
    caching allocator's allocated bytes on CUDA."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.memory_allocated(dev)
    from bench.isolate import rss_bytes

    return rss_bytes


def search(probe: Callable[[int], bool], start: int, max_t: int, grid: int, steps: int) -> tuple[int | None, int | None]:
    """(largest T that fit, smallest T that did not) by doubling, then bisection on multiples of ``grid``.

    (None, start-ish) when even the smallest probe failed; (max_t-ish, None) when the cap was never hit.
    """
    lo: int | None = None
    hi: int | None = None
    T = start
    if probe(T):
        lo = T
        while T * 2 <= max_t:
            T *= 2
            if not probe(T):
                hi = T
                break
            lo = T
    else:
        hi = T
        while T // 2 >= 1:
            T //= 2
            if probe(T):
                lo = T
                break
            hi = T
    if lo is None or hi is None:
        return lo, hi
    for _ in range(steps):
        mid = ((lo + hi) // 2 // grid) * grid
        if mid <= lo or mid >= hi:
            break
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def plan(cfg: Config) -> Iterator[tuple[str, str]]:
    for name in cfg.variants or tuple(variants.names()):
        for budget in cfg.budgets:
            yield name, budget


def _probe_fn(worker, writer, cfg: Config, variant: str, budget: str) -> Callable[[int], bool]:
    """A probe that runs one T in the worker, writes its row, and says whether it fit."""
    def probe(T: int) -> bool:
        case = probe_case(cfg, variant, budget, T)
        outcome = worker.run(f"{__name__}:execute", case, cfg.time_cap_s)
        writer.write(case, outcome)
        if outcome.status == "unsupported":
            raise NotImplementedError(outcome.error)
        fits = outcome.status == "ok" and bool(outcome.metrics.get("fits"))
        if not fits:
            why = "over budget" if outcome.status == "ok" else outcome.status
            probe.failures[T] = why  # type: ignore[attr-defined]
        return fits
    probe.failures = {}  # type: ignore[attr-defined]  # T -> why it did not fit: over budget | oom | timeout ...
    return probe


def run(cfg: Config, *, profile: str, out_dir: str = "results/runs", resume: bool = False):
    """Search every (variant, kind) in isolated workers; each probe and each found limit is a row.

    Memory probes run under a cap of 1.5× the memory budget (over-budget probes are measured, not killed, and a
    runaway one stops early); time probes under the Worker's default cap, or a time search would end on that
    memory cap instead of the time budget (on an H200 six of eight did, as ``oom``, before this split).
    """
    from bench import store
    from bench.isolate import Outcome, Worker
    from bench.run import _environment, seeds_of

    path = store.results_path(out_dir, NAME, profile, cfg.device)
    done = store.finished_case_ids(path) if resume else set()
    cap = int(cfg.mem_budget_bytes * 1.5)
    address_space = not cfg.device.startswith("cuda")
    with Worker(cfg.threads, cap, cap_address_space=address_space) as mem_worker, \
            Worker(cfg.threads, cap_address_space=address_space) as time_worker:
        workers = {"memory": mem_worker, "time": time_worker}
        record = store.manifest(sweep=NAME, profile=profile, device=cfg.device, config=cfg, seeds=seeds_of(cfg),
                                env=_environment(mem_worker, cfg.device),
                                extra={"mem_cap_bytes": cap, "time_probe_mem_cap_bytes": time_worker.mem_cap_bytes,
                                       "time_cap_s": cfg.time_cap_s})
        with store.RunWriter(path, record, resume=resume) as writer:
            for variant, budget in plan(cfg):
                result = limit_case(cfg, variant, budget)
                if result.id in done:
                    continue
                probe = _probe_fn(workers[budget], writer, cfg, variant, budget)
                try:
                    lo, hi = search(probe, cfg.start_t, cfg.max_t, cfg.grid, cfg.bisect_steps)
                except NotImplementedError as exc:
                    writer.write(result, Outcome("unsupported", error=str(exc)))
                    continue
                # A memory search can end on the time cap (an O(T²)-time, O(T)-memory kernel): then the memory
                # limit is only bounded below, and `min_fail_why` says so.
                writer.write(result, Outcome("ok", {"max_fit_t": lo, "min_fail_t": hi, "censored": hi is None,
                                                    "min_fail_why": probe.failures.get(hi, "")}))
    return path


def limit_case(cfg: Config, variant: str, budget: str) -> Case:
    """The row holding a found limit (T = 0 marks it apart from the probes: ``bench.analysis.limits.limit_rows``)."""
    return probe_case(cfg, variant, budget, 0)
