"""Peak memory, the one place that measures it: RSS on CPU, torch's allocation events, the CUDA allocator's peak.

- ``peak_bytes(fn)``: the resident-set high-water mark one call adds (Linux /proc; run it in a worker child:
  ``import torch`` alone is ~220 MiB of any other process).
- ``live_peak_bytes(fn)``: the most tensor bytes alive at once, from torch's allocation events (CPU).
- ``peak_memory(fn, device)``: the allocator's peak on CUDA, ``peak_bytes`` on CPU; ``min_peak`` and the worker
  target ``forward_peak`` are how the gate, the sweeps and asv read one forward's peak.
- ``ALLOCATOR_POLICY``: the glibc settings every worker child runs under, as data (why: docs/measurement.md).

No torch at import: ``bench.isolate`` imports this module in the parent and in the child before its caps.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from typing import Any, Callable, Iterator

_TRIM_THRESHOLD = 1 << 40  # 1 TiB: never give the top of the heap back to the OS on free()
PEAK_MMAP_THRESHOLD = 1 << 20  # during an RSS peak probe, allocations of 1 MiB or more get their own mmap
M_MMAP_THRESHOLD, M_MMAP_MAX = -3, -4  # glibc mallopt parameters
GLIBC_MMAP_MAX = 65536  # glibc's default mmap_max (DEFAULT_MMAP_MAX)
QUIET_KINETO = "6"  # KINETO_LOG_LEVEL above every level kineto logs at, its USDT start/stop lines included

ALLOCATOR_POLICY: dict[str, Any] = {
    "name": "glibc-retain-freed",
    "glibc_tunables": (f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={_TRIM_THRESHOLD}"
                       ":glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"),
    "mmap_max": 0,
    "trim_threshold_bytes": _TRIM_THRESHOLD,
    "tcache_count": 0,
    "mxfast": 0,
    "top_pad_bytes": "glibc default",
    "trim_between_cases": True,
    "peak_probe_mmap_threshold_bytes": PEAK_MMAP_THRESHOLD,
    "notes": "docs/measurement.md#the-allocator-policy",
}


def _status_bytes(key: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, VmSize, ...) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not found in /proc/self/status")


def rss_bytes() -> int:
    """This process's resident set size now."""
    return _status_bytes("VmRSS")


def hwm_bytes() -> int:
    """This process's resident-set high-water mark since start-up or the last ``reset_hwm()``."""
    return _status_bytes("VmHWM")


def address_space_bytes() -> int:
    """This process's virtual address-space size (what ``RLIMIT_AS`` limits)."""
    return _status_bytes("VmSize")


def release_free_memory() -> bool:
    """Give memory that malloc keeps for reuse back to the OS (``malloc_trim(0)``); False where not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def reset_hwm() -> None:
    """Reset VmHWM to the current RSS (writing 5 to /proc/self/clear_refs, Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


_mapped_depth = 0  # nesting depth of large_allocations_mapped(): only the outermost block restores the policy


@contextlib.contextmanager
def large_allocations_mapped(threshold: int = PEAK_MMAP_THRESHOLD) -> Iterator[bool]:
    """While the block runs, glibc serves allocations >= ``threshold`` with their own mmap (fresh pages, unmapped
    on free) instead of the worker's retained heap; the process's mmap_max (``process_mmap_max``) is restored when
    the outermost block exits, the threshold stays. Yields False, and changes nothing, where the C library is not
    glibc."""
    global _mapped_depth
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        yield False
        return
    if _mapped_depth == 0:
        mallopt(M_MMAP_THRESHOLD, threshold)  # an explicit threshold also stops glibc from raising it on free
        mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
    _mapped_depth += 1
    try:
        yield True
    finally:
        _mapped_depth -= 1
        if _mapped_depth == 0:
            mallopt(M_MMAP_MAX, process_mmap_max())


def process_mmap_max() -> int:
    """This process's mmap_max as it started: 0 in a worker child (``ALLOCATOR_POLICY``), glibc's default in any
    other process (a test run, asv, a user's script), which a probe must not leave without mmap."""
    tunables = os.environ.get("GLIBC_TUNABLES", "").split(":")
    return ALLOCATOR_POLICY["mmap_max"] if "glibc.malloc.mmap_max=0" in tunables else GLIBC_MMAP_MAX


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Call ``fn()`` and return ``(result, peak resident bytes it added)``.

    Collects Python garbage and frees retained heap first (``gc.collect``, ``malloc_trim``), resets the
    high-water mark, takes RSS as the baseline (inputs the caller built already are in it), calls ``fn`` with the
    cyclic collector paused and large allocations mapped, and returns VmHWM − baseline. Each step removes a
    dependence of the peak on the process's history (docs/measurement.md). Warm ``fn`` up once before probing:
    first-time code pages and lazily built tables would otherwise count as its memory.
    """
    gc.collect()
    release_free_memory()
    reset_hwm()
    baseline = rss_bytes()
    enabled = gc.isenabled()
    gc.disable()
    try:
        with large_allocations_mapped():
            result = fn()
    finally:
        if enabled:
            gc.enable()
    return result, hwm_bytes() - baseline


def cuda_peak_bytes(fn: Callable[[], Any], device) -> int:
    """Bytes one call of ``fn`` adds at its peak on a CUDA device: the caching allocator's peak statistics."""
    import torch

    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def peak_memory(fn: Callable[[], Any], device: str = "cpu") -> int:
    """Bytes one call of ``fn`` adds at its peak over what is already held (its inputs): the allocator's peak on
    CUDA, ``peak_bytes`` (this worker's RSS high-water mark) on CPU."""
    from bench.measure.workload import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return cuda_peak_bytes(fn, dev)
    return int(peak_bytes(fn)[1])


def min_peak(fn: Callable[[], Any], repeats: int, device: str = "cpu") -> int:
    """The least ``peak_memory`` of ``repeats`` calls (what noise remains only ever adds bytes). Call it inside
    ``large_allocations_mapped`` and after a warm-up call, as the gate does."""
    return min(peak_memory(fn, device) for _ in range(repeats))


def forward_peak(case: dict[str, Any]) -> dict[str, int]:
    """Worker target: the peak bytes one forward adds at ``case["shape"]`` (least of 3, warmed up, mapped)."""
    import torch

    from bench.measure.workload import phase_callable

    torch.set_num_threads(case["threads"])
    with large_allocations_mapped():
        fn = phase_callable(case["variant"], case["shape"], "forward")
        fn()
        return {"peak_bytes": min_peak(fn, 3, case["shape"].device)}


def live_peak_bytes(fn: Callable[[], Any]) -> int:
    """Most tensor bytes alive at once during one call of ``fn``, beyond those alive before it (CPU).

    Sums the allocation events of ``torch.profiler`` (``profile_memory``) in order. Unlike the RSS high-water mark
    this does not depend on how the heap is laid out, so it is the number to hold an analytic "bytes alive at the
    peak" model against; the RSS peak is what the process really takes. Memory that libraries allocate outside
    torch (MKL packing buffers) is not seen. Kineto's own log (a "profiler_start/stop" line per call on stderr) is
    silenced at its source unless the user set ``KINETO_LOG_LEVEL``.
    """
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", QUIET_KINETO)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


def live_bytes_metric(fn: Callable[[], Any], device: str = "cpu") -> dict[str, int]:
    """``{"peak_live_bytes": live_peak_bytes(fn)}`` on CPU; nothing on CUDA, whose ``peak_memory`` already is the
    allocator's live bytes. What the sweeps add to a row beside its RSS peak."""
    from bench.measure.workload import resolve_device

    return {"peak_live_bytes": live_peak_bytes(fn)} if resolve_device(device).type == "cpu" else {}
