"""Low-rank attention: the T×T softmax matrix is approximated through r ≪ T intermediate "keys".

- ``low_rank_linformer``: Wang et al., "Linformer: Self-Attention with Linear Complexity" (2020, arXiv:2006.04768).
- ``low_rank_nystrom``: Xiong et al., "Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention"
  (2021, arXiv:2102.03902).

Both are O(T·r·D) in time and O(T·r) in memory for a fixed budget r (``k`` projections / ``landmarks``), and
neither is causal: a projection or a segment mean over the whole sequence mixes the future into every query.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Attention, AttentionSpec, Paper, check_positive, register

LINFORMER = Paper("Linformer: Self-Attention with Linear Complexity", 2020, "2006.04768")
NYSTROMFORMER = Paper("Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention", 2021,
                      "2102.03902")


def _scores(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """a·bᵀ·scale, scaled in place so only one (…, Ta, Tb) buffer exists before the softmax."""
    return (a @ b.transpose(-2, -1)).mul_(scale)  # (…, Ta, D) @ (…, D, Tb) -> (…, Ta, Tb)


def _masked_softmax(scores: Tensor, allow: Tensor | None) -> Tensor:
    """Softmax over the last dim with a boolean allow-mask; rows with nothing allowed are all zeros.

    Consumes ``scores``: when no gradient is needed (the inference forward) the softmax is written over them, so
    one (…, Ta, Tb) buffer exists instead of two (the linformer and Nyströmformer forward peaks drop by a third).
    """
    inplace = not scores.requires_grad
    if allow is not None:
        scores = scores.masked_fill_(~allow, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, out=scores) if inplace else scores.softmax(dim=-1)
    if allow is None:
        return probs
    # zeroes the (uniform) rows that had no allowed entry; elsewhere a no-op
    return probs.mul_(allow) if inplace else probs * allow


def _zero_padding(x: Tensor, key_valid: Tensor | None) -> Tensor:
    """x with padded tokens set to 0 (masked_fill, so even inf/NaN padding cannot reach any output)."""
    if key_valid is None:
        return x
    return x.masked_fill(~key_valid[:, None, :, None], 0.0)  # (B, T) -> (B, 1, T, 1)


# ------------------------------------------------------------------------------------------------- Linformer

def linformer_flops(B: int, H: int, T: int, D: int, *, causal: bool, k: int) -> int:
    """E·K and F·V (2·k·T·D each), then Q·K'ᵀ and P·V' (2·T·k·D each): 8·B·H·T·k·D."""
    return 8 * B * H * T * k * D


def linformer_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, k: int) -> int:
    """Peak of one forward (inference, output included): K', V' (B·H·k·D each), the (B, H, T, k) scores with
    the softmax written over them (``_masked_softmax``) and the (B, H, T, D) output; ``_project`` copies
    neither k nor v. (Under autograd the softmax is out of place: one more (T, k) buffer, part of the
    forward+backward phase.)

    Without padding; with ``key_valid`` the zeroed copies of k and v add 2·B·H·T·D.
    """
    return (2 * B * H * k * D + B * H * T * k + B * H * T * D) * elem_bytes


def _project(E: Tensor, x: Tensor) -> Tensor:
    """E·x along the sequence for every (batch, head): (k, T) @ (B, H, T, D) -> (B, H, k, D), contiguous.

    One batched GEMM that reads E through a stride-0 batch dimension, so neither E nor x is copied, and the
    projections come out contiguous, so the two GEMMs after them read unit-stride rows (faster than one GEMM on a
    permuted copy of x: docs/variants.md).
    """
    B, H, T, D = x.shape
    out = torch.bmm(E.expand(B * H, *E.shape), x.reshape(B * H, T, D))  # (B·H, k, T) @ (B·H, T, D)
    return out.view(B, H, E.shape[0], D)


@register
class LinformerAttention(Attention):
    """Linformer (Wang et al. 2020, arXiv:2006.04768): softmax(Q·(E·K)ᵀ/√D)·(F·V).

    Learned projections E, F ∈ R^{k × max_seq_len} compress keys and values along the sequence, T → k; for a
    shorter input the first T columns are used (as in the authors' fairseq code). One (E, F) pair is shared
    across heads and batch: the paper's "headwise sharing" option (it also proposes key-value and layerwise
    sharing, not offered here). Init: i.i.d. N(0, 1/k), the Johnson–Lindenstrauss projection of the paper's
    Theorem 1 (the fairseq code uses Xavier-uniform instead). ``identity_projections_()`` sets E = F = I so that
    k = T gives exact attention (the exactness test).

    Padding: padded keys and values are zeroed before the projection, so their content cannot change any output;
    their positions still take part (a zero row of K' still enters the softmax), as in the paper, which has no
    notion of masking. Not causal: every compressed key mixes the whole sequence.
    """

    spec = AttentionSpec(
        name="low_rank_linformer", family="low_rank", time_complexity="O(T·k·D)", memory_complexity="O(T·k)",
        exact=False, supports_causal=False, supports_key_valid=True, paper=LINFORMER,
        flops=linformer_flops, memory_bytes=linformer_memory, default_params={"k": 64},
        time_exponent=1.0, memory_exponent=1.0, fixed_length=True,
    )

    def __init__(self, *, d_head: int, n_heads: int, causal: bool = False, max_seq_len: int, **params: object):
        super().__init__(d_head=d_head, n_heads=n_heads, causal=causal, max_seq_len=max_seq_len, **params)
        k = self.params["k"]
        check_positive(self.spec.name, k=k)
        self.E = nn.Parameter(torch.empty(k, max_seq_len))  # compresses keys:   (k, max_seq_len)
        self.F = nn.Parameter(torch.empty(k, max_seq_len))  # compresses values: (k, max_seq_len)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """E, F ~ N(0, 1/k) i.i.d. (the paper's Theorem 1)."""
        std = 1.0 / math.sqrt(self.params["k"])
        nn.init.normal_(self.E, mean=0.0, std=std)
        nn.init.normal_(self.F, mean=0.0, std=std)

    @torch.no_grad()
    def identity_projections_(self) -> "LinformerAttention":
        """Set E = F = I (k × max_seq_len, ones on the diagonal): for T = k the output is exact attention."""
        eye = torch.eye(*self.E.shape, dtype=self.E.dtype, device=self.E.device)
        self.E.copy_(eye)
        self.F.copy_(eye)
        return self

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        T = q.shape[-2]
        E = self.E[:, :T].to(q.dtype)  # (k, max_seq_len) -> (k, T)
        F = self.F[:, :T].to(q.dtype)
        k_proj = _project(E, _zero_padding(k, key_valid))  # (k, T) · (B, H, T, D) -> (B, H, k, D)
        v_proj = _project(F, _zero_padding(v, key_valid))
        probs = _masked_softmax(_scores(q, k_proj, 1.0 / math.sqrt(q.shape[-1])), None)  # (B, H, T, k)
        return probs @ v_proj  # (B, H, T, k) @ (B, H, k, D) -> (B, H, T, D)


# ----------------------------------------------------------------------------------------------- Nyströmformer

def _landmark_count(T: int, landmarks: int) -> int:
    """Landmarks actually used: at most one per token."""
    return min(landmarks, T)


def nystrom_flops(B: int, H: int, T: int, D: int, *, causal: bool, landmarks: int, pinv_iters: int) -> int:
    """Per (batch, head), with m = min(landmarks, T):

    Q·K̃ᵀ, Q̃·Kᵀ, (Q̃Kᵀ-kernel)·V, F·(A⁺·W): 2·T·m·D each; Q̃·K̃ᵀ and A⁺·W: 2·m²·D each;
    the pseudo-inverse: 4 (m × m)·(m × m) products per iteration, 8·m³ each iteration.
    """
    m = _landmark_count(T, landmarks)
    return B * H * (8 * T * m * D + 4 * m * m * D + 8 * pinv_iters * m ** 3)


def nystrom_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, landmarks: int,
                   pinv_iters: int) -> int:
    """Peak of one forward (inference, output included), per (batch, head): one (T × m) kernel with its softmax
    written over its scores (T·m), the (T, D) output, the two landmark sets and W = kernel·V and A⁺·W (4·m·D),
    and ~5 m × m matrices live in the pseudo-inverse iteration.

    Without padding; ``key_valid`` adds the zeroed copies of q and k (2·T·D). For bf16 inputs the m × m part is
    really held in fp32; with m ≪ T that is negligible and not modelled.
    """
    m = _landmark_count(T, landmarks)
    return B * H * (T * m + T * D + 4 * m * D + 5 * m * m) * elem_bytes


def segment_bounds(T: int, m: int) -> tuple[int, int, int]:
    """Split T tokens into m contiguous segments like ``numpy.array_split``: the first ``r = T mod m`` segments
    hold ``L + 1`` tokens, the other ``m - r`` hold ``L = T // m``. Returns (L, r, split) with split = r·(L+1)."""
    L, r = divmod(T, m)
    return L, r, r * (L + 1)


def segment_sums(x: Tensor, m: int, dtype: torch.dtype) -> Tensor:
    """Sum x over m contiguous (possibly uneven) segments of its dim -2, accumulated and returned in ``dtype``."""
    *lead, T, D = x.shape
    L, r, split = segment_bounds(T, m)
    long_part = x[..., :split, :].reshape(*lead, r, L + 1, D)  # (…, r·(L+1), D) -> (…, r, L+1, D)
    short_part = x[..., split:, :].reshape(*lead, m - r, L, D)  # (…, (m-r)·L, D) -> (…, m-r, L, D)
    return torch.cat([long_part.sum(-2, dtype=dtype), short_part.sum(-2, dtype=dtype)], dim=-2)  # (…, m, D)


def segment_means(x: Tensor, m: int, key_valid: Tensor | None, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """Landmarks: means of x (B, H, T, D) over m segments, over valid tokens only, in ``dtype``.

    Returns (means (B, H, m, D), landmark_valid (B, m) or None). A segment with no valid token has mean 0 and is
    marked invalid.
    """
    if key_valid is None:
        T = x.shape[-2]
        L, r, _ = segment_bounds(T, m)
        counts = torch.tensor([L + 1] * r + [L] * (m - r), dtype=dtype, device=x.device)  # (m,)
        return segment_sums(x, m, dtype) / counts[:, None], None
    counts = segment_sums(key_valid[:, None, :, None].to(dtype), m, dtype)  # (B, T) -> (B, 1, m, 1)
    means = segment_sums(_zero_padding(x, key_valid), m, dtype) / counts.clamp_min(1.0)
    return means, counts[:, 0, :, 0] > 0  # (B, 1, m, 1) -> (B, m)


def iterative_pinv(A: Tensor, iters: int) -> Tensor:
    """Moore–Penrose pseudo-inverse of a batch of square matrices by the paper's iteration (their Eq. 14, after
    Razavi et al. 2014): Z₀ = Aᵀ / (‖A‖₁·‖A‖∞),  Z ← ¼·Z·(13I − AZ·(15I − AZ·(7I − AZ))).

    The norms are per matrix, as in the paper (the authors' "original" code option takes one max over the whole
    batch, a more conservative start). A zero matrix gives Z = 0.
    """
    norm_1 = A.abs().sum(dim=-2).amax(dim=-1)  # max column sum: (…, m, m) -> (…)
    norm_inf = A.abs().sum(dim=-1).amax(dim=-1)  # max row sum
    Z = A.transpose(-2, -1) / (norm_1 * norm_inf).clamp_min(torch.finfo(A.dtype).tiny)[..., None, None]
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    for _ in range(iters):
        AZ = A @ Z
        Z = 0.25 * Z @ (13 * eye - AZ @ (15 * eye - AZ @ (7 * eye - AZ)))
    return Z


@register
class NystromAttention(Attention):
    """Nyströmformer (Xiong et al. 2021, arXiv:2102.03902): softmax(QKᵀ/√D) ≈ F·A⁺·B with m landmarks.

    Landmarks Q̃, K̃ are segment means of Q and K over m contiguous segments; F = softmax(Q·K̃ᵀ/√D) (T × m),
    A = softmax(Q̃·K̃ᵀ/√D) (m × m), B = softmax(Q̃·Kᵀ/√D) (m × T); A⁺ by ``iterative_pinv`` (``pinv_iters``
    steps). Computed as F·(A⁺·(B·V)), the cheapest association (the authors' code forms (F·A⁺)·(B·V)).

    Deviations from the paper and its code:
    - T need not be divisible by m: segments are uneven (``numpy.array_split`` sizes) and each mean divides by its
      own count; T < m uses m = T landmarks (one token each). The authors' code requires T divisible by m.
    - ``key_valid``: landmark means are over valid tokens only, padded keys are masked out of B, and a segment with
      no valid token is dropped (its row and column of A, its row of B, its column of F are zero, which equals
      Nyström on the remaining landmarks). Padding content cannot change any output.
    - The optional depthwise-convolution skip connection on V (``conv_kernel_size`` in their code) is a separate
      module there and is left out here: this is the pure Nyström approximation.
    - For half-precision inputs the m × m kernel A and its pseudo-inverse are computed in fp32; output has the
      input dtype.
    With landmarks = T every segment is one token, F = A = B is the exact softmax matrix, and F·A⁺·B = F: exact
    attention once the pseudo-inverse has converged.
    """

    spec = AttentionSpec(
        name="low_rank_nystrom", family="low_rank", time_complexity="O(T·m·D + m³)", memory_complexity="O(T·m)",
        exact=False, supports_causal=False, supports_key_valid=True, paper=NYSTROMFORMER,
        flops=nystrom_flops, memory_bytes=nystrom_memory, default_params={"landmarks": 64, "pinv_iters": 6},
        time_exponent=1.0, memory_exponent=1.0,
    )

    def __init__(self, *, d_head: int, n_heads: int, causal: bool = False, max_seq_len: int, **params: object):
        super().__init__(d_head=d_head, n_heads=n_heads, causal=causal, max_seq_len=max_seq_len, **params)
        check_positive(self.spec.name, landmarks=self.params["landmarks"], pinv_iters=self.params["pinv_iters"])

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        m = _landmark_count(q.shape[-2], self.params["landmarks"])
        scale = 1.0 / math.sqrt(q.shape[-1])
        inner = torch.float32 if q.element_size() < 4 else q.dtype  # the m × m work: at least fp32
        q_land, lm_valid = segment_means(q, m, key_valid, inner)  # (B, H, T, D) -> (B, H, m, D)
        k_land, _ = segment_means(k, m, key_valid, inner)
        w = self._landmark_values(q_land.to(q.dtype), k, v, key_valid, lm_valid, scale)  # (B, H, m, D)
        a_pinv = self._pinv(self._landmark_kernel(q_land, k_land, lm_valid, scale))  # (B, H, m, m)
        mid = (a_pinv @ w.to(inner)).to(q.dtype)  # (B, H, m, m) @ (B, H, m, D) -> (B, H, m, D)
        allow_f = None if lm_valid is None else lm_valid[:, None, None, :]  # (B, m) -> (B, 1, 1, m)
        f = _masked_softmax(_scores(q, k_land.to(q.dtype), scale), allow_f)  # (B, H, T, m)
        return f @ mid  # (B, H, T, m) @ (B, H, m, D) -> (B, H, T, D)

    def _pinv(self, A: Tensor) -> Tensor:
        """A⁺ by the paper's iteration, ``pinv_iters`` steps (a subclass may swap in another pseudo-inverse)."""
        return iterative_pinv(A, self.params["pinv_iters"])

    @staticmethod
    def _landmark_values(q_land: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None,
                         lm_valid: Tensor | None, scale: float) -> Tensor:
        """W = softmax(Q̃·Kᵀ/√D)·V, padded keys masked and dropped landmarks' rows zero: (B, H, m, D)."""
        allow = None
        if key_valid is not None:
            allow = lm_valid[:, None, :, None] & key_valid[:, None, None, :]  # (B, 1, m, T)
            v = _zero_padding(v, key_valid)  # a masked weight is exactly 0, but 0·NaN would still be NaN
        kernel = _masked_softmax(_scores(q_land, k, scale), allow)  # (B, H, m, D) @ (B, H, D, T) -> (B, H, m, T)
        return kernel @ v  # (B, H, m, T) @ (B, H, T, D) -> (B, H, m, D)

    @staticmethod
    def _landmark_kernel(q_land: Tensor, k_land: Tensor, lm_valid: Tensor | None, scale: float) -> Tensor:
        """A = softmax(Q̃·K̃ᵀ/√D) with dropped landmarks' rows and columns zero: (B, H, m, m)."""
        allow = None if lm_valid is None else lm_valid[:, None, :, None] & lm_valid[:, None, None, :]  # (B,1,m,m)
        return _masked_softmax(_scores(q_land, k_land, scale), allow)
