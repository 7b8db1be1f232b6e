"""The shared core of kernelised (linear) attention, written once for linear_elu and linear_performer:
- non-causal: ``KV = φ(K)ᵀV`` and ``z = Σφ(K)``, then ``φ(Q)·KV / (φ(Q)·z + eps)``, O(T·F·D) time, O(T) memory;
- causal, chunked: within a chunk of c tokens the small masked ``tril(φ(Q_c)φ(K_c)ᵀ)·[V_c | 1]``; across chunks a
  running (F, D+1) state. No (T, F, D) cumulative tensor and no (T, T) matrix is ever built.

Causal V is augmented with a ones column, so the normaliser rides along in the chunk's matmuls (column D of the
result) and each chunk costs the same few calls. Non-causal keeps V as it is: its two big GEMMs then run on
64-wide operands instead of 65-wide ones (faster: docs/variants.md), and every T-sized tensor is (T, F) or
(T, D). Padded keys (``key_valid`` False) get φ(K) = 0 and V = 0, so padding content cannot reach the real
tokens. Half-precision inputs are computed in float32 (running sums of features lose too much in bf16) and cast
back; float32 and float64 run in their own dtype.

Causal FAVOR+ keys arrive with their own shifts and go through ``prefix_max_attention``, which re-weighs them by
the running max of those shifts, so a key never depends on a later one.
"""
from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the input dtype otherwise."""
    return torch.promote_types(dtype, torch.float32)


def masked_values(v: Tensor, key_valid: Tensor | None, dtype: torch.dtype) -> Tensor:
    """V in ``dtype``, rows of padded keys zeroed (so even inf/NaN padding cannot leak through 0·inf)."""
    v = v.to(dtype)
    if key_valid is not None:
        v = torch.where(key_valid[:, None, :, None], v, torch.zeros((), dtype=dtype, device=v.device))
    return v


def augment_values(v: Tensor) -> Tensor:
    """[V | 1]: (B, H, T, D) -> (B, H, T, D+1); padded rows of V must already be 0 (``masked_values``)."""
    return torch.cat([v, torch.ones(v.shape[:-1] + (1,), dtype=v.dtype, device=v.device)], dim=-1)


class _KeyValueSummary(torch.autograd.Function):
    """(φ(K)ᵀV, Σ_t φ(K)), with a backward that writes both input gradients as contiguous (T, ·) tensors.

    Autograd's own backward of ``phi_k.transpose(-2, -1) @ v`` computes the gradient of the transposed operand,
    (F, T), and hands φ(K) its transpose: a view with stride T along the features, which the feature map's
    backward then reads element by element across pages, a read that slows down faster than T grows
    (docs/variants.md). The key sum's gradient is added in place into φ(K)'s, so it costs no (T, F) buffer of
    its own.
    """

    @staticmethod
    def forward(ctx, phi_k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(phi_k, v)
        kv = phi_k.transpose(-2, -1) @ v  # (B, H, F, T) @ (B, H, T, D) -> (B, H, F, D)
        return kv, phi_k.sum(dim=-2)  # (B, H, F)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_kv: Tensor, grad_z: Tensor) -> tuple[Tensor | None, Tensor | None]:
        phi_k, v = ctx.saved_tensors
        grad_phi_k = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_phi_k = (v @ grad_kv.transpose(-2, -1)).add_(grad_z.unsqueeze(-2))  # (B, H, T, F)
        if ctx.needs_input_grad[1]:
            grad_v = phi_k @ grad_kv  # (B, H, T, D)
        return grad_phi_k, grad_v


class _QueryReadout(torch.autograd.Function):
    """φ(Q)·KV / (φ(Q)·z + eps), with a backward whose gradients are contiguous and need no (T, F) temporary.

    The denominator is computed as zᵀ·φ(Q)ᵀ, one row per head: a GEMM with M = 1 is much faster than φ(Q)·z with
    N = 1, and 64-wide value GEMMs beat 65-wide ones ([V | 1]). Left to autograd, that transposed product would
    hand φ(Q) a transposed gradient again (see ``_KeyValueSummary``). Here the backward is written out:
    with d = φ(Q)·z + eps and out = (φ(Q)·KV)/d,
    ∂φ(Q) = (g/d)·KVᵀ + (−Σ_D g·out / d)·zᵀ, ∂KV = φ(Q)ᵀ·(g/d), ∂z = φ(Q)ᵀ·(−Σ_D g·out / d).
    The output is the numerator divided in place, so the forward holds one (T, D) buffer and a (T, 1) one.
    """

    @staticmethod
    def forward(ctx, phi_q: Tensor, kv: Tensor, z: Tensor, eps: float) -> Tensor:
        num = phi_q @ kv  # (B, H, T, F) @ (B, H, F, D) -> (B, H, T, D)
        den = z.unsqueeze(-2) @ phi_q.transpose(-2, -1)  # (B, H, 1, F) @ (B, H, F, T) -> (B, H, 1, T)
        den = den.transpose(-2, -1).add_(eps)  # -> (B, H, T, 1)
        out = num.div_(den)
        ctx.save_for_backward(phi_q, kv, z, out, den)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        phi_q, kv, z, out, den = ctx.saved_tensors
        grad_num = grad / den  # (B, H, T, D)
        grad_den = (grad * out).sum(dim=-1, keepdim=True).div_(den).neg_()  # (B, H, T, 1)
        grad_phi_q = grad_kv = grad_z = None
        if ctx.needs_input_grad[0]:
            grad_phi_q = (grad_num @ kv.transpose(-2, -1)).addcmul_(grad_den, z.unsqueeze(-2))  # (B, H, T, F)
        if ctx.needs_input_grad[1]:
            grad_kv = phi_q.transpose(-2, -1) @ grad_num  # (B, H, F, D)
        if ctx.needs_input_grad[2]:
            grad_z = (grad_den.transpose(-2, -1) @ phi_q).squeeze(-2)  # (B, H, 1, T) @ (B, H, T, F) -> (B, H, F)
        return grad_phi_q, grad_kv, grad_z, None


def linear_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, eps: float) -> Tensor:
    """Non-causal: φ(Q)·(φ(K)ᵀV) / (φ(Q)·Σφ(K) + eps); per head two matmuls of 2·T·F·D FLOPs and one of 2·T·F."""
    kv, z = _KeyValueSummary.apply(phi_k, v)  # (B, H, F, D), (B, H, F)
    return _QueryReadout.apply(phi_q, kv, z, eps)  # (B, H, T, D)


def causal_linear_attention(phi_q: Tensor, phi_k: Tensor, v_aug: Tensor, chunk_size: int) -> Tensor:
    """Causal, chunked prefix sums: O(T·c·(F+E) + T·F·E) time, O(T + c² + F·E) memory per head.

    Katharopoulos et al. write the causal case as a cumulative sum of (F, E) outer products (an RNN); we process
    c tokens at a time so the work is matmuls: the masked c×c block inside a chunk, the running state for all
    earlier chunks. The state of the last chunk is updated too (unused), keeping every chunk's work identical.
    """
    B, H, T, Fdim = phi_q.shape
    state = v_aug.new_zeros(B, H, Fdim, v_aug.shape[-1])  # Σ_{j < chunk start} φ(k_j)ᵀ[v_j | 1]
    chunks = []
    for q_c, k_c, v_c in zip(*(x.split(chunk_size, dim=-2) for x in (phi_q, phi_k, v_aug))):
        scores = torch.tril(q_c @ k_c.transpose(-2, -1))  # (B, H, L, F) @ (B, H, F, L) -> (B, H, L, L)
        chunks.append(scores @ v_c + q_c @ state)  # (B, H, L, L)@(L, E) + (B, H, L, F)@(F, E) -> (B, H, L, E)
        state = state + k_c.transpose(-2, -1) @ v_c  # (B, H, F, L) @ (B, H, L, E) -> (B, H, F, E)
    # split and cat, not per-chunk slicing and slice assignment: under autograd each ``x[sl]`` backward builds a
    # zero (T, F) gradient and each ``out[sl] = …`` copies the whole (T, E) one, O(T²/c) in all; split's and
    # cat's backwards touch every element once.
    return torch.cat(chunks, dim=-2)


def _decay(later: Tensor, earlier: Tensor) -> Tensor:
    """exp(earlier − later), <= 1 where earlier <= later; 0 where both are −inf (only padded keys so far)."""
    return torch.exp(earlier - later).nan_to_num_(nan=0.0)


def prefix_max_attention(phi_q: Tensor, phi_k: Tensor, v_aug: Tensor, shift: Tensor, chunk_size: int) -> Tensor:
    """``causal_linear_attention`` for keys stored as φ(k_j)·exp(−m_j) with their own shifts m (B, H, T).

    Query i weighs key j <= i by exp(m_j − M_i), M_i = max_{j<=i} m_j: every factor is <= 1 and the largest is 1,
    so nothing overflows, and out_i depends on keys j <= i only, exactly (M_i is a row constant: it cancels in the
    normalised output). Within a chunk the factors are a masked (c, c) matrix; across chunks the running state is
    kept relative to the max so far and rescaled when it grows, as in online softmax. Same matmuls as the plain
    core; the factors are element-wise.
    """
    B, H, T, Fdim = phi_q.shape
    running = shift.cummax(dim=-1).values  # M_i: (B, H, T)
    state = v_aug.new_zeros(B, H, Fdim, v_aug.shape[-1])  # Σ_{j < chunk start} φ(k_j)ᵀ[v_j | 1]·exp(m_j − M_prev)
    before = shift.new_full((B, H, 1), float("-inf"))  # M_prev: the running max at the chunk's start
    chunks = []
    for q_c, k_c, v_c, m_c, r_c in zip(*(x.split(chunk_size, dim=-2) for x in (phi_q, phi_k, v_aug)),
                                       shift.split(chunk_size, dim=-1), running.split(chunk_size, dim=-1)):
        weights = _decay(r_c.unsqueeze(-1), m_c.unsqueeze(-2))  # (B, H, L, L): exp(m_j − M_i)
        scores = torch.tril((q_c @ k_c.transpose(-2, -1)).mul_(weights))  # (B, H, L, F) @ (B, H, F, L)
        carried = (q_c @ state).mul_(_decay(r_c, before).unsqueeze(-1))  # (B, H, L, F) @ (F, E), · exp(M_prev − M_i)
        chunks.append(scores @ v_c + carried)  # (B, H, L, L) @ (B, H, L, E) -> (B, H, L, E)
        end = r_c[..., -1:]
        state = state * _decay(end, before).unsqueeze(-1) + k_c.transpose(-2, -1) @ (v_c * _decay(end, m_c)[..., None])
        before = end
    return torch.cat(chunks, dim=-2)


def normalise(out_aug: Tensor, eps: float) -> Tensor:
    """Split [numerator | denominator] and divide; a query that sees no valid key gets 0 (finite)."""
    num, den = out_aug[..., :-1], out_aug[..., -1:]  # (B, H, T, E) -> (B, H, T, D), (B, H, T, 1)
    return num / (den + eps)


def attend_features(phi_q: Tensor, phi_k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool,
                    chunk_size: int, eps: float, key_shift: Tensor | None = None) -> Tensor:
    """The full linear-attention forward from feature maps; phi_k rows of padded keys must already be 0.

    ``key_shift`` (B, H, T), causal only: φ(K)'s rows were each scaled by exp(−shift_j) (−inf: a padded key);
    the core then restores them relative to the running max of the shifts (``prefix_max_attention``)."""
    values = masked_values(v, key_valid, phi_q.dtype)
    if causal and key_shift is not None:
        out = normalise(prefix_max_attention(phi_q, phi_k, augment_values(values), key_shift, chunk_size), eps)
    elif causal:
        out = normalise(causal_linear_attention(phi_q, phi_k, augment_values(values), chunk_size), eps)
    else:
        out = linear_attention(phi_q, phi_k, values, eps)
    return out.to(v.dtype)


def core_flops(B: int, H: int, T: int, F_: int, D: int, causal: bool, chunk_size: int) -> int:
    """Matmul FLOPs of the core with F features, exactly as FlopCounterMode counts.

    Non-causal: 2·(2·T·F·D) for φ(K)ᵀV and φ(Q)·KV, plus 2·T·F for φ(Q)·z (the key sum is not a matmul).
    Causal, with E = D+1 value columns: per chunk of L tokens 2·L²·F (scores) + 2·L²·E (scores·V)
    + 2·L·F·E (q·state) + 2·F·L·E (state update).
    """
    if not causal:
        return B * H * (4 * T * F_ * D + 2 * T * F_)
    E = D + 1
    full, rem = divmod(T, chunk_size)
    sum_sq = full * chunk_size ** 2 + rem ** 2  # Σ L² over the chunks
    return B * H * (2 * (F_ + E) * sum_sq + 4 * F_ * E * T)


def core_memory_elems(T: int, F_: int, D: int, causal: bool, chunk_size: int) -> int:
    """Elements alive at the core's peak, per (batch, head), output included.

    Non-causal, at the division: φ(Q), φ(K) (T·F each), the (T, D) numerator (which becomes the output) and the
    (T, 1) denominator, the (F, D) summary and the (F,) key sum. Causal, at the ``cat``: φ(Q), φ(K), [V | 1], the
    (T, E) chunk outputs and their (T, E) cat, plus the (F, E) states, one chunk's c×c scores and two (c, E)
    partial outputs. (Live tensor bytes, as ``bench.measure.live_peak_bytes`` counts them; the feature maps'
    temporaries are freed before the peak.)"""
    if not causal:
        return 2 * T * F_ + T * D + T + F_ * D + F_
    E = D + 1
    c = min(chunk_size, T)
    return 2 * T * F_ + 3 * T * E + 2 * F_ * E + c * c + 2 * c * E


def upcast_bytes(B: int, H: int, T: int, D: int, elem_bytes: int) -> int:
    """Half-precision inputs are copied to float32 (q, k, v) before the core."""
    return 3 * B * H * T * D * 4 if elem_bytes < 4 else 0
