"""What an approximation is measured by, and the training-free configurations it is measured in.

Metrics (all float64): the output error relative to the exact output and normalised by ‖V‖, the same two for the
trivial outputs (zeros, the mean of v), and the attention-matrix error ‖P̂ − P‖_F/‖P‖_F with its mean row total
variation, against the uniform matrix as the trivial P. A variant is linear in v, so its effective attention
matrix P̂ is its output on the identity; ``effective_matrix`` feeds the identity's columns D at a time.

Configurations: Linformer's E, F mean-pooled or fitted to the inputs (its own E, F are learned parameters; random
ones scale the compressed keys by √(T/k)), and Nyström with an exact pseudo-inverse (the ablation of the
published 6-step iteration).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

import variants
from variants.low_rank import LinformerAttention, NystromAttention, segment_bounds


def _norm(x: Tensor) -> float:
    return float(x.double().norm())


def output_errors(out: Tensor, ref: Tensor, v: Tensor) -> dict[str, float]:
    """‖Ŷ−Y‖/‖Y‖ (``rel_error``), ‖Ŷ−Y‖/‖V‖ (``v_error``), the max absolute error and the exact output's RMS.

    ‖Y‖ is small when attention is diffuse (Y averages many v), so zeros score ``rel_error`` = 1; ‖V‖ does not
    shrink with the regime, so ``v_error`` compares variants on one scale across regimes.
    """
    diff = out.double() - ref.double()
    return {"rel_error": _norm(diff) / _norm(ref), "v_error": _norm(diff) / _norm(v),
            "max_abs_error": float(diff.abs().max()), "ref_rms": _norm(ref) / math.sqrt(ref.numel())}


def trivial_errors(ref: Tensor, v: Tensor) -> dict[str, float]:
    """The output errors of the two trivial outputs: zeros and the mean of v over the sequence (uniform P)."""
    mean_v = v.double().mean(dim=-2, keepdim=True).expand_as(ref)  # (B, H, 1, D) -> (B, H, T, D)
    gap = _norm(ref.double() - mean_v)
    return {"zeros_rel_error": 1.0, "zeros_v_error": _norm(ref) / _norm(v),
            "mean_v_rel_error": gap / _norm(ref), "mean_v_v_error": gap / _norm(v)}


def matrix_errors(p_hat: Tensor, p: Tensor) -> dict[str, float]:
    """‖P̂−P‖_F/‖P‖_F (``p_error``) and the mean over rows of ½·Σ_j |P̂_ij − P_ij| (``p_tv``, total variation)."""
    diff = p_hat.double() - p.double()
    return {"p_error": _norm(diff) / _norm(p), "p_tv": float(0.5 * diff.abs().sum(dim=-1).mean())}


def trivial_matrix_errors(p: Tensor) -> dict[str, float]:
    """``matrix_errors`` of the uniform matrix (the P of mean(v)); zeros would score ``p_error`` = 1."""
    uniform = torch.full_like(p, 1.0 / p.shape[-1], dtype=torch.float64)
    return {f"uniform_{key}": value for key, value in matrix_errors(uniform, p).items()}


def exact_matrix(q: Tensor, k: Tensor) -> Tensor:
    """softmax(q·kᵀ/√D) in float64: (B, H, T, T)."""
    return (q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)


def effective_matrix(attn: variants.Attention, q: Tensor, k: Tensor) -> Tensor:
    """The (B, H, T, T) matrix P̂ with attn(q, k, v) = P̂·v, from one forward whose batch holds the identity's
    columns D at a time (q, k repeated); the variant is linear in v, so this is exact. float64 result."""
    B, H, T, D = q.shape
    blocks = -(-T // D)
    eye = torch.eye(T, blocks * D, dtype=q.dtype, device=q.device)  # (T, blocks·D), zero-padded columns
    v = eye.view(T, blocks, D).permute(1, 0, 2)[:, None, None].expand(blocks, B, H, T, D)  # (blocks, B, H, T, D)
    rep = lambda x: x.expand(blocks, *x.shape).reshape(blocks * B, H, T, D)  # noqa: E731
    out = attn(rep(q), rep(k), v.reshape(blocks * B, H, T, D))  # (blocks·B, H, T, D)
    cols = out.view(blocks, B, H, T, D).permute(1, 2, 3, 0, 4).reshape(B, H, T, blocks * D)
    return cols[..., :T].double()


def pooling_matrix(k: int, T: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(k, T): row i averages the i-th of k contiguous segments (``numpy.array_split`` sizes); I when k = T."""
    L, r, _ = segment_bounds(T, k)
    sizes = torch.tensor([L + 1] * r + [L] * (k - r))
    rows = torch.repeat_interleave(torch.arange(k), sizes)  # segment of each token: (T,)
    pool = torch.zeros(k, T, dtype=dtype)
    pool[rows, torch.arange(T)] = 1.0 / sizes[rows].to(dtype)
    return pool


@torch.no_grad()
def pool_projections_(attn: LinformerAttention, T: int) -> LinformerAttention:
    """E = F = mean-pooling over k segments (first T columns): exact attention at k = T."""
    pool = pooling_matrix(attn.E.shape[0], T, attn.E.dtype)
    attn.E[:, :T].copy_(pool)
    attn.F[:, :T].copy_(pool)
    return attn


@torch.no_grad()
def fit_projections_(attn: LinformerAttention, q: Tensor, k: Tensor, v: Tensor, ref: Tensor) -> LinformerAttention:
    """E mean-pooling; F by least squares so that the output is closest to ``ref`` on these very inputs.

    With P̃ = softmax(q·(E·k)ᵀ/√D) (T × k per batch and head), the best compressed values are W = P̃⁺·ref; one F
    shared by every batch and head then solves F·[V₁ … V_BH] = [W₁ … W_BH] in least squares (exactly when
    T >= B·H·D). An in-sample fit: the best any learned F could do for these inputs with pooled keys.
    """
    B, H, T, D = q.shape
    pool_projections_(attn, T)
    E = attn.E[:, :T].double()
    p_tilde = (q.double() @ (E @ k.double()).transpose(-2, -1) / math.sqrt(D)).softmax(dim=-1)  # (B, H, T, k)
    W = torch.linalg.pinv(p_tilde) @ ref.double()  # (B, H, k, T) @ (B, H, T, D) -> (B, H, k, D)
    v_cat = v.double().permute(2, 0, 1, 3).reshape(T, B * H * D)  # (B, H, T, D) -> (T, B·H·D)
    w_cat = W.permute(2, 0, 1, 3).reshape(W.shape[2], B * H * D)  # (B, H, k, D) -> (k, B·H·D)
    attn.F[:, :T].copy_(w_cat @ torch.linalg.pinv(v_cat))  # (k, B·H·D) @ (B·H·D, T) -> (k, T)
    return attn


class ExactPinvNystrom(NystromAttention):
    """Nyström with the exact Moore–Penrose pseudo-inverse (SVD) in place of the paper's iteration: the
    ablation that shows what the 6-step iteration changes. Not registered: it is not a method of its own."""

    def _pinv(self, A: Tensor) -> Tensor:
        return torch.linalg.pinv(A)
