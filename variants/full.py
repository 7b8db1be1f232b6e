"""Exact softmax attention: the O(T²) baselines every other variant is measured against.

Vaswani et al., "Attention Is All You Need" (2017, arXiv:1706.03762).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, combine_masks, register

VASWANI = Paper("Attention Is All You Need", 2017, "1706.03762")


def full_flops(B: int, H: int, T: int, D: int, causal: bool = False, **_: object) -> int:
    """QKᵀ and P·V, each 2·T·T·D per head; the causal half is computed and masked, not skipped."""
    return 4 * B * H * T * T * D


def naive_memory(B: int, H: int, T: int, D: int, causal: bool = False, elem_bytes: int = 4, **_: object) -> int:
    """The score matrix and the probability matrix are alive together at the softmax: 2·B·H·T² elements."""
    return 2 * B * H * T * T * elem_bytes


def sdpa_memory(B: int, H: int, T: int, D: int, causal: bool = False, elem_bytes: int = 4, **_: object) -> int:
    """Fused kernel: a float32 log-sum-exp and a running max per query; O(B·H·T). Blocks are O(1) in T."""
    return 2 * B * H * T * 4


@register
class NaiveAttention(Attention):
    """softmax(QKᵀ/√D)·V with the (B, H, T, T) matrix materialised on purpose: the O(T²) memory baseline.

    Masked entries are set to the dtype's most negative finite value rather than -inf, so a row with no valid
    key is uniform (finite) instead of NaN.
    """

    spec = AttentionSpec(
        name="full_naive", family="full", time_complexity="O(T²·D)", memory_complexity="O(T²)",
        exact=True, supports_causal=True, supports_key_valid=True, paper=VASWANI,
        flops=full_flops, memory_bytes=naive_memory, time_exponent=2.0, memory_exponent=2.0,
    )

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        # Scale q (T·D) rather than the scores (T²): one T×T buffer, not two, before the softmax.
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, H, T, D) -> (B, H, T, T)
        mask = combine_masks(q.shape[-2], self.causal, key_valid, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)
        del scores
        return probs @ v  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)


@register
class SdpaAttention(Attention):
    """``torch.nn.functional.scaled_dot_product_attention``: torch picks the fused kernel for the device.

    Causal without padding uses ``is_causal`` (no mask tensor). Padding alone passes a (B, 1, 1, T) mask.
    Causal with padding must pass a combined (B, 1, T, T) boolean mask: O(T²) bytes, one byte per entry.
    """

    spec = AttentionSpec(
        name="full_sdpa", family="full", time_complexity="O(T²·D)", memory_complexity="O(T) fused",
        exact=True, supports_causal=True, supports_key_valid=True, paper=VASWANI,
        flops=full_flops, memory_bytes=sdpa_memory, time_exponent=2.0, memory_exponent=1.0,
    )

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        if key_valid is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        mask = combine_masks(q.shape[-2], self.causal, key_valid, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
