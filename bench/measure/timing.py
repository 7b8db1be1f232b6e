"""Time with ``torch.utils.benchmark.Timer`` (explicit ``num_threads``; it synchronises CUDA itself).

``time_callable``: one cold first call beside the steady state (median, IQR, repeats of ``blocked_autorange``).
On a shared machine the same code measures ~25% apart from minute to minute, so compare two codes only side by
side: ``ratios_to`` / ``paired_ratios`` (per-round ratios) and ``interleaved_medians`` (rounds that visit every
function). Why each rule is what it is: docs/measurement.md.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch.utils.benchmark as tbench

STABLE_REL_IQR = 0.03  # a steady-state time is "stable" when its IQR is within 3% of its median
MAX_TIMING_ROUNDS = 6
MIN_TIMING_REPEATS = 5  # a median and an IQR need several blocks: a call slower than min_run_time/5 gets more time
MIN_STABLE_MEDIAN_S = 1e-3  # below 1 ms, timer and scheduler granularity dominate the spread: no re-rounds


def time_callable(fn: Callable[[], Any], threads: int, min_run_time: float = 0.2, *,
                  max_rel_iqr: float = STABLE_REL_IQR, max_rounds: int = MAX_TIMING_ROUNDS,
                  min_repeats: int = MIN_TIMING_REPEATS) -> dict[str, Any]:
    """First (cold) call, then steady state: median and IQR over ``blocked_autorange`` blocks, in seconds.

    The run time is at least ``min_repeats`` times the first call, so a slow case still gets several blocks. A
    round whose IQR/median exceeds ``max_rel_iqr`` is measured again, with the same run time, up to
    ``max_rounds`` rounds; the round with the smallest relative IQR is kept (``rounds``: how many were needed,
    ``stable``: whether the kept one meets the bound). Cases under 1 ms are measured once.
    """
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    first = timer.timeit(number=1).median
    best, rounds, run_time = None, 0, max(min_run_time, min_repeats * first)
    while rounds < max_rounds:
        m = timer.blocked_autorange(min_run_time=run_time)
        rounds += 1
        rel = m.iqr / m.median if m.median > 0 else math.inf
        if best is None or rel < best[0]:
            best = (rel, m)
        if rel <= max_rel_iqr or m.median < MIN_STABLE_MEDIAN_S:
            break
    rel, m = best
    return {"first_call_s": first, "median_s": m.median, "iqr_s": m.iqr, "repeats": len(m.times),
            "number_per_run": m.number_per_run, "block_times_s": [float(f"{t:.4g}") for t in m.times],
            "rounds": rounds, "stable": bool(rel <= max_rel_iqr)}


def calibrated_timer(fn: Callable[[], Any], threads: int, block_s: float) -> tuple[tbench.Timer, int]:
    """(Timer, number): how many calls of ``fn`` make one timing block of about ``block_s`` seconds (after one
    warm-up call)."""
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    timer.timeit(number=1)
    single = timer.timeit(number=1).median
    return timer, max(1, math.ceil(block_s / max(single, 1e-7)))


def ratios_to(reference: Callable[[], Any], fns: dict[Any, Callable[[], Any]], threads: int, block_s: float = 0.04,
              rounds: int = 15) -> dict[Any, list[float]]:
    """Per round and per fn, its seconds per call over the reference's, their blocks timed back to back (the fn
    first on even rounds, the reference first on odd ones); every round visits every fn.

    A block of each, side by side, sees the same machine state, so the per-round ratio cancels the drift of a
    shared machine; report the median of the rounds and their spread.
    """
    ref = calibrated_timer(reference, threads, block_s)
    timers = {key: calibrated_timer(fn, threads, block_s) for key, fn in fns.items()}
    ratios: dict[Any, list[float]] = {key: [] for key in fns}
    for r in range(rounds):
        for key, own in timers.items():
            first, second = (own, ref) if r % 2 == 0 else (ref, own)
            s1, s2 = (timer.timeit(number=number).median for timer, number in (first, second))
            ratios[key].append(s1 / s2 if r % 2 == 0 else s2 / s1)
    return ratios


def paired_ratios(fn_a: Callable[[], Any], fn_b: Callable[[], Any], threads: int, block_s: float = 0.04,
                  rounds: int = 15) -> list[float]:
    """Per round, seconds per call of ``fn_a`` over ``fn_b``, timed side by side (``ratios_to``)."""
    return ratios_to(fn_b, {"a": fn_a}, threads, block_s, rounds)["a"]


def interleaved_medians(fns: dict[Any, Callable[[], Any]], threads: int, block_s: float,
                        rounds: int) -> dict[Any, float]:
    """Median seconds per call of each fn, over ``rounds`` rounds that visit every fn once (order alternating)."""
    timers = {key: calibrated_timer(fn, threads, block_s) for key, fn in fns.items()}
    samples: dict[Any, list[float]] = {key: [] for key in fns}
    keys = list(fns)
    for r in range(rounds):
        for key in (keys if r % 2 == 0 else keys[::-1]):
            timer, number = timers[key]
            samples[key].append(timer.timeit(number=number).median)
    return {key: float(np.median(v)) for key, v in samples.items()}
