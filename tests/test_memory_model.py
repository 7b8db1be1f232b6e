"""Every variant's analytic ``memory_bytes`` against the measured peak of one forward, as the efficiency sweep
measures it: in an isolated worker child (``bench.isolate.Worker``, with its allocator policy), the RSS high-water
mark of one warmed-up ``inference_mode`` forward minus the RSS just before it (``bench.measure.peak_memory``)."""
from __future__ import annotations

import pytest

import variants
from bench.isolate import Worker

B, H, T, D = 1, 4, 4096, 64
LO, HI = 0.8, 1.25
THREADS = 2
TARGET = "test_memory_model:forward_peak"  # tests/ is on sys.path, which the worker child inherits

CASES = [(name, causal) for name in variants.names() for causal in (False, True)
         if not causal or variants.get(name).spec.supports_causal]


def forward_peak(case: dict) -> dict:
    """Worker target: the measured forward peak and the spec's bytes for one (variant, causal) at float32."""
    import torch

    from bench.measure import Shape, peak_memory, phase_callable

    torch.set_num_threads(case["threads"])
    shape = Shape(B, H, T, D, causal=case["causal"])
    fn = phase_callable(case["variant"], shape, "forward")
    for _ in range(3):  # warm up: lazy tables, memoised layouts and first-touch pages are not the forward's memory
        fn()
    spec = variants.get(case["variant"]).spec
    analytic = spec.memory_bytes(B, H, T, D, causal=case["causal"], elem_bytes=4, **spec.default_params)
    return {"peak_bytes": peak_memory(fn), "bytes_analytic": int(analytic)}


@pytest.fixture(scope="module")
def measured():
    """All cases in one worker, in the sweep's order (variant, then causal); {(name, causal): metrics}."""
    out = {}
    with Worker(threads=THREADS, mem_cap_bytes=4 << 30) as worker:
        for name, causal in CASES:
            res = worker.run(TARGET, {"variant": name, "causal": causal, "threads": THREADS}, timeout_s=120)
            assert res.status == "ok", f"{name} causal={causal}: {res.status} {res.error}"
            out[name, causal] = res.metrics
    return out


@pytest.mark.parametrize("name,causal", CASES)
def test_analytic_memory_matches_the_measured_forward_peak(measured, name, causal):
    m = measured[name, causal]
    ratio = m["peak_bytes"] / m["bytes_analytic"]
    assert LO <= ratio <= HI, (f"{name} causal={causal} T={T}: measured {m['peak_bytes'] / 2**20:.2f} MiB, "
                               f"analytic {m['bytes_analytic'] / 2**20:.2f} MiB, ratio {ratio:.3f} "
                               f"not in [{LO}, {HI}]")
