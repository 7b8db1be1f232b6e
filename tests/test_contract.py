"""Contract tests: every registered variant, whatever its family, honours the one interface."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import variants
from op_outputs import OpOutputs
from variants import reference_attention

ALL = variants.names()
CAUSAL = [n for n in ALL if variants.get(n).spec.supports_causal]
PADDED = [n for n in ALL if variants.get(n).spec.supports_key_valid]
H, D = 2, 8
MAX_T = 2048


def build(name: str, causal: bool = False, **params):
    torch.manual_seed(0)
    return variants.create(name, d_head=D, n_heads=H, causal=causal, max_seq_len=MAX_T, **params)


def qkv(B=2, T=33, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)
            for _ in range(3)]


def right_padding(B: int, T: int) -> torch.Tensor:
    lengths = torch.tensor([T, max(1, T - T // 3)])[:B]
    return torch.arange(T)[None, :] < lengths[:, None]


def test_eight_variants_across_four_families():
    assert len(ALL) >= 8
    assert {s.family for s in variants.specs()} == set(variants.FAMILIES)
    for fam in variants.FAMILIES:
        assert all(variants.get(n).spec.family == fam for n in variants.names(fam))


@pytest.mark.parametrize("name", ALL)
def test_spec_is_complete(name):
    spec = variants.get(name).spec
    assert spec.paper is not None and spec.paper.year > 2000 and spec.paper.arxiv
    assert spec.time_complexity.startswith("O(") and spec.memory_complexity.startswith("O(")
    assert spec.analytic_flops(1, 1, 64, 8) > 0
    assert spec.analytic_bytes(1, 1, 64, 8) > 0


@pytest.mark.parametrize("name", ALL)
def test_formulas_name_exactly_the_declared_params(name):
    """Strict formulas: the shape, ``causal`` (and ``elem_bytes``) and exactly the keys of ``default_params``, with
    no catch-all and no defaults of their own; the constructor accepts the same params with the same defaults."""
    spec = variants.get(name).spec
    for formula, extra in ((spec.flops, set()), (spec.memory_bytes, {"elem_bytes"})):
        params = inspect.signature(formula).parameters.values()
        assert {p.name for p in params} == {"B", "H", "T", "D", "causal"} | extra | set(spec.default_params)
        assert all(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty for p in params)
    assert build(name).params == dict(spec.default_params) == build(name, **spec.default_params).params
    with pytest.raises(TypeError, match="unknown parameter"):
        build(name, **spec.default_params, not_a_param=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_finite(name, dtype):
    attn = build(name).to(dtype)
    q, k, v = qkv(dtype=dtype)
    out = attn(q, k, v)
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_gradients_are_finite(name):
    attn = build(name)
    q, k, v = qkv(requires_grad=True)
    attn(q, k, v).square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("name", CAUSAL)
def test_causality(name):
    attn = build(name, causal=True)
    T, cut = 97, 40
    q, k, v = qkv(T=T)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, cut:] = torch.randn_like(x[:, :, cut:]) * 3
    before, after = attn(q, k, v), attn(q2, k2, v2)
    torch.testing.assert_close(before[:, :, :cut], after[:, :, :cut], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before[:, :, cut:], after[:, :, cut:])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", PADDED)
def test_key_valid_invariance(name, causal):
    if causal and name not in CAUSAL:
        pytest.skip("variant is non-causal only")
    attn = build(name, causal=causal)
    B, T = 2, 61
    valid = right_padding(B, T)
    q, k, v = qkv(B=B, T=T)
    k2, v2 = k.clone(), v.clone()
    pad = ~valid[:, None, :, None].expand_as(k)
    k2[pad] = torch.randn(int(pad.sum())) * 5
    v2[pad] = torch.randn(int(pad.sum())) * 5
    a, b = attn(q, k, v, valid), attn(q, k2, v2, valid)
    real = valid[:, None, :, None].expand_as(a)
    torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_inference_forward_equals_the_autograd_forward(name, causal, padded):
    """Variants may work in place when no gradient is needed (a softmax written over its scores): same output."""
    if causal and name not in CAUSAL:
        pytest.skip("variant is non-causal only")
    if padded and name not in PADDED:
        pytest.skip("variant takes no padding mask")
    attn = build(name, causal=causal)
    B, T = 2, 61
    valid = right_padding(B, T) if padded else None
    q, k, v = (x.requires_grad_() for x in qkv(B=B, T=T))
    with_grad = attn(q, k, v, valid)
    assert with_grad.requires_grad
    with torch.inference_mode():
        inference = attn(q.detach(), k.detach(), v.detach(), valid)
    torch.testing.assert_close(inference, with_grad.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_seeded_determinism(name):
    q, k, v = qkv()
    a = build(name)(q, k, v)
    b = build(name)(q, k, v)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("T", [1, 97, 1025])
@pytest.mark.parametrize("name", ALL)
def test_awkward_lengths(name, T):
    attn = build(name)
    q, k, v = qkv(B=1, T=T)
    out = attn(q, k, v)
    assert out.shape == q.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ["full_naive", "full_sdpa"])
def test_exact_variants_match_reference(name, causal):
    q, k, v = qkv(B=2, T=129)
    valid = right_padding(2, 129)
    ref = reference_attention(q, k, v, causal, valid).double()
    naive_fp32 = reference_attention(q, k, v, causal, valid, dtype=torch.float32).double()
    naive_err = (naive_fp32 - ref).abs().max().item()
    err = (build(name, causal=causal)(q, k, v, valid).double() - ref).abs().max().item()
    assert err <= 2 * naive_err + 1e-7, (err, naive_err)


def counted_flops(attn, T: int) -> int:
    q, k, v = qkv(B=1, T=T)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        attn(q, k, v)
    return counter.get_total_flops()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_counted_flops_match_spec_and_declared_growth(name, causal):
    if causal and name not in CAUSAL:
        pytest.skip("variant is non-causal only")
    attn = build(name, causal=causal)
    T = 1024
    small, large = counted_flops(attn, T), counted_flops(attn, 2 * T)
    assert small == pytest.approx(attn.flops(1, T), rel=0.01)
    assert large == pytest.approx(attn.flops(1, 2 * T), rel=0.01)
    # The declared exponent is asymptotic (Nyström's m³ pseudo-inverse is a constant that dominates at small T):
    # the counted FLOPs equal the formula above, and the formula grows as declared at large T.
    big = 2 ** 16
    growth = attn.flops(1, 2 * big) / attn.flops(1, big)
    assert growth == pytest.approx(2 ** attn.spec.time_exponent, rel=0.1), growth


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_backward_work_grows_as_declared(name, causal):
    """Elements written by forward+backward grow no faster than the declared time exponent from T=2048 to 4096.
    Catches autograd-only blow-ups the forward FLOP count cannot see: per-chunk slicing of a (T, F) tensor made
    the causal linear backward O(T²/c) (growth 3.6 here) while its forward stayed O(T)."""
    if causal and name not in CAUSAL:
        pytest.skip("variant is non-causal only")

    def written(T):
        torch.manual_seed(0)
        attn = variants.create(name, d_head=D, n_heads=1, causal=causal, max_seq_len=4096)
        q, k, v = (torch.randn(1, 1, T, D, requires_grad=True) for _ in range(3))
        with OpOutputs() as mode:
            attn(q, k, v).sum().backward()
        return mode.elems_written

    growth = written(4096) / written(2048)
    assert growth <= 1.1 * 2 ** variants.get(name).spec.time_exponent, growth


@pytest.mark.parametrize("T", [200, 256])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_strided_inputs_as_a_model_makes_them(name, causal, T):
    """q, k, v split from one projection and transposed to (B, H, T, D), as a Transformer makes them (not
    contiguous), give the same output and gradients as contiguous copies. The sparse engine's backward once
    failed on them ("view size is not compatible") only in the efficiency sweep's training step."""
    if causal and name not in CAUSAL:
        pytest.skip("variant is non-causal only")
    attn = build(name, causal=causal)
    x = torch.randn(1, T, 3 * H * D, generator=torch.Generator().manual_seed(0), requires_grad=True)
    q, k, v = (t.view(1, T, H, D).transpose(1, 2) for t in x.split(H * D, dim=-1))  # batch 1: B·H is a view
    assert not q.is_contiguous()
    out = attn(q, k, v)
    (grad_x,) = torch.autograd.grad(out.square().sum(), x)
    y = x.detach().clone().requires_grad_()
    qc, kc, vc = (t.view(1, T, H, D).transpose(1, 2).contiguous() for t in y.split(H * D, dim=-1))
    ref = attn(qc, kc, vc)
    (grad_y,) = torch.autograd.grad(ref.square().sum(), y)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad_x, grad_y)


@pytest.mark.parametrize("name", ALL)
def test_analytic_memory_grows_as_declared(name):
    spec = variants.get(name).spec
    # Far out in T: full_sdpa's per-thread scratch (~1.2 MiB, O(1) in T) still outweighs its output at 16384 here.
    small = spec.analytic_bytes(1, H, 2 ** 20, D)
    large = spec.analytic_bytes(1, H, 2 ** 21, D)
    assert large / small == pytest.approx(2 ** spec.memory_exponent, rel=0.1)


# ---------------------------------------------------------------------------------- bad input, one-line errors

def test_unknown_variant_lists_known_names():
    with pytest.raises(variants.UnknownVariantError, match="full_sdpa") as info:
        variants.get("full_nope")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_unknown_param_rejected(name):
    with pytest.raises(TypeError, match="unknown parameter"):
        build(name, wndow=3)


@pytest.mark.parametrize("name", sorted(set(ALL) - set(CAUSAL)))
def test_causal_on_noncausal_variant_raises(name):
    with pytest.raises(NotImplementedError, match="causal"):
        build(name, causal=True)


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_name_the_problem(name):
    attn = build(name)
    q, k, v = qkv(T=16)
    with pytest.raises(ValueError, match="shapes differ"):
        attn(q, k[:, :, :8], v)
    with pytest.raises(TypeError, match="dtypes differ"):
        attn(q, k.double(), v)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        attn(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="must be >= 1"):
        attn(*(x[:, :, :0] for x in (q, k, v)))
    with pytest.raises(ValueError, match="built for"):
        attn(*(x[..., :4] for x in (q, k, v)))
    if attn.spec.supports_key_valid:
        with pytest.raises(ValueError, match="key_valid must be"):
            attn(q, k, v, torch.ones(2, 15, dtype=torch.bool))
        with pytest.raises(TypeError, match="torch.bool"):
            attn(q, k, v, torch.ones(2, 16))


@pytest.mark.parametrize("name", [n for n in ALL if variants.get(n).spec.fixed_length])
def test_fixed_length_rejects_long_sequences(name):
    attn = variants.create(name, d_head=D, n_heads=H, max_seq_len=32)
    q, k, v = qkv(T=33)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        attn(q, k, v)


@pytest.mark.parametrize("value", [0, -1])
def test_bad_construction_sizes(value):
    with pytest.raises(ValueError, match="positive int"):
        variants.create("full_naive", d_head=value, n_heads=1, max_seq_len=8)


def test_duplicate_registration_raises():
    cls = variants.get("full_naive")
    with pytest.raises(ValueError, match="already registered"):
        variants.register(type("Again", (cls,), {}))
