"""Kernelised (linear) attention: softmax(QKᵀ) replaced by a feature map, φ(Q)·(φ(K)ᵀV), O(T) in sequence length.

linear_elu (φ = elu + 1) and linear_performer (FAVOR+ random features) differ only in their feature maps; both
run through one core (``variants.linear_core``: non-causal, causal chunked, their FLOP and memory models).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, check_positive, feature_map, register
from .linear_core import attend_features, compute_dtype, core_flops, core_memory_elems, upcast_bytes

KATHAROPOULOS = Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention", 2020,
                      "2006.16236")
CHOROMANSKI = Paper("Rethinking Attention with Performers", 2021, "2009.14794")

ELU_EPS = 1e-6  # the paper's code (fast-transformers) adds 1e-6 to the denominator
PERFORMER_EPS = 1e-12  # FAVOR+ denominators are O(T/r·e^-m) after max-subtraction: 1e-6 would bias them


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
    is freed before the peak. Causal adds the keys' own shifts and their running max, (T,) each."""
    check_performer(n_features, seed, chunk_size)
    elems = B * H * (core_memory_elems(T, n_features, D, causal, chunk_size) + (2 * T if causal else 0))
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


def _key_logits(k: Tensor, omega: Tensor, key_valid: Tensor | None) -> Tensor:
    """FAVOR+ key logits, padded keys' set to −inf, so padding content reaches neither the max nor the exp."""
    logits = favor_logits(k, omega)
    if key_valid is not None:
        logits = logits.masked_fill(~key_valid[:, None, :, None], float("-inf"))
    return logits


def _finite(m: Tensor) -> Tensor:
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # every key padded: any finite shift


def favor_key_features(k: Tensor, omega: Tensor, key_valid: Tensor | None) -> Tensor:
    """φ(k) with one max over all valid keys and features per (batch, head) subtracted; padded keys exactly 0."""
    logits = _key_logits(k, omega, key_valid)
    m = logits.amax(dim=(-2, -1), keepdim=True).detach()  # (B, H, T, r) -> (B, H, 1, 1)
    return _shifted_exp(logits, _finite(m), omega.shape[0])


def favor_causal_key_features(k: Tensor, omega: Tensor, key_valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """(φ(k_j)·exp(−m_j), m) with each key's own detached max m_j = max_f logit_jf (−inf for a padded key), so a
    key's features never depend on another key's; the causal core applies exp(m_j − M_i) (``prefix_max_attention``)."""
    logits = _key_logits(k, omega, key_valid)
    m = logits.amax(dim=-1, keepdim=True).detach()  # (B, H, T, r) -> (B, H, T, 1)
    return _shifted_exp(logits, _finite(m), omega.shape[0]), m.squeeze(-1)


@register
class PerformerAttention(Attention):
    """Choromanski et al. 2021, "Rethinking Attention with Performers" (arXiv:2009.14794), FAVOR+.

    Positive orthogonal random features φ(x) = exp(ωᵀx − ‖x‖²/2)/√r with x = q/D^{1/4}, so that
    E[φ(q)ᵀφ(k)] = exp(qᵀk/√D): an unbiased estimate of the softmax kernel. ω (r, D) is a buffer, not a
    parameter; ``redraw(seed)`` replaces it. O(T·r·D) time, O(T·r) memory. Stabilised as in the paper's code: a
    detached per-row max is subtracted from query logits, one detached max over all (valid) keys from key logits.
    Deviations: we subtract the max of the whole logit (including −‖x‖²/2; the code uses ωᵀx only), add no 1e-6
    to the features (padded keys must stay exactly 0), and use eps = 1e-12 in the denominator. Causal mode shifts
    each key by its own max and the core by the running max of those (``prefix_max_attention``): one max over all
    keys would let a later key underflow an earlier query's output (inputs ×100, D = 1: 0 instead of v₀).
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
        if not self.causal:
            phi_q, phi_k = self.features(q, k, key_valid)
            return attend_features(phi_q, phi_k, v, key_valid, causal=False, chunk_size=self.params["chunk_size"],
                                   eps=PERFORMER_EPS)
        dtype = compute_dtype(q.dtype)
        omega = self.omega.to(device=q.device, dtype=dtype)
        phi_k, shift = favor_causal_key_features(k.to(dtype), omega, key_valid)
        return attend_features(favor_query_features(q.to(dtype), omega), phi_k, v, key_valid, causal=True,
                               chunk_size=self.params["chunk_size"], eps=PERFORMER_EPS, key_shift=shift)

    def effective_map(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """Non-causal: the normalised φ(Q)φ(K)ᵀ. Causal: read off the forward (``Attention.effective_map``),
        whose per-key shifts keep early keys from underflowing (a closed form would have to repeat them)."""
        if self.causal:
            return super().effective_map(q, k, key_valid)
        return feature_map(*self.features(q, k, key_valid), causal=False, eps=PERFORMER_EPS).to(q.dtype)
