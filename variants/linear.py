"""Kernelised (linear) attention: softmax(QKᵀ) replaced by a feature map, φ(Q)·(φ(K)ᵀV), O(T) in sequence length.

Both variants share one core, written once:
- non-causal: ``KV = φ(K)ᵀV`` and ``z = Σφ(K)``, then ``φ(Q)·KV / (φ(Q)·z + eps)``, O(T·F·D) time, O(T) memory;
- causal, chunked: within a chunk of c tokens the small masked ``tril(φ(Q_c)φ(K_c)ᵀ)·[V_c | 1]``; across chunks a
  running (F, D+1) state. No (T, F, D) cumulative tensor and no (T, T) matrix is ever built.

Causal V is augmented with a ones column, so the normaliser rides along in the chunk's matmuls (column D of the
result) and each chunk costs the same few calls. Non-causal keeps V as it is: its two big GEMMs then run on
64-wide operands instead of 65-wide ones (faster: docs/variants.md), and every T-sized tensor is (T, F) or
(T, D). Padded keys (``key_valid`` False) get φ(K) = 0 and V = 0, so padding content cannot reach the real
tokens. Half-precision inputs are computed in float32 (running sums of features lose too
much in bf16) and cast back; float32 and float64 run in their own dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, check_positive, feature_map, register

KATHAROPOULOS = Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention", 2020,
                      "2006.16236")
CHOROMANSKI = Paper("Rethinking Attention with Performers", 2021, "2009.14794")

ELU_EPS = 1e-6  # the paper's code (fast-transformers) adds 1e-6 to the denominator
PERFORMER_EPS = 1e-12  # FAVOR+ denominators are O(T/r·e^-m) after max-subtraction: 1e-6 would bias them


# ------------------------------------------------------------------------------------------------ the shared core

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


def normalise(out_aug: Tensor, eps: float) -> Tensor:
    """Split [numerator | denominator] and divide; a query that sees no valid key gets 0 (finite)."""
    num, den = out_aug[..., :-1], out_aug[..., -1:]  # (B, H, T, E) -> (B, H, T, D), (B, H, T, 1)
    return num / (den + eps)


def attend_features(phi_q: Tensor, phi_k: Tensor, v: Tensor, key_valid: Tensor | None, *, causal: bool,
                    chunk_size: int, eps: float) -> Tensor:
    """The full linear-attention forward from feature maps; phi_k rows of padded keys must already be 0."""
    values = masked_values(v, key_valid, phi_q.dtype)
    if causal:
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


# ----------------------------------------------------------------------------------------- linear_elu (2020)

def elu_flops(B: int, H: int, T: int, D: int, *, causal: bool, chunk_size: int) -> int:
    """φ(x) = elu(x)+1 is element-wise (uncounted); the core runs with F = D features."""
    check_positive("linear_elu", chunk_size=chunk_size)
    return core_flops(B, H, T, D, D, causal, chunk_size)


def elu_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, chunk_size: int) -> int:
    """Peak of one forward, output included: the core with F = D in the compute dtype (at least 4 bytes), plus
    any upcast copies."""
    check_positive("linear_elu", chunk_size=chunk_size)
    elems = B * H * core_memory_elems(T, D, D, causal, chunk_size)
    return elems * max(elem_bytes, 4) + upcast_bytes(B, H, T, D, elem_bytes)


def elu_features(x: Tensor, key_valid: Tensor | None = None) -> Tensor:
    """φ(x) = elu(x) + 1 > 0, element-wise; rows of padded tokens set to exactly 0 when ``key_valid`` is given."""
    phi = F.elu(x) + 1.0
    if key_valid is not None:
        phi = torch.where(key_valid[:, None, :, None], phi, torch.zeros((), dtype=phi.dtype, device=phi.device))
    return phi


@register
class EluLinearAttention(Attention):
    """Katharopoulos et al. 2020, "Transformers are RNNs" (arXiv:2006.16236): φ(x) = elu(x) + 1.

    out_i = φ(q_i)·Σ_j φ(k_j)ᵀv_j / (φ(q_i)·Σ_j φ(k_j) + eps), sums over j <= i when causal. O(T·D²) time and
    O(T) memory. Deviations: causal uses chunked prefix sums (``chunk_size``) instead of the paper's per-token
    CUDA cumulative-sum kernel (same maths, matmul-shaped work); half precision is computed in float32.
    """

    spec = AttentionSpec(
        name="linear_elu", family="linear", time_complexity="O(T·D²)", memory_complexity="O(T·D)",
        exact=False, supports_causal=True, supports_key_valid=True, paper=KATHAROPOULOS,
        default_params={"chunk_size": 64}, flops=elu_flops, memory_bytes=elu_memory,
        time_exponent=1.0, memory_exponent=1.0,
    )

    def __init__(self, *, d_head: int, n_heads: int, causal: bool = False, max_seq_len: int, **params: object):
        super().__init__(d_head=d_head, n_heads=n_heads, causal=causal, max_seq_len=max_seq_len, **params)
        check_positive(self.spec.name, chunk_size=self.params["chunk_size"])

    def features(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(φ(Q), φ(K)) in the compute dtype, padded keys zeroed: (B, H, T, D) each."""
        dtype = compute_dtype(q.dtype)
        return elu_features(q.to(dtype)), elu_features(k.to(dtype), key_valid)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        phi_q, phi_k = self.features(q, k, key_valid)
        return attend_features(phi_q, phi_k, v, key_valid, causal=self.causal,
                               chunk_size=self.params["chunk_size"], eps=ELU_EPS)

    def effective_map(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
        return feature_map(*self.features(q, k, key_valid), causal=self.causal, eps=ELU_EPS).to(q.dtype)


# ------------------------------------------------------------------------------------ linear_performer (2021)

def check_performer(n_features: object, seed: object, chunk_size: object) -> None:
    check_positive("linear_performer", n_features=n_features, chunk_size=chunk_size)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"linear_performer: seed must be an int >= 0, got {seed!r}")


def performer_flops(B: int, H: int, T: int, D: int, *, causal: bool, n_features: int, seed: int,
                    chunk_size: int) -> int:
    """Projections x·ωᵀ for Q and K (2·T·D·r each, per head), then the core with F = r."""
    check_performer(n_features, seed, chunk_size)
    return 4 * B * H * T * D * n_features + core_flops(B, H, T, n_features, D, causal, chunk_size)


def performer_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, n_features: int,
                     seed: int, chunk_size: int) -> int:
    """Peak of one forward, output included: the core with F = r, plus any upcast copies. The (T, r) logits are
    shifted and exponentiated in place, so each feature map is one (T, r) tensor; the keys' (T, D) temporary x²
    is freed before the peak."""
    check_performer(n_features, seed, chunk_size)
    elems = B * H * core_memory_elems(T, n_features, D, causal, chunk_size)
    return elems * max(elem_bytes, 4) + upcast_bytes(B, H, T, D, elem_bytes)


def orthogonal_gaussian(n_features: int, d: int, generator: torch.Generator) -> Tensor:
    """(r, d) float64: stacked orthogonal d×d blocks (QR of a Gaussian), rows rescaled by χ_d-distributed norms.

    The paper's ``gaussian_orthogonal_random_matrix`` with scaling=0, plus one fix: the QR factor is sign-corrected
    so each block is Haar-distributed. Without it (as in the paper's code) LAPACK's Householder convention biases
    the row directions (e.g. the first row's first coordinate is always <= 0) and the kernel estimate is biased,
    an error that does not shrink with r. With it each row has the law of a standard Gaussian vector while rows
    within a block are exactly orthogonal.
    """
    blocks = []
    for _ in range(math.ceil(n_features / d)):
        gauss = torch.randn(d, d, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gauss)
        q = q * torch.sign(torch.diagonal(r))  # sign fix: makes Q Haar-distributed (Mezzadri 2007)
        blocks.append(q.T)  # rows of Qᵀ are orthonormal
    omega = torch.cat(blocks, dim=0)[:n_features]  # (ceil(r/d)·d, d) -> (r, d)
    norms = torch.randn(n_features, d, generator=generator, dtype=torch.float64).norm(dim=1)  # χ_d samples
    return omega * norms[:, None]


def favor_projection(x: Tensor, omega: Tensor) -> Tensor:
    """ωᵀx' with x' = x / D^{1/4}: the scale rides on the small (r, D) ω, so no scaled (T, D) copy of x is made."""
    scale = x.shape[-1] ** -0.25
    return x @ (omega * scale).transpose(0, 1)  # (B, H, T, D) @ (D, r) -> (B, H, T, r)


def favor_logits(x: Tensor, omega: Tensor) -> Tensor:
    """ωᵀx' − ‖x'‖²/2 with x' = x / D^{1/4}; the log of the positive random feature before the 1/√r factor.

    The (T, r) projection is shifted in place (matmul's backward needs its inputs, not its output): one (T, r)
    tensor per feature map instead of two.
    """
    proj = favor_projection(x, omega)
    return proj.sub_((x * x).sum(dim=-1, keepdim=True) * (0.5 / math.sqrt(x.shape[-1])))  # ‖x'‖²/2 = ‖x‖²/(2√D)


def _shifted_exp(logits: Tensor, shift: Tensor, n_features: int) -> Tensor:
    """exp(logits − shift)/√r, in place on ``logits``: the 1/√r factor rides in the shift (−log √r), so no
    second (T, r) pass or buffer is needed and exp_'s saved output is the feature map itself."""
    return logits.sub_(shift - 0.5 * math.log(n_features)).exp_()


def favor_query_features(q: Tensor, omega: Tensor) -> Tensor:
    """φ(q) with the per-query-row max of the logits subtracted (a per-row constant: cancels in the normalised
    output). Within a row −‖q'‖²/2 is that kind of constant too, so it cancels against the max exactly and is
    never computed: exp(ωᵀq' − ‖q'‖²/2 − max_f(ωᵀq' − ‖q'‖²/2)) = exp(ωᵀq' − max_f ωᵀq')."""
    proj = favor_projection(q, omega)
    return _shifted_exp(proj, proj.amax(dim=-1, keepdim=True).detach(), omega.shape[0])


def favor_key_features(k: Tensor, omega: Tensor, key_valid: Tensor | None) -> Tensor:
    """φ(k) with one max over all valid keys and features per (batch, head) subtracted; padded keys exactly 0.

    Padded logits are set to -inf before the max and the exp, so padding content reaches neither.
    """
    logits = favor_logits(k, omega)
    if key_valid is not None:
        logits = logits.masked_fill(~key_valid[:, None, :, None], float("-inf"))
    m = logits.amax(dim=(-2, -1), keepdim=True).detach()  # (B, H, T, r) -> (B, H, 1, 1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # every key padded: any finite shift
    return _shifted_exp(logits, m, omega.shape[0])


@register
class PerformerAttention(Attention):
    """Choromanski et al. 2021, "Rethinking Attention with Performers" (arXiv:2009.14794), FAVOR+.

    Positive orthogonal random features φ(x) = exp(ωᵀx − ‖x‖²/2)/√r with x = q/D^{1/4}, so that
    E[φ(q)ᵀφ(k)] = exp(qᵀk/√D): an unbiased estimate of the softmax kernel. ω (r, D) is a buffer, not a
    parameter; ``redraw(seed)`` replaces it. O(T·r·D) time, O(T·r) memory. Stabilised as in the paper's code: a
    detached per-row max is subtracted from query logits, one detached max over all (valid) keys from key logits.
    Deviations: we subtract the max of the whole logit (including −‖x‖²/2; the code uses ωᵀx only), add no 1e-6
    to the features (padded keys must stay exactly 0), and use eps = 1e-12 in the denominator. In causal mode the
    key shift depends on later keys; it cancels between numerator and denominator, so only eps and underflow see
    it. Causal runs through the same chunked core as linear_elu.
    """

    spec = AttentionSpec(
        name="linear_performer", family="linear", time_complexity="O(T·r·D)", memory_complexity="O(T·r)",
        exact=False, supports_causal=True, supports_key_valid=True, paper=CHOROMANSKI,
        default_params={"n_features": 256, "seed": 0, "chunk_size": 64},
        flops=performer_flops, memory_bytes=performer_memory, time_exponent=1.0, memory_exponent=1.0,
    )

    def __init__(self, *, d_head: int, n_heads: int, causal: bool = False, max_seq_len: int, **params: object):
        super().__init__(d_head=d_head, n_heads=n_heads, causal=causal, max_seq_len=max_seq_len, **params)
        check_performer(self.params["n_features"], self.params["seed"], self.params["chunk_size"])
        self.register_buffer("omega", self._draw(self.params["seed"]))

    def _draw(self, seed: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        return orthogonal_gaussian(self.params["n_features"], self.d_head, generator).to(torch.float32)

    @torch.no_grad()
    def redraw(self, seed: int) -> None:
        """Replace the random features in place (same device and dtype as now) by the draw for ``seed``."""
        check_performer(self.params["n_features"], seed, self.params["chunk_size"])
        self.omega.copy_(self._draw(seed))
        self.params["seed"] = seed

    def features(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(φ(Q), φ(K)) in the compute dtype: (B, H, T, D) -> (B, H, T, r) each, padded keys zeroed."""
        dtype = compute_dtype(q.dtype)
        omega = self.omega.to(device=q.device, dtype=dtype)
        return favor_query_features(q.to(dtype), omega), favor_key_features(k.to(dtype), omega, key_valid)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        phi_q, phi_k = self.features(q, k, key_valid)
        return attend_features(phi_q, phi_k, v, key_valid, causal=self.causal,
                               chunk_size=self.params["chunk_size"], eps=PERFORMER_EPS)

    def effective_map(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
        return feature_map(*self.features(q, k, key_valid), causal=self.causal, eps=PERFORMER_EPS).to(q.dtype)
