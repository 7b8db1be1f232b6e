"""linear_elu and linear_performer: the chunked core against a naive O(T²) reference, masks, FLOPs, memory."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import variants
from op_outputs import OpOutputs
from variants import reference_attention
from variants.linear import ELU_EPS, PERFORMER_EPS, orthogonal_gaussian

LINEAR = ["linear_elu", "linear_performer"]
EPS = {"linear_elu": ELU_EPS, "linear_performer": PERFORMER_EPS}
B, H, D = 2, 2, 8


def make(name: str, causal: bool = False, d_head: int = D, n_heads: int = H, **params):
    if name == "linear_performer":
        params.setdefault("n_features", 32)
    return variants.create(name, d_head=d_head, n_heads=n_heads, causal=causal, max_seq_len=4096, **params)


def qkv(T: int, dtype=torch.float64, seed: int = 0, b: int = B, h: int = H, d: int = D, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(b, h, T, d, generator=g, dtype=dtype) for _ in range(3))


def random_valid(T: int, seed: int = 1, b: int = B) -> torch.Tensor:
    """(b, T) bool with about a third padded, at arbitrary positions (the first key included for row 0)."""
    valid = torch.rand(b, T, generator=torch.Generator().manual_seed(seed)) > 0.33
    valid[0, 0] = False
    return valid


def naive_linear(phi_q, phi_k, v, causal, key_valid, eps):
    """O(T²) reference: (φ(Q)φ(K)ᵀ ⊙ mask) V, each row divided by its sum + eps."""
    scores = phi_q @ phi_k.transpose(-2, -1)  # (B, H, T, F) @ (B, H, F, T) -> (B, H, T, T)
    if causal:
        scores = torch.tril(scores)
    if key_valid is not None:
        scores = scores * key_valid[:, None, None, :]
    return (scores @ v) / (scores.sum(dim=-1, keepdim=True) + eps)


def reference_features(attn, q, k, key_valid=None):
    """Features computed independently of the module for elu; the module's own random features for FAVOR+
    (whose key shift is a max over valid keys only, so the mask is passed)."""
    if attn.spec.name == "linear_elu":
        return F.elu(q) + 1, F.elu(k) + 1
    return attn.features(q, k, key_valid)


# ------------------------------------------------------------------------------------- exactness of the core

@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("T", [1, 5, 64, 97, 130])
@pytest.mark.parametrize("chunk_size", [1, 7, 64])
@pytest.mark.parametrize("padded", [False, True])
def test_causal_chunked_matches_naive(name, T, chunk_size, padded):
    attn = make(name, causal=True, chunk_size=chunk_size)
    q, k, v = qkv(T)
    valid = random_valid(T) if padded else None
    phi_q, phi_k = reference_features(attn, q, k, valid)
    expected = naive_linear(phi_q, phi_k, v, True, valid, EPS[name])
    torch.testing.assert_close(attn(q, k, v, key_valid=valid), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("T", [1, 97])
@pytest.mark.parametrize("padded", [False, True])
def test_noncausal_matches_naive(name, T, padded):
    attn = make(name)
    q, k, v = qkv(T)
    valid = random_valid(T) if padded else None
    phi_q, phi_k = reference_features(attn, q, k, valid)
    expected = naive_linear(phi_q, phi_k, v, False, valid, EPS[name])
    torch.testing.assert_close(attn(q, k, v, key_valid=valid), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_gradients_match_the_naive_core(name, causal, padded):
    """The core's own backward (``_KeyValueSummary``: kv and the key sum) against autograd through the O(T²)
    reference, for q, k and v; the features are the module's, so both sides differentiate through them."""
    attn = make(name, causal=causal, chunk_size=16)
    T = 41
    q, k, v = (x.requires_grad_() for x in qkv(T))
    valid = random_valid(T) if padded else None
    out = attn(q, k, v, key_valid=valid)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    phi_q, phi_k = reference_features(attn, q, k, valid)
    expected_out = naive_linear(phi_q, phi_k, v, causal, valid, EPS[name])
    expected = torch.autograd.grad((expected_out * weights).sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", LINEAR)
def test_chunk_size_invariance(name):
    q, k, v = qkv(97)
    outs = [make(name, causal=True, chunk_size=c)(q, k, v) for c in (1, 7, 32, 64, 97, 500)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", LINEAR)
def test_causality(name):
    """Changing tokens after position t leaves outputs up to t unchanged (bitwise: ``test_performer_causal_...``)."""
    attn = make(name, causal=True, chunk_size=7)
    q, k, v = qkv(40, dtype=torch.float32)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[..., 20:, :] = torch.randn_like(x[..., 20:, :])
    torch.testing.assert_close(attn(q2, k2, v2)[..., :20, :], attn(q, k, v)[..., :20, :], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------- key_valid

@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("junk", [1e3, float("nan"), float("inf")])
def test_padding_content_does_not_leak(name, causal, junk):
    T = 53
    attn = make(name, causal=causal, chunk_size=8)
    q, k, v = qkv(T, dtype=torch.float32)
    valid = random_valid(T)
    pad = ~valid[:, None, :, None]
    q2, k2, v2 = (torch.where(pad, torch.full_like(x, junk) * torch.rand_like(x), x) for x in (q, k, v))
    out, out2 = attn(q, k, v, key_valid=valid), attn(q2, k2, v2, key_valid=valid)
    real = valid[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out2[real], out[real], rtol=1e-6, atol=1e-6)
    assert torch.isfinite(out2[real]).all()


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("causal", [False, True])
def test_all_padded_row_is_finite_with_finite_grads(name, causal):
    attn = make(name, causal=causal, chunk_size=4)
    q, k, v = (x.requires_grad_() for x in qkv(11, dtype=torch.float32))
    valid = random_valid(11)
    valid[1] = False
    out = attn(q, k, v, key_valid=valid)
    out.square().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


# ------------------------------------------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dtypes_finite_outputs_and_grads(name, causal, dtype):
    attn = make(name, causal=causal, chunk_size=16)
    q, k, v = (x.requires_grad_() for x in qkv(97, dtype=dtype))
    out = attn(q, k, v, key_valid=random_valid(97))
    assert out.dtype == dtype and out.shape == q.shape
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert all(x.grad.dtype == dtype and torch.isfinite(x.grad).all() for x in (q, k, v))
    exact = attn(*(x.detach().double() for x in (q, k, v)), key_valid=random_valid(97))
    torch.testing.assert_close(out.double(), exact, rtol=0.05, atol=0.05)


# -------------------------------------------------------------------------------------------------- performer

@pytest.mark.parametrize("scale,d", [(1.0, 8), (100.0, 1), (1e4, 1), (1e4, 8)])
@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_performer_causal_output_never_reads_a_later_key(scale, d, chunk_size):
    """Bitwise: out_i is unchanged when any key or value after i changes: to huge keys, or to small ones whose
    logits are the largest. (With one max over all keys as the shift, inputs ×100 and D = 1, a later small key
    underflowed every feature of k_0 and out_0 read 0 instead of v_0: the fuzz case.)"""
    attn = make("linear_performer", True, d_head=d, chunk_size=chunk_size)
    q, k, v = qkv(13, d=d, scale=scale)
    k[..., 0, :] = q[..., 0, :]  # φ(q_0)·φ(k_0) peaks at the same feature: out_0 = v_0 is representable
    valid = random_valid(13)
    valid[:, 0] = True
    with torch.no_grad():
        out = attn(q, k, v, key_valid=valid)
        for cut in range(13):
            tail = k[..., cut + 1:, :]
            for later in (torch.randn_like(tail) * 5 * scale, torch.full_like(tail, 1e3 * scale), tail * 1e-2 / scale):
                k2, v2 = k.clone(), v.clone()
                k2[..., cut + 1:, :], v2[..., cut + 1:, :] = later, -later
                assert torch.equal(attn(q, k2, v2, key_valid=valid)[..., :cut + 1, :], out[..., :cut + 1, :]), cut
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :], rtol=1e-9, atol=0)


@pytest.mark.parametrize("scale,d", [(1.0, 8), (100.0, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_performer_causal_is_the_noncausal_estimator_on_each_prefix(scale, d, padded):
    """Same ω: the causal output at i equals the non-causal estimator run on keys 0..i (its last row)."""
    causal = make("linear_performer", True, d_head=d, chunk_size=4)
    full = make("linear_performer", False, d_head=d)
    q, k, v = qkv(23, d=d, scale=scale)
    valid = random_valid(23) if padded else None
    out = causal(q, k, v, key_valid=valid)
    for i in range(23):
        prefix = full(q[..., :i + 1, :], k[..., :i + 1, :], v[..., :i + 1, :],
                      key_valid=None if valid is None else valid[:, :i + 1])
        sees = torch.ones(B, dtype=torch.bool) if valid is None else valid[:, :i + 1].any(-1)
        torch.testing.assert_close(out[sees][..., i, :], prefix[sees][..., i, :], rtol=1e-9, atol=1e-12 * scale)


def mean_error(r: int, seeds=range(6), T: int = 64, d: int = 16) -> float:
    """Mean |FAVOR+ − softmax attention| over seeds of the random features (inputs fixed)."""
    q, k, v = qkv(T, dtype=torch.float64, b=1, h=2, d=d, scale=0.4)
    exact = reference_attention(q, k, v)
    errs = [(make("linear_performer", d_head=d, n_features=r, seed=s)(q, k, v) - exact).abs().mean() for s in seeds]
    return float(torch.stack(errs).mean())


def test_performer_error_shrinks_with_features():
    errors = [mean_error(r) for r in (16, 64, 256, 1024)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # Monte-Carlo rate ~1/√r (64× features ≈ 8× less error) once r beats the heavy exp tails, hence small q, k.
    assert errors[-1] < errors[0] / 4, errors


def test_performer_causal_approximates_causal_softmax():
    q, k, v = qkv(64, b=1, h=2, d=16, scale=0.4)
    exact = reference_attention(q, k, v, causal=True)
    err = {r: float((make("linear_performer", True, d_head=16, n_features=r)(q, k, v) - exact).abs().mean())
           for r in (16, 1024)}
    assert err[1024] < err[16] / 3, err


def test_performer_features_are_a_seeded_buffer():
    a, b = make("linear_performer", seed=3), make("linear_performer", seed=3)
    assert torch.equal(a.omega, b.omega)
    assert not torch.equal(a.omega, make("linear_performer", seed=4).omega)
    assert list(a.parameters()) == [] and "omega" in a.state_dict()
    q, k, v = qkv(9)
    torch.testing.assert_close(a(q, k, v), b(q, k, v), rtol=0, atol=0)
    before = a.omega.clone()
    a.redraw(7)
    assert not torch.equal(a.omega, before) and a.params["seed"] == 7
    assert not torch.allclose(a(q, k, v), b(q, k, v))
    a.redraw(3)
    assert torch.equal(a.omega, before)


def test_orthogonal_random_features():
    omega = orthogonal_gaussian(40, 16, torch.Generator().manual_seed(0))  # 2 full blocks + 8 rows
    assert omega.shape == (40, 16)
    for block in (omega[:16], omega[16:32], omega[32:]):
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.diag(torch.diagonal(gram)), rtol=0, atol=1e-10)
    assert 16 * 0.5 < omega.norm(dim=1).square().mean() < 16 * 1.5  # χ² with 16 degrees of freedom


def test_orthogonal_blocks_are_unbiased():
    """Directions are Haar: raw LAPACK QR always gives the first row a non-positive first coordinate."""
    firsts = torch.stack([orthogonal_gaussian(8, 8, torch.Generator().manual_seed(s))[0, 0] for s in range(200)])
    assert 0.35 < (firsts > 0).double().mean() < 0.65
    mean = sum(orthogonal_gaussian(8, 8, torch.Generator().manual_seed(s)) for s in range(400)) / 400
    assert mean.abs().max() < 0.35  # E[ω] = 0 (entries have unit variance; 400 draws)


# ------------------------------------------------------------------------------------------------------- FLOPs

@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("T,causal,chunk_size", [
    (1, False, 64), (1, True, 64), (97, False, 64), (97, True, 64), (97, True, 7), (97, True, 1),
    (128, True, 64), (130, True, 64), (130, False, 7),
])
def test_flops_match_flop_counter(name, T, causal, chunk_size):
    attn = make(name, causal=causal, chunk_size=chunk_size)
    q, k, v = qkv(T, dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        attn(q, k, v, key_valid=random_valid(T))
    assert counter.get_total_flops() == attn.flops(B, T)
    assert attn.flops(B, T) == attn.spec.analytic_flops(B, H, T, D, causal=causal, **attn.params)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("causal", [False, True])
def test_flops_and_memory_are_linear_in_T(name, causal):
    spec = variants.get(name).spec
    for T in (100_000, 1 << 20, 1_000_003):
        for measure in (spec.analytic_flops, spec.analytic_bytes):
            ratio = measure(1, 8, 2 * T, 64, causal=causal) / measure(1, 8, T, 64, causal=causal)
            assert ratio == pytest.approx(2.0, rel=0.05)


def test_spec_metadata():
    for name in LINEAR:
        spec = variants.get(name).spec
        assert (spec.family, spec.exact, spec.supports_causal, spec.supports_key_valid) == ("linear", False, True, True)
        assert (spec.time_exponent, spec.memory_exponent) == (1.0, 1.0)
        assert spec.paper is not None and spec.default_params["chunk_size"] == 64
    assert dict(variants.get("linear_performer").spec.default_params) == {"n_features": 256, "seed": 0,
                                                                           "chunk_size": 64}


# ------------------------------------------------------------------------------------------------ bad params

@pytest.mark.parametrize("name,params", [
    ("linear_elu", {"chunk_size": 0}), ("linear_elu", {"chunk_size": -3}), ("linear_elu", {"chunk_size": 2.5}),
    ("linear_elu", {"chunk_size": True}), ("linear_performer", {"n_features": 0}),
    ("linear_performer", {"chunk_size": 0}), ("linear_performer", {"seed": -1}),
    ("linear_performer", {"n_features": "64"}),
])
def test_bad_params_raise_value_error(name, params):
    with pytest.raises(ValueError, match=name):
        variants.create(name, d_head=D, n_heads=H, max_seq_len=16, **params)
    with pytest.raises(ValueError):
        variants.get(name).spec.analytic_flops(1, H, 16, D, **params)


@pytest.mark.parametrize("name", LINEAR)
def test_unknown_param_raises_type_error(name):
    with pytest.raises(TypeError, match="chunksize"):
        variants.create(name, d_head=D, n_heads=H, max_seq_len=16, chunksize=8)


# ------------------------------------------------------------------------------------------------------ memory

@pytest.mark.parametrize("name", LINEAR)
def test_causal_never_allocates_quadratic_tensors(name):
    """At T = 8192 no tensor of the causal forward or backward reaches T×T or T×D×D elements; the largest is the
    (T, max(F, D+1)) feature / value tensor, which the analytic memory_bytes also covers."""
    T, d = 8192, 32
    attn = make(name, causal=True, d_head=d, n_heads=1, chunk_size=64)
    q, k, v = (x.requires_grad_() for x in qkv(T, dtype=torch.float32, b=1, h=1, d=d))
    with OpOutputs() as mode:
        attn(q, k, v, key_valid=random_valid(T, b=1)).sum().backward()
    widest = max(attn.params.get("n_features", d), d + 1)
    assert mode.largest_bytes <= T * widest * 4
    assert mode.largest_bytes < T * d * d * 4 and mode.largest_bytes < T * T * 4
    assert mode.largest_bytes < attn.memory_bytes(1, T)
