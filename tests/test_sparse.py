"""sparse_window and sparse_bigbird: exact against dense masked references, O(T·w) by construction, honest FLOPs."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import variants
from op_outputs import OpOutputs
from variants import reference_attention
from variants.base import masked_softmax_av

B, H, D = 2, 3, 8


def make(name: str, T: int, causal: bool = False, **params):
    return variants.create(name, d_head=D, n_heads=H, causal=causal, max_seq_len=max(T, 1), **params)


def qkv(T: int, dtype=torch.float64, seed: int = 0, b: int = B, h: int = H, d: int = D):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, T, d, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3)]


def some_padding(T: int, seed: int = 1) -> torch.Tensor:
    """(B, T) key_valid: row 0 all valid, row 1 random with the first key always valid."""
    gen = torch.Generator().manual_seed(seed)
    kv = torch.rand(B, T, generator=gen) > 0.3
    kv[0] = True
    kv[1, 0] = True
    return kv


def band_mask(T: int, w: int, causal: bool) -> torch.Tensor:
    """(T, T) bool built densely here, independently of the implementation."""
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # query minus key
    return (d >= 0) & (d <= w) if causal else d.abs() <= w


def bigbird_mask(T: int, causal: bool, block_size: int, window: int, n_global: int, random_blocks,
                 **_) -> torch.Tensor:
    """(T, T) bool: BigBird's pattern from its definition (Zaheer et al. 2020, section 2), built densely here.

    Query i sees key j when |i - j| <= window, when j is one of the first ``n_global`` tokens, when i is one of them
    (non-causal only: global queries see everything), or when j lies in a key block that i's query block drew at
    random (``random_blocks``, (nb, slots) block ids, -1 unused: read from the variant, as data). Causal keeps
    j <= i. Blocks are ``block_size`` tokens, the last one cut at T.
    """
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    mask = ((i - j).abs() <= window) | (j < n_global)
    if not causal:
        mask |= i < n_global
    for qb, drawn in enumerate([] if random_blocks is None else random_blocks.tolist()):
        for kb in drawn:
            if kb >= 0:
                mask[qb * block_size:(qb + 1) * block_size, kb * block_size:(kb + 1) * block_size] = True
    return mask & (j <= i) if causal else mask


def textbook_pattern(a, T: int) -> torch.Tensor:
    """The pattern a built variant should have, from its params and (BigBird) its random draws only."""
    p = a.params
    if a.spec.name == "sparse_window":
        return band_mask(T, p["window"], a.causal)
    return bigbird_mask(T, a.causal, random_blocks=a.random_blocks(T), **p)


def dense_reference(q, k, v, pattern: torch.Tensor, key_valid=None) -> torch.Tensor:
    """softmax over the allowed keys only, in float64; rows with nothing allowed are NaN (the interface leaves
    them unspecified, so ``assert_close_defined`` skips them and only asks that they be finite)."""
    qd, kd, vd = (x.double() for x in (q, k, v))
    scores = qd @ kd.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T) -> (B, H, T, T)
    mask = pattern if key_valid is None else pattern & key_valid[:, None, None, :]
    out = masked_softmax_av(scores, vd, mask)
    return out.masked_fill(~mask.any(dim=-1, keepdim=True), float("nan"))


def assert_close_defined(out, expected, **tol):
    """Compare rows where the reference is defined; every row of ``out`` must be finite."""
    assert torch.isfinite(out).all()
    defined = ~torch.isnan(expected).any(dim=-1, keepdim=True).expand_as(expected)
    torch.testing.assert_close(out[defined], expected.to(out.dtype)[defined], **tol)


# ----------------------------------------------------------------------------------------------- sliding window

@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("w", [1, 3, 16, 200])
@pytest.mark.parametrize("T", [1, 5, 64, 97, 130])
def test_window_matches_dense_band(T, w, causal, padded):
    q, k, v = qkv(T)
    kv = some_padding(T) if padded else None
    out = make("sparse_window", T, causal, window=w)(q, k, v, key_valid=kv)
    expected = dense_reference(q, k, v, band_mask(T, w, causal), kv)
    assert_close_defined(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 7, 64, 97])
def test_window_covering_T_is_full_attention(T, causal):
    q, k, v = qkv(T, torch.float32)
    kv = some_padding(T)
    for w in (T, T + 5):
        out = make("sparse_window", T, causal, window=w)(q, k, v, key_valid=kv)
        torch.testing.assert_close(out, reference_attention(q, k, v, causal, kv), rtol=1e-5, atol=1e-5)


def test_window_pattern_is_the_band():
    for causal in (False, True):
        a = make("sparse_window", 97, causal, window=5)
        assert torch.equal(a.pattern(97), band_mask(97, 5, causal))


# ----------------------------------------------------------------------------------------------------- BigBird

BIGBIRD_CASES = [
    dict(block_size=4, window=4, n_global=2, n_random=2),
    dict(block_size=8, window=3, n_global=0, n_random=3),
    dict(block_size=5, window=12, n_global=7, n_random=1),
    dict(block_size=16, window=16, n_global=2, n_random=0),
    dict(block_size=3, window=1, n_global=40, n_random=4, seed=5),
]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 5, 64, 97])
@pytest.mark.parametrize("params", BIGBIRD_CASES, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_bigbird_matches_dense_reference_of_its_pattern(params, T, causal, padded):
    q, k, v = qkv(T)
    kv = some_padding(T) if padded else None
    a = make("sparse_bigbird", T, causal, **params)
    expected = dense_reference(q, k, v, textbook_pattern(a, T), kv)
    assert_close_defined(a(q, k, v, key_valid=kv), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 5, 97])
@pytest.mark.parametrize("params", BIGBIRD_CASES, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_bigbird_pattern_is_the_textbook_one(params, T, causal):
    a = make("sparse_bigbird", T, causal, **params)
    assert torch.equal(a.pattern(T), textbook_pattern(a, T))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("params", BIGBIRD_CASES, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_bigbird_random_draws_follow_the_paper(params, causal):
    """Per query block: min(n_random, candidates) distinct key blocks, each outside the window blocks and not made
    only of global tokens (causal: wholly before the window)."""
    T = 97
    a = make("sparse_bigbird", T, causal, **params)
    p = a.params
    b = min(p["block_size"], T)
    nb, reach, global_blocks = -(-T // b), -(-p["window"] // b), min(p["n_global"], T) // b
    drawn = a.random_blocks(T)
    for i in range(nb):
        candidates = {j for j in range(global_blocks, nb) if (j < i - reach if causal else abs(j - i) > reach)}
        mine = [] if drawn is None else [j for j in drawn[i].tolist() if j >= 0]
        assert len(set(mine)) == len(mine) == min(p["n_random"], len(candidates))
        assert set(mine) <= candidates


@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_counts_each_key_once(causal):
    """In every tile row the allowed key positions are distinct (window, random and global parts overlap)."""
    a = make("sparse_bigbird", 200, causal, block_size=8, window=9, n_global=20, n_random=5)
    kpos, allow = a.layout(200)
    nb, b, nk = allow.shape
    for i in range(nb):
        for s in range(b):
            keys = kpos[i][allow[i, s]]
            assert keys.unique().numel() == keys.numel()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 33, 97])
def test_bigbird_window_covering_T_is_full_attention(T, causal):
    q, k, v = qkv(T, torch.float32)
    kv = some_padding(T)
    a = make("sparse_bigbird", T, causal, block_size=16, window=T, n_global=3, n_random=2)
    torch.testing.assert_close(a(q, k, v, key_valid=kv), reference_attention(q, k, v, causal, kv),
                               rtol=1e-5, atol=1e-5)


def test_bigbird_random_blocks_are_seeded():
    T = 1024
    same = [make("sparse_bigbird", T, seed=3).random_blocks(T) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], make("sparse_bigbird", T, seed=4).random_blocks(T))
    q, k, v = qkv(T, torch.float32, b=1, h=H)
    torch.testing.assert_close(make("sparse_bigbird", T, seed=3)(q, k, v), make("sparse_bigbird", T, seed=3)(q, k, v),
                               rtol=0, atol=0)


def test_bigbird_random_blocks_are_spread():
    """Over many query blocks the random draws reach most candidate blocks (not a fixed subset)."""
    T, b = 2048, 32
    hit_blocks = set(make("sparse_bigbird", T).random_blocks(T).flatten().tolist()) - {-1}
    assert len(hit_blocks) > 0.8 * (T // b)


# ------------------------------------------------------------------------------------------- shared contracts

NAMES = ["sparse_window", "sparse_bigbird"]
SMALL = {"sparse_window": dict(window=4), "sparse_bigbird": dict(block_size=4, window=4, n_global=2, n_random=2)}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_key_valid_invariance(name, causal):
    T = 45
    q, k, v = qkv(T)
    kv = some_padding(T)
    a = make(name, T, causal, **SMALL[name])
    k2, v2 = k.clone(), v.clone()
    k2[~kv[:, None, :, None].expand_as(k)] = 1e3  # garbage at padded keys
    v2[~kv[:, None, :, None].expand_as(v)] = -1e3
    torch.testing.assert_close(a(q, k, v, key_valid=kv), a(q, k2, v2, key_valid=kv), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_causal_output_ignores_the_future(name):
    T, cut = 61, 30
    q, k, v = qkv(T)
    a = make(name, T, True, **SMALL[name])
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, cut:] = torch.randn_like(x[:, :, cut:])
    torch.testing.assert_close(a(q, k, v)[:, :, :cut], a(q2, k2, v2)[:, :, :cut], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_dtypes_finite_values_and_gradients(name, causal, dtype):
    T = 50
    q, k, v = (x.requires_grad_() for x in qkv(T, dtype))
    kv = some_padding(T)
    kv[1, :] = False  # a batch row with no valid key at all
    out = make(name, T, causal, **SMALL[name])(q, k, v, key_valid=kv)
    assert out.dtype == dtype and out.shape == q.shape and torch.isfinite(out).all()
    out.float().square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in (q, k, v))


# ------------------------------------------------------------------------------------------------------ FLOPs

def counted_flops(a, T: int) -> int:
    q, k, v = qkv(T, torch.float32, b=1, h=H)
    with FlopCounterMode(display=False) as counter:
        a(q, k, v)
    return counter.get_total_flops()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T,w", [(1, 4), (5, 3), (97, 16), (97, 200), (128, 32), (1025, 64), (1025, 7)])
def test_window_flops_match_flop_counter(T, w, causal):
    a = make("sparse_window", T, causal, window=w)
    assert counted_flops(a, T) == a.flops(1, T)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T,params", [
    (1, {}), (5, {}), (97, {}), (97, dict(window=200)), (1025, {}),
    (1025, dict(block_size=16, window=40, n_global=0, n_random=3)), (97, dict(block_size=8, n_global=50)),
])
def test_bigbird_flops_match_flop_counter(T, params, causal):
    a = make("sparse_bigbird", T, causal, **params)
    assert counted_flops(a, T) == a.flops(1, T)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_flops_and_memory_grow_linearly(name, causal):
    spec = variants.get(name).spec
    for fn in (spec.analytic_flops, spec.analytic_bytes):
        ratio = fn(1, 4, 2 * 65536 + 7, 64, causal=causal) / fn(1, 4, 65536 + 7, 64, causal=causal)
        assert ratio == pytest.approx(2.0, rel=0.05)


# ----------------------------------------------------------------------------------------------------- memory

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_no_T_by_T_tensor_is_ever_allocated(name, causal):
    T = 2048
    a = make(name, T, causal, window=32)
    q, k, v = (x.requires_grad_() for x in qkv(T, torch.float32, b=1))
    kv = some_padding(T)[:1]
    with OpOutputs() as rec:
        out = a(q, k, v, key_valid=kv)
        out.sum().backward()
    assert rec.largest < T * T, f"{rec.op} produced {rec.largest} elements"
    # memory_bytes models the forward without autograd (what the efficiency sweep's forward measures); the
    # probabilities saved for backward above belong to the forward+backward phase
    with OpOutputs() as rec, torch.inference_mode():
        a(q, k, v, key_valid=kv)
    assert rec.largest * 4 <= a.memory_bytes(1, T)


# ----------------------------------------------------------------------------------------------------- params

@pytest.mark.parametrize("name,params", [
    ("sparse_window", dict(window=0)), ("sparse_window", dict(window=-3)), ("sparse_window", dict(window=2.5)),
    ("sparse_bigbird", dict(block_size=0)), ("sparse_bigbird", dict(window=0)),
    ("sparse_bigbird", dict(n_global=-1)), ("sparse_bigbird", dict(n_random=-1)),
    ("sparse_bigbird", dict(seed=-1)), ("sparse_bigbird", dict(n_random=True)),
])
def test_bad_params_raise(name, params):
    with pytest.raises(ValueError, match=name):
        make(name, 16, **params)


def test_zero_global_and_random_are_allowed_and_unknown_params_rejected():
    make("sparse_bigbird", 16, n_global=0, n_random=0)
    with pytest.raises(TypeError):
        make("sparse_window", 16, windw=3)


def test_specs_declare_linear_sparse():
    for name in NAMES:
        spec = variants.get(name).spec
        assert spec.family == "sparse" and not spec.exact and spec.supports_causal and spec.supports_key_valid
        assert spec.time_exponent == 1.0 and spec.memory_exponent == 1.0 and spec.paper is not None


def test_the_recorder_does_see_a_T_by_T_tensor_in_full_attention():
    """Control for the test above: the dispatch recorder catches the dense baseline's (B, H, T, T) scores."""
    T = 512
    q, k, v = qkv(T, torch.float32, b=1)
    with OpOutputs() as rec:
        make("full_naive", T)(q, k, v)
    assert rec.largest >= T * T


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_dense_reference(name, causal):
    T = 37
    q, k, v = (x.requires_grad_() for x in qkv(T))
    kv = some_padding(T)
    a = make(name, T, causal, **SMALL[name])
    out = a(q, k, v, key_valid=kv)
    expected = dense_reference(q, k, v, textbook_pattern(a, T), kv)
    defined = ~torch.isnan(expected)  # rows with no allowed key are unspecified: keep them out of the loss
    grads = torch.autograd.grad(torch.where(defined, out, 0).sin().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(torch.where(defined, expected, 0).sin().sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
