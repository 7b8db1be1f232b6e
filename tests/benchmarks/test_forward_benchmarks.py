"""pytest-benchmark microbenchmarks: each variant's forward at one small T. Disabled in the normal test run
(``--benchmark-disable`` in pyproject's addopts); run them with::

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-autosave
    python -m pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:25%
"""
from __future__ import annotations

import pytest
import torch

import variants
from bench.measure import Shape, phase_callable

SHAPE = Shape(B=1, H=4, T=512, D=64)


@pytest.mark.parametrize("name", variants.names())
def test_forward(benchmark, name):
    torch.set_num_threads(2)
    fn = phase_callable(name, SHAPE, "forward")
    out = benchmark(fn)
    assert out.shape == (SHAPE.B, SHAPE.H, SHAPE.T, SHAPE.D)
