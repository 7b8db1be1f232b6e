"""Exact softmax attention: the O(T²) baselines every other variant is measured against.

Vaswani et al., "Attention Is All You Need" (2017, arXiv:1706.03762).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, combine_masks, register, softmax_map

VASWANI = Paper("Attention Is All You Need", 2017, "1706.03762")


def full_flops(B: int, H: int, T: int, D: int, *, causal: bool) -> int:
    """QKᵀ and P·V, each 2·T·T·D per head, causal or not: the math path computes the masked half and masks it
    (a kernel that skips it declares ``causal_skips_masked``)."""
    return 4 * B * H * T * T * D


def naive_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int) -> int:
    """Peak of one forward: the (B, H, T, T) scores and probabilities alive together at the softmax (2·S bytes).

    The scaled q (B·H·T·D) is freed before the softmax and the output (B·H·T·D) is written after the scores are
    freed, so neither adds to the peak. Causal adds the (T, T) bool allow-mask (T² bytes), alive at the softmax;
    its negation ``~mask`` lives only during the in-place ``masked_fill_``, before the probabilities exist.
    """
    S = B * H * T * T * elem_bytes
    if not causal:
        return 2 * S
    return 2 * S + T * T


def _flash_splits(T: int) -> tuple[int, int]:
    """Query and key block sizes of torch's CPU flash-attention kernel (``FlashAttentionKernel.cpp``)."""
    q_split = 256 if T >= 768 else 64 if T >= 192 else 32
    return min(q_split, T), min(512, T)


def sdpa_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int) -> int:
    """Fused CPU kernel: the (B, H, T, D) output, a log-sum-exp per query (B·H·T, accumulate type) and one
    scratch buffer per thread, each a (q_split × kv_split) score block, a running max and sum per query row and a
    (q_split × D) accumulator in the accumulate type (float32 for half inputs, which add a half copy of the score
    block). The scratch is O(1) in T; the threads are ``torch.get_num_threads()``, what the kernel uses when
    called now.
    """
    threads = torch.get_num_threads()
    acc = max(elem_bytes, 4)
    qs, ks = _flash_splits(T)
    scratch = (qs * ks + 2 * qs + qs * D) * acc + (qs * ks * elem_bytes if elem_bytes < 4 else 0)
    return B * H * T * D * elem_bytes + B * H * T * acc + threads * scratch


def exact_map(attn: Attention, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
    """The softmax weights, causal and padding masks applied: (B, H, T, T) (``Attention.effective_map``)."""
    return softmax_map(q, k, combine_masks(q.shape[-2], attn.causal, key_valid, q.device))


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
        causal_skips_masked=False,  # the (T, T) scores are computed, then masked
    )
    effective_map = torch.no_grad()(exact_map)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        # Scale q (T·D) rather than the scores (T²): one T×T buffer, not two, before the softmax.
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, H, T, D) -> (B, H, T, T)
        mask = combine_masks(q.shape[-2], self.causal, key_valid, q.device)
        if mask is not None:
            scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)  # in place: no third T×T buffer
        probs = scores.softmax(dim=-1)
        del scores
        return probs @ v  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)


@register
class SdpaAttention(Attention):
    """``torch.nn.functional.scaled_dot_product_attention``: torch picks the fused kernel for the device.

    Causal, the fused kernel skips the key blocks above the diagonal: it executes T(T+1)/2 of the T² products
    (``executed_flops``), where the math path that ``FlopCounterMode`` counts computes them all.

    Causal without padding uses ``is_causal`` (no mask tensor). Padding alone passes a (B, 1, 1, T) mask.
    Causal with padding must pass a combined (B, 1, T, T) boolean mask: O(T²) bytes, one byte per entry.
    """

    spec = AttentionSpec(
        name="full_sdpa", family="full", time_complexity="O(T²·D)", memory_complexity="O(T) fused",
        exact=True, supports_causal=True, supports_key_valid=True, paper=VASWANI,
        flops=full_flops, memory_bytes=sdpa_memory, time_exponent=2.0, memory_exponent=1.0,
        causal_skips_masked=True,  # the fused kernel skips key blocks above the diagonal (is_causal)
    )
    effective_map = torch.no_grad()(exact_map)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        if key_valid is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        mask = combine_masks(q.shape[-2], self.causal, key_valid, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
