"""Every variant's analytic ``memory_bytes`` against the tensor bytes its forward really holds at its peak.

``bench.measure.live_peak_bytes`` sums torch's own allocation events, so the number does not depend on how the
glibc heap happens to be laid out (the RSS peak that the sweeps report does: a freed hole the next tensor does
not fit moves it by whole tensors between processes with different histories). The model is "bytes alive at the
peak, output included", so the two should agree closely; a model that forgets the output, or still describes an
engine that was rewritten, is off by 1.5× or more and fails here.
"""
from __future__ import annotations

import pytest
import torch

import variants
from bench.measure import Shape, live_peak_bytes, phase_callable

B, H, D = 1, 4, 64
LO, HI = 0.85, 1.15  # the sparse engines: one group buffer (<= 4 MiB) more or less than modelled

CASES = [(name, causal) for name in variants.names() for causal in (False, True)
         if not causal or variants.get(name).spec.supports_causal]


@pytest.mark.parametrize("T", [2048, 4096])
@pytest.mark.parametrize("name,causal", CASES)
def test_analytic_memory_matches_the_live_forward_peak(name, causal, T):
    shape = Shape(B, H, T, D, causal=causal)
    fn = phase_callable(name, shape, "forward")  # the sweep's forward: inference mode, inputs already made
    fn()  # lazily built layouts and tables are not the forward's memory
    live = live_peak_bytes(fn)
    spec = variants.get(name).spec
    analytic = spec.analytic_bytes(B, H, T, D, causal=causal, elem_bytes=4)
    ratio = live / analytic
    assert LO <= ratio <= HI, (f"{name} causal={causal} T={T}: live peak {live / 2**20:.2f} MiB, analytic "
                               f"{analytic / 2**20:.2f} MiB, ratio {ratio:.3f} not in [{LO}, {HI}]")


def test_live_peak_sees_a_known_allocation_and_nothing_freed_before():
    keep = torch.ones(1 << 20)  # alive before the call: not counted

    def fn():
        a = torch.empty(1 << 20)  # 4 MiB, freed before the next
        del a
        return torch.empty(2 << 20)  # 8 MiB, alive to the end: the peak

    assert live_peak_bytes(fn) == pytest.approx(8 << 20, rel=0.01)
    assert keep.numel() == 1 << 20
