"""How one attention case is measured; the CLI sweeps, the gate and asv call the same functions.

- ``workload``: a case as a zero-argument function (``Shape``, ``phase_callable``, inputs, devices).
- ``timing``: ``torch.utils.benchmark.Timer`` helpers and side-by-side ratios.
- ``probes``: peak bytes (RSS, live tensor bytes, the CUDA allocator) and the allocator policy as data.
- ``flops``: ``FlopCounterMode`` counts. ``roofs``: the machine's GEMM peak.

``from bench.measure import X`` re-exports each public name, loaded on first use (PEP 562), so importing
``bench.measure.probes`` alone (as ``bench.isolate`` does, before a child's caps) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("workload", "timing", "probes", "flops", "roofs")
_EXPORTS = {
    "workload": ("PHASES", "DTYPES", "Shape", "resolve_device", "build_attention", "make_qkv", "phase_callable",
                 "train_step_callable", "log2_grid"),
    "timing": ("STABLE_REL_IQR", "MAX_TIMING_ROUNDS", "MIN_TIMING_REPEATS", "MIN_STABLE_MEDIAN_S",
               "time_callable", "calibrated_timer", "ratios_to", "paired_ratios", "interleaved_medians"),
    "probes": ("ALLOCATOR_POLICY", "rss_bytes", "hwm_bytes", "address_space_bytes", "release_free_memory",
               "reset_hwm", "large_allocations_mapped", "process_mmap_max", "peak_bytes", "cuda_peak_bytes",
               "peak_memory", "min_peak", "forward_peak", "live_peak_bytes", "live_bytes_metric"),
    "flops": ("counted_flops",),
    "roofs": ("gemm_peak", "gemm_calibration"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME) | set(_SUBMODULES))
