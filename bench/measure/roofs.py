"""The machine's roof: achievable matmul FLOP/s, measured the same way as the cases, for achieved-FLOP/s ratios."""
from __future__ import annotations

from typing import Any

import torch

from bench.measure.timing import time_callable
from bench.measure.workload import DTYPES, resolve_device


def gemm_peak(threads: int, device: str = "cpu", n: int = 2048, dtype: str = "float32",
              min_run_time: float = 0.5) -> dict[str, float]:
    """Achievable matmul FLOP/s of this machine: an n×n×n GEMM timed the same way as the cases."""
    dev = resolve_device(device)
    a = torch.randn(n, n, device=dev).to(DTYPES[dtype])
    b = torch.randn(n, n, device=dev).to(DTYPES[dtype])
    t = time_callable(lambda: torch.mm(a, b), threads, min_run_time)
    return {"gemm_n": n, "gemm_median_s": t["median_s"], "gemm_peak_flops": 2 * n ** 3 / t["median_s"]}


def gemm_calibration(case: dict[str, Any]) -> dict[str, float]:
    """Worker target: the GEMM peak for a sweep's manifest (``"bench.measure:gemm_calibration"``)."""
    torch.set_num_threads(case["threads"])
    return gemm_peak(case["threads"], case["device"])
