"""low_rank_linformer and low_rank_nystrom: exactness where theory says so, approximation quality, padding,
FLOP counts against FlopCounterMode, and parameter validation. CPU only; no timing assertions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import variants
from variants import reference_attention
from variants.low_rank import LinformerAttention, NystromAttention, iterative_pinv, segment_means

LIN, NYS = "low_rank_linformer", "low_rank_nystrom"
H, D = 2, 8


def qkv(B: int, T: int, dtype: torch.dtype = torch.float32, seed: int = 0, d: int = D) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(3)]


def build(name: str, max_seq_len: int = 2048, d: int = D, **params) -> variants.Attention:
    torch.manual_seed(0)
    return variants.create(name, d_head=d, n_heads=H, causal=False, max_seq_len=max_seq_len, **params)


def padding_mask(B: int, T: int) -> torch.Tensor:
    """Sample 0 padded at the end, sample 1 at the start (left padding); both keep at least one token."""
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, T // 2 + 1:] = False
    valid[1, : T // 3] = False
    return valid


def smooth(B: int, T: int, g: torch.Generator, modes: int = 4, noise: float = 0.05) -> torch.Tensor:
    """(B, H, T, 16) fp64 tokens varying smoothly along T (a few low Fourier modes) plus a little noise."""
    t = torch.linspace(0, 1, T, dtype=torch.float64)
    freq = torch.arange(1, modes + 1, dtype=torch.float64)[:, None]
    basis = torch.cat([torch.sin(math.pi * freq * t), torch.cos(math.pi * freq * t)]).T  # (T, 2·modes)
    coef = torch.randn(B, H, 2 * modes, 16, generator=g, dtype=torch.float64) / math.sqrt(modes)
    return basis @ coef + noise * torch.randn(B, H, T, 16, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ exactness

@pytest.mark.parametrize("T", [1, 7, 32])
def test_linformer_identity_projections_are_exact(T):
    attn = build(LIN, max_seq_len=64, k=T).double().identity_projections_()
    q, k, v = qkv(2, T, torch.float64)
    torch.testing.assert_close(attn(q, k, v), reference_attention(q, k, v), rtol=1e-10, atol=1e-10)


def test_linformer_identity_projections_are_exact_with_padding():
    T = 16
    attn = build(LIN, max_seq_len=T, k=T).double().identity_projections_()
    q, k, v = qkv(2, T, torch.float64)
    valid = padding_mask(2, T)
    # A zeroed key still enters the softmax with score 0, so this equals reference attention only where the
    # padded keys' scores are 0 as well: compare against reference on the zeroed k and v without a mask.
    kz, vz = (x.masked_fill(~valid[:, None, :, None], 0.0) for x in (k, v))
    torch.testing.assert_close(attn(q, k, v, valid), reference_attention(q, kz, vz), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("T", [1, 5, 32, 97])
def test_nystrom_with_one_landmark_per_token_is_exact(T):
    attn = build(NYS, landmarks=T, pinv_iters=30)
    q, k, v = qkv(2, T, torch.float64)
    torch.testing.assert_close(attn(q, k, v), reference_attention(q, k, v), rtol=1e-8, atol=1e-8)


def test_nystrom_more_landmarks_than_tokens_uses_one_per_token():
    q, k, v = qkv(2, 9, torch.float64)
    out = build(NYS, landmarks=64, pinv_iters=30)(q, k, v)
    torch.testing.assert_close(out, reference_attention(q, k, v), rtol=1e-8, atol=1e-8)


def test_nystrom_exact_on_valid_tokens_with_one_landmark_per_token():
    """landmarks = T with padding: empty segments are dropped, so the result is exact masked attention."""
    T = 24
    q, k, v = qkv(2, T, torch.float64)
    valid = padding_mask(2, T)
    out = build(NYS, landmarks=T, pinv_iters=30)(q, k, v, valid)
    ref = reference_attention(q, k, v, key_valid=valid)
    torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-8)


def test_iterative_pinv_matches_torch_pinv():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 12, 12, generator=g, dtype=torch.float64).softmax(-1)
    torch.testing.assert_close(iterative_pinv(A, 40), torch.linalg.pinv(A), rtol=1e-7, atol=1e-7)
    singular = A.clone()
    singular[:, :, -1] = 0  # rank-deficient: the iteration still converges to the Moore–Penrose inverse
    torch.testing.assert_close(iterative_pinv(singular, 60), torch.linalg.pinv(singular), rtol=1e-6, atol=1e-6)
    assert torch.equal(iterative_pinv(torch.zeros(2, 3, 3), 6), torch.zeros(2, 3, 3))


# ---------------------------------------------------------------------------------------- approximation error

def test_nystrom_error_falls_as_landmarks_grow():
    T, draws, budgets = 256, 4, (4, 8, 16, 32, 64)
    errors = []
    for m in budgets:
        attn = build(NYS, d=16, landmarks=m, pinv_iters=20)
        total = 0.0
        for seed in range(draws):
            g = torch.Generator().manual_seed(seed)
            q, k, v = (smooth(1, T, g) for _ in range(3))
            ref = reference_attention(q, k, v)
            total += ((attn(q, k, v) - ref).norm() / ref.norm()).item()
        errors.append(total / draws)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 100, errors


# ---------------------------------------------------------------------------------------------- segment means

@pytest.mark.parametrize("T, m", [(10, 3), (97, 8), (1025, 64), (7, 7), (64, 16), (5, 1)])
def test_segment_means_match_array_split(T, m):
    x = torch.randn(2, H, T, D, dtype=torch.float64)
    means, valid = segment_means(x, m, None, torch.float64)
    segments = np.array_split(x.numpy(), m, axis=2)
    expected = np.stack([s.mean(axis=2) for s in segments], axis=2)  # (B, H, m, D)
    assert valid is None and means.shape == (2, H, m, D)
    np.testing.assert_allclose(means.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_segment_means_count_only_valid_tokens():
    T, m = 23, 5
    x = torch.randn(2, H, T, D, dtype=torch.float64)
    valid = torch.rand(2, T, generator=torch.Generator().manual_seed(1)) > 0.4
    valid[0, :5] = False  # segment 0 of sample 0 (tokens 0..4) is empty
    means, lm_valid = segment_means(x, m, valid, torch.float64)
    for b in range(2):
        for i, idx in enumerate(np.array_split(np.arange(T), m)):
            keep = idx[valid[b, idx].numpy()]
            assert bool(lm_valid[b, i]) == (len(keep) > 0)
            expected = x[b, :, keep].mean(dim=1) if len(keep) else torch.zeros(H, D, dtype=x.dtype)
            torch.testing.assert_close(means[b, :, i], expected, rtol=1e-12, atol=1e-12)
    assert not lm_valid[0, 0]


def test_segment_means_keep_bf16_accuracy():
    x = torch.randn(1, 1, 4096, D)
    exact, _ = segment_means(x.double(), 64, None, torch.float64)
    approx, _ = segment_means(x.bfloat16(), 64, None, torch.float32)
    assert approx.dtype == torch.float32
    torch.testing.assert_close(approx.double(), exact, rtol=0, atol=2e-2)


# ------------------------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("name", [LIN, NYS])
@pytest.mark.parametrize("T", [7, 97])
@pytest.mark.parametrize("fill", ["random", "nan"])
def test_padding_content_cannot_change_real_outputs(name, T, fill):
    attn = build(name, landmarks=8) if name == NYS else build(name, k=16)
    q, k, v = qkv(2, T)
    valid = padding_mask(2, T)
    pad = valid[:, None, :, None]
    noise = torch.full_like(q, float("nan")) if fill == "nan" else 100 * torch.randn_like(q)
    out = attn(q, k, v, valid)
    out2 = attn(*(torch.where(pad, x, noise) for x in (q, k, v)), valid)
    real = pad.expand_as(out)
    assert torch.isfinite(out).all()
    assert torch.equal(out[real], out2[real])


@pytest.mark.parametrize("name", [LIN, NYS])
def test_fully_padded_sample_is_finite_with_finite_gradients(name):
    q, k, v = (x.requires_grad_() for x in qkv(2, 11))
    valid = torch.ones(2, 11, dtype=torch.bool)
    valid[1] = False
    out = build(name, landmarks=4)(q, k, v, valid) if name == NYS else build(name, k=4)(q, k, v, valid)
    out.square().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


# ------------------------------------------------------------------------------- dtypes, awkward T, gradients

@pytest.mark.parametrize("name", [LIN, NYS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("T", [1, 97, 1025])
def test_dtype_shape_finite_and_gradients(name, dtype, T):
    attn = build(name)
    q, k, v = (x.requires_grad_() for x in qkv(1, T, dtype))
    out = attn(q, k, v)
    assert out.shape == q.shape and out.dtype == dtype
    out.float().square().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(x.grad).all() and x.grad.dtype == dtype for x in (q, k, v))
    if name == LIN:
        assert torch.isfinite(attn.E.grad).all() and torch.isfinite(attn.F.grad).all()


@pytest.mark.parametrize("name", [LIN, NYS])
def test_bf16_close_to_fp32(name):
    attn = build(name)
    q, k, v = qkv(1, 300)
    out32 = attn(q, k, v)
    out16 = attn(*(x.bfloat16() for x in (q, k, v)))
    torch.testing.assert_close(out16.float(), out32, rtol=0, atol=0.1)


@pytest.mark.parametrize("name", [LIN, NYS])
def test_deterministic(name):
    q, k, v = qkv(2, 50)
    torch.testing.assert_close(build(name)(q, k, v), build(name)(q, k, v), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ rejected inputs

def test_linformer_rejects_sequences_longer_than_max_seq_len():
    attn = build(LIN, max_seq_len=32, k=8)
    with pytest.raises(ValueError, match="max_seq_len"):
        attn(*qkv(1, 33))
    assert attn(*qkv(1, 32)).shape == (1, H, 32, D)


@pytest.mark.parametrize("name", [LIN, NYS])
def test_causal_is_refused(name):
    with pytest.raises(NotImplementedError, match="causal"):
        variants.create(name, d_head=D, n_heads=H, causal=True, max_seq_len=64)


@pytest.mark.parametrize("name, param", [(LIN, "k"), (NYS, "landmarks"), (NYS, "pinv_iters")])
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "8"])
def test_bad_params_raise_value_error_naming_the_param(name, param, value):
    with pytest.raises(ValueError, match=param):
        build(name, **{param: value})


@pytest.mark.parametrize("name", [LIN, NYS])
def test_unknown_param_raises_type_error(name):
    with pytest.raises(TypeError, match="rank"):
        build(name, rank=4)


# ------------------------------------------------------------------------------------- declared FLOPs, bytes

FLOP_CASES = [(LIN, {}), (LIN, {"k": 5}), (NYS, {}), (NYS, {"landmarks": 7, "pinv_iters": 3})]


@pytest.mark.parametrize("name, params", FLOP_CASES)
@pytest.mark.parametrize("T", [1, 3, 64, 97, 1025])
@pytest.mark.parametrize("padded", [False, True])
def test_flop_counter_matches_spec(name, params, T, padded):
    attn = build(name, **params)
    q, k, v = qkv(2, T)
    with FlopCounterMode(display=False) as counter:
        attn(q, k, v, padding_mask(2, T) if padded else None)
    assert counter.get_total_flops() == attn.flops(2, T)
    assert attn.flops(2, T) == attn.spec.analytic_flops(2, H, T, D, **attn.params)


@pytest.mark.parametrize("name", [LIN, NYS])
def test_flops_and_bytes_grow_linearly_at_large_T(name):
    spec = variants.get(name).spec
    T = 2 ** 16
    assert spec.analytic_flops(1, 4, 2 * T, 64) / spec.analytic_flops(1, 4, T, 64) == pytest.approx(2, rel=0.05)
    assert spec.analytic_bytes(1, 4, 2 * T, 64) / spec.analytic_bytes(1, 4, T, 64) == pytest.approx(2, rel=0.05)
    assert spec.analytic_bytes(1, 4, T, 64, elem_bytes=2) * 2 == spec.analytic_bytes(1, 4, T, 64)


def test_nystrom_flops_use_min_of_landmarks_and_T():
    flops = variants.get(NYS).spec.analytic_flops
    assert flops(1, 1, 10, 8, landmarks=64, pinv_iters=2) == flops(1, 1, 10, 8, landmarks=10, pinv_iters=2)


# ---------------------------------------------------------------------------------------- spec and parameters

@pytest.mark.parametrize("k, max_seq_len", [(64, 4096), (3, 17)])
def test_linformer_parameter_count(k, max_seq_len):
    attn = build(LIN, max_seq_len=max_seq_len, k=k)
    assert sum(p.numel() for p in attn.parameters()) == 2 * k * max_seq_len
    assert attn.E.shape == attn.F.shape == (k, max_seq_len)


def test_linformer_init_is_normal_with_std_one_over_sqrt_k():
    attn = build(LIN, max_seq_len=4096, k=64)
    assert attn.E.std().item() == pytest.approx(1 / 8, rel=0.02)
    assert attn.E.mean().abs().item() < 0.01
    assert not torch.equal(attn.E, attn.F)


def test_nystrom_has_no_parameters():
    assert list(build(NYS).parameters()) == []


@pytest.mark.parametrize("cls", [LinformerAttention, NystromAttention])
def test_specs(cls):
    spec = cls.spec
    assert variants.get(spec.name) is cls and spec.name in variants.names("low_rank")
    assert spec.family == "low_rank" and not spec.exact and not spec.supports_causal and spec.supports_key_valid
    assert spec.time_exponent == 1.0 and spec.memory_exponent == 1.0
    assert spec.paper is not None and spec.paper.arxiv in cls.__doc__
    assert spec.fixed_length == (cls is LinformerAttention)
