"""Test-only variants that impersonate ``linear_elu`` with one deliberate regression each (``--plugin``).

Importing this module registers them; the gate tests give each one linear_elu's baseline entry and expect the
gate to fail on exactly the metric the regression breaks (while honest linear_elu, measured alongside, passes).
"""
from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor

import variants
from variants.linear import EluLinearAttention


def impersonate(name: str):
    """Register the decorated subclass of EluLinearAttention under ``name`` with linear_elu's spec otherwise."""
    def wrap(cls):
        cls.spec = dataclasses.replace(EluLinearAttention.spec, name=name)
        return variants.register(cls)
    return wrap


@impersonate("linear_regress_quadratic")
class SecretlyQuadratic(EluLinearAttention):
    """Same output, but builds a dense (B, H, T, T) float mask first: O(T²) memory in an O(T) variant."""

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        B, H, T, _ = q.shape
        dense = torch.ones(B, H, T, T, dtype=q.dtype, device=q.device)  # (B, H, T, T): the regression
        out = super()._attend(q, k, v, key_valid)
        return out + 0.0 * dense[..., :1, :1]  # adds exactly 0: numerically identical to linear_elu


@impersonate("linear_regress_flops")
class DoubleWork(EluLinearAttention):
    """Computes the whole forward twice and keeps the second: 2× the matmul FLOPs, same output."""

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        super()._attend(q, k, v, key_valid)
        return super()._attend(q, k, v, key_valid)


@impersonate("linear_regress_slow")
class SleepsTwiceItsWork(EluLinearAttention):
    """Sleeps twice as long as its own forward took: 3× slower, same FLOPs, memory and output."""

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        start = time.perf_counter()
        out = super()._attend(q, k, v, key_valid)
        time.sleep(2.0 * (time.perf_counter() - start))
        return out


@impersonate("linear_regress_init")
class ShiftsTheSeed(EluLinearAttention):
    """Draws one random number at construction: every parameter built after it in the model is initialised
    differently, so the seeded training run (and its accuracy) changes; nothing else does."""

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        torch.randn(1)


NAMES = ("linear_regress_quadratic", "linear_regress_flops", "linear_regress_slow", "linear_regress_init")
