"""Every registered variant under random inputs (hypothesis): any B, H, T (1 and primes included), D, dtype,
causal or not, random padding masks with fully padded rows and single valid tokens, inputs scaled from 1e-4 to
1e4 (large logits). Outputs are finite and shaped right; causal outputs ignore the future; padded keys' contents
never reach a query; a query with no valid key gets the documented finite output (``variants/base.py``).

Shapes are small (T <= 17, D <= 8, B, H <= 2) with each variant's chunk, window, block and budget drawn small too,
so every structure is exercised in milliseconds. 50 examples per property and variant in CI (300 to 400 per
property), 500 nightly: profiles in tests/reliability/conftest.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings, strategies as st

import variants

ALL = variants.names()
CAUSAL = [n for n in ALL if variants.get(n).spec.supports_causal]
PADDED = [n for n in ALL if variants.get(n).spec.supports_key_valid]
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
SCALES = (1e-4, 1e-2, 1.0, 1e2, 1e4)
LENGTHS = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 11, 13, 17]), st.integers(1, 17))  # 1 and primes; > a chunk
RTOL = {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 2e-2}
# Parameters scaled down with T <= 17, so the structure is still exercised: several chunks, windows and blocks
# shorter than T, budgets below and above T (the defaults, 32 or 64, would make most variants one dense block).
SMALL = {
    "linear_elu": {"chunk_size": st.sampled_from([1, 4, 64])},
    "linear_performer": {"chunk_size": st.sampled_from([1, 4, 64]), "n_features": st.sampled_from([4, 16])},
    "sparse_window": {"window": st.sampled_from([1, 3, 8])},
    "sparse_bigbird": {"block_size": st.sampled_from([2, 4]), "window": st.sampled_from([1, 4]),
                       "n_global": st.sampled_from([0, 1, 2]), "n_random": st.sampled_from([0, 1])},
    "low_rank_linformer": {"k": st.sampled_from([2, 8, 32])},
    "low_rank_nystrom": {"landmarks": st.sampled_from([2, 4, 32])},
}


@dataclass
class Inputs:
    attn: variants.Attention
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor | None
    scale: float

    def __call__(self, k=None, v=None) -> torch.Tensor:
        with torch.no_grad():
            return self.attn(self.q, self.k if k is None else k, self.v if v is None else v, self.valid)


def key_mask(draw, B: int, T: int) -> torch.Tensor:
    """A random (B, T) mask: each row all valid, random, one valid token, or (never the only row) none valid."""
    rows = []
    for b in range(B):
        kind = draw(st.sampled_from(["all", "random", "single", "none"] if b else ["all", "random", "single"]))
        if kind == "random":
            row = torch.tensor(draw(st.lists(st.booleans(), min_size=T, max_size=T)))
        else:
            row = torch.zeros(T, dtype=torch.bool) if kind != "all" else torch.ones(T, dtype=torch.bool)
            if kind == "single":
                row[draw(st.integers(0, T - 1))] = True
        rows.append(row)
    order = draw(st.permutations(range(B)))
    return torch.stack([rows[i] for i in order])


@st.composite
def inputs(draw, name: str, dtypes=DTYPES, causal: bool | None = None, masked: bool | None = None) -> Inputs:
    spec = variants.get(name).spec
    B, H, T = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(LENGTHS)
    D = draw(st.sampled_from([1, 2, 3, 8]))
    dtype, scale = draw(st.sampled_from(dtypes)), draw(st.sampled_from(SCALES))
    causal = draw(st.booleans()) if causal is None and spec.supports_causal else bool(causal)
    masked = draw(st.booleans()) if masked is None else masked
    valid = key_mask(draw, B, T) if masked and spec.supports_key_valid else None
    torch.manual_seed(draw(st.integers(0, 2**16)))
    params = {key: draw(values) for key, values in SMALL.get(name, {}).items()}
    attn = variants.create(name, d_head=D, n_heads=H, causal=causal, max_seq_len=32, **params).to(dtype)
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64).mul(scale).to(dtype) for _ in range(3))
    return Inputs(attn, q, k, v, valid, scale)


def assert_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    """Equal within the dtype's rounding, relative to the larger output (scales span 1e-4 … 1e4)."""
    if a.numel() == 0:
        return
    bound = RTOL[dtype] * max(float(a.abs().max()), float(b.abs().max()), 1e-30)
    assert float((a - b).abs().max()) <= bound


@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
def test_outputs_are_finite_and_shaped_like_q(name, data):
    x = data.draw(inputs(name))
    out = x()
    assert out.shape == x.q.shape and out.dtype == x.q.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CAUSAL)
@given(data=st.data())
def test_a_causal_output_ignores_the_future(name, data):
    x = data.draw(inputs(name, dtypes=(torch.float32, torch.float64), causal=True))
    T = x.q.shape[-2]
    cut = data.draw(st.integers(0, T - 1))
    k, v = x.k.clone(), x.v.clone()
    k[..., cut + 1:, :] = torch.randn_like(k[..., cut + 1:, :]) * 5 * x.scale
    v[..., cut + 1:, :] = torch.randn_like(v[..., cut + 1:, :]) * 5 * x.scale
    before, after = x(), x(k, v)
    seen = sees_a_valid_key(x)[..., :cut + 1, :]  # a query that sees none: documented as finite, nothing more
    assert_close(before[..., :cut + 1, :][seen], after[..., :cut + 1, :][seen], x.q.dtype)


def sees_a_valid_key(x: Inputs) -> torch.Tensor:
    """(B, H, T, D) bool: the queries that see at least one valid key (causal: among keys <= i; sparse: among
    the keys of their pattern)."""
    B, _, T, _ = x.q.shape
    valid = torch.ones(B, T, dtype=torch.bool) if x.valid is None else x.valid
    allowed = x.attn.pattern(T) if hasattr(x.attn, "pattern") else torch.ones(T, T, dtype=torch.bool)
    if x.attn.causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
    seen = (allowed[None] & valid[:, None, :]).any(-1)  # (B, T)
    return seen[:, None, :, None].expand_as(x.q)


@pytest.mark.parametrize("name", PADDED)
@given(data=st.data())
def test_padded_keys_never_reach_a_query(name, data):
    """Keys marked invalid may hold anything: the outputs at valid positions do not change, and a query that sees
    no valid key (a fully padded row) still gets a finite output."""
    x = data.draw(inputs(name, dtypes=(torch.float32, torch.float64), masked=True))
    pad = ~x.valid[:, None, :, None].expand_as(x.k)
    k, v = x.k.clone(), x.v.clone()
    k[pad] = torch.randn(int(pad.sum()), dtype=k.dtype) * 5 * x.scale
    v[pad] = torch.randn(int(pad.sum()), dtype=v.dtype) * 5 * x.scale
    before, after = x(), x(k, v)
    real = x.valid[:, None, :, None].expand_as(before) & sees_a_valid_key(x)
    assert_close(before[real], after[real], x.q.dtype)
    assert torch.isfinite(after).all()


def test_the_ci_profile_runs_at_least_200_examples_per_property():
    per_variant = settings.get_profile("ci").max_examples
    assert per_variant * min(len(ALL), len(CAUSAL), len(PADDED)) >= 200
    assert set(CAUSAL) <= set(ALL) and set(PADDED) <= set(ALL) and len(ALL) == len(variants.names())
