"""The interpretability limit: every variant's effective map, the capture hook, the metrics on hand-built cases,
and the sweep end to end (a cached model is read, not trained again)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import variants
from bench import store
from bench.analysis import interpretability as metrics
from bench.measure.attribution import attention_maps, occlusion
from bench.plots.interpretability import fig_interpretability
from bench.run import run_sweep
from bench.sweeps import accuracy, interpretability
from bench.tasks import needle
from variants.base import Attention, AttentionSpec, register, unregister
from variants.model import ModelConfig, Transformer, capture_maps

ROWS_SUM_TO_ONE = ("full", "sparse", "linear")  # low-rank maps are products of softmaxes and projections


def _inputs(name: str, causal: bool, T: int = 45, D: int = 8):
    spec = variants.get(name).spec
    attn = variants.create(name, d_head=D, n_heads=2, causal=causal, max_seq_len=64).double()
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, T, D, generator=gen, dtype=torch.float64) for _ in range(3))
    key_valid = None
    if spec.supports_key_valid:
        key_valid = torch.ones(2, T, dtype=torch.bool)
        key_valid[1, -6:] = False
    return attn, q, k, v, key_valid


POSINGS = [(n, c) for n in variants.names() for c in ((False, True) if variants.get(n).spec.supports_causal
                                                      else (False,))]


@pytest.mark.parametrize("name,causal", POSINGS)
def test_map_times_values_is_the_output(name, causal):
    attn, q, k, v, key_valid = _inputs(name, causal)
    out = attn(q, k, v, key_valid)
    M = attn.effective_map(q, k, key_valid)
    assert M.shape == (2, 2, 45, 45)
    torch.testing.assert_close(M @ v, out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(attn(q, k, v, key_valid), out, rtol=0, atol=0)  # the forward is unchanged
    if causal:
        assert M.triu(diagonal=1).abs().max() == 0  # no query weighs a later value


@pytest.mark.parametrize("name,causal", POSINGS)
def test_rows_sum_to_one_where_the_mechanism_normalises(name, causal):
    attn, q, k, _, key_valid = _inputs(name, causal)
    if attn.spec.family not in ROWS_SUM_TO_ONE:
        pytest.skip(f"{attn.spec.family} maps need not be stochastic")
    M = attn.effective_map(q, k, key_valid)
    torch.testing.assert_close(M.sum(-1), torch.ones(M.shape[:-1], dtype=M.dtype), rtol=0, atol=1e-6)
    assert M.min() >= 0
    if key_valid is not None:
        assert M[1, ..., -6:].abs().max() == 0  # padded keys get no weight


def test_capture_records_every_layer_without_changing_outputs():
    model = Transformer(ModelConfig(vocab_size=20, max_seq_len=16, attention="sparse_window",
                                    attention_params={"window": 4}, n_layers=3, causal=True)).eval()
    x = torch.randint(0, 20, (2, 16))
    before = model(x)
    with capture_maps(model) as maps:
        inside = model(x)
    assert torch.equal(before, inside) and torch.equal(model(x), before)
    assert len(maps) == 3 and all(m.shape == (2, 2, 16, 16) for m in maps)


# ------------------------------------------------------------------------------------ a hand-built model


def test_answer_position_is_the_value_after_the_asked_key():
    data = needle.make(needle.Config(seq_len=48, n_needles=3), seed=0, n=4, split="test")
    x, y = data.x.numpy(), data.y.numpy()
    rows, positions, truth = metrics.answer_positions(x, y)
    assert rows.size == 12 and (truth > 0).all() and (truth < positions).all()
    assert (x[rows, truth] == y[rows, positions]).all() and (x[rows, truth - 1] == x[rows, positions]).all()


@pytest.fixture
def forced():
    """A registered variant whose map is set by hand (``ForcedAttention.target``): each query reads one value."""

    @register
    class ForcedAttention(Attention):
        spec = AttentionSpec(name="full_forced", family="full", time_complexity="O(T²)", memory_complexity="O(T²)",
                             exact=False, supports_causal=True, supports_key_valid=True,
                             flops=lambda B, H, T, D, *, causal: 0, memory_bytes=lambda B, H, T, D, *, causal,
                             elem_bytes: 0)
        target: torch.Tensor  # (T,) long: the key each query attends to, in every row (no padding in the test)

        def _attend(self, q, k, v, key_valid):
            return torch.nn.functional.one_hot(self.target, q.shape[-2]).to(q.dtype) @ v  # (T, T) @ (B, H, T, D)

    yield ForcedAttention
    unregister("full_forced")


def test_attention_forced_onto_the_key_aligns_fully_and_occlusion_ignores_the_rest(forced):
    data = needle.make(needle.Config(seq_len=40, n_needles=3), seed=1, n=1, split="test")
    x, y = data.x.numpy(), data.y.numpy()
    rows, positions, truth = metrics.answer_positions(x, y)
    target = torch.arange(40)  # every other query attends to itself
    target[positions] = torch.as_tensor(truth)
    forced.target = target
    model = Transformer(ModelConfig(vocab_size=64, max_seq_len=40, attention="full_forced", causal=True)).eval()
    maps = attention_maps(model, data.x, data.valid)
    weights = metrics.query_weights(maps, rows, positions)  # (L, H, Q, T)
    mass, hit = metrics.alignment(weights, truth)
    assert np.allclose(mass, 1.0) and np.allclose(hit, 1.0)
    r, p, t = torch.as_tensor(rows[:2]), torch.as_tensor(positions[:2]), data.y[rows[:2], positions[:2]]
    drop = occlusion(model, data.x, data.valid, r, p, t)
    for i in range(2):  # the answer depends on the query, the key it reads and their predecessors (token shift)
        relevant = {positions[i], positions[i] - 1, truth[i], truth[i] - 1}
        irrelevant = [j for j in range(40) if j not in relevant]
        assert np.all(drop[i, irrelevant] == 0.0)
        assert abs(drop[i, truth[i]]) > 0


def test_rank_agreement_equals_the_hand_computed_values():
    weights = np.array([[0.0, 0.0, 1.0, 0.0]])  # attention forced onto key 2
    importance = np.array([[0.1, 0.3, 0.9, 0.2]])
    got = metrics.rank_agreement(weights[None], importance, np.ones((1, 4), dtype=bool))
    # τ-b: 3 concordant pairs (key 2 against each other key), 3 tied in the weights: 3 / sqrt(3 · 6)
    assert got["kendall"][0, 0] == pytest.approx(3 / math.sqrt(18))
    # ρ: ranks (2, 2, 4, 2) and (1, 3, 4, 2): covariance 3 over sqrt(3 · 5)
    assert got["spearman"][0, 0] == pytest.approx(3 / math.sqrt(15))
    flat = metrics.rank_agreement(np.full((1, 1, 4), 0.25), importance, np.ones((1, 4), dtype=bool))
    assert np.isnan(flat["kendall"]).all()  # uniform attention ranks nothing


def test_weight_shares_keep_stochastic_maps_and_normalise_signed_ones():
    stochastic = np.array([[0.2, 0.8], [1.0, 0.0]])
    assert np.allclose(metrics.weight_shares(stochastic), stochastic)
    assert np.allclose(metrics.weight_shares(np.array([[-3.0, 1.0], [0.0, 0.0]])), [[0.75, 0.25], [0.0, 0.0]])


def test_rollout_of_one_layer_mixes_in_the_residual_and_uniform_baselines():
    A = np.array([[1.0, 0.0], [1.0, 0.0]])
    maps = A[None, None, None]  # (L=1, N=1, H=1, 2, 2)
    assert np.allclose(metrics.rollout(maps)[0], [[1.0, 0.0], [0.5, 0.5]])
    seen = np.array([[True, False], [True, True]])
    assert metrics.uniform_alignment(seen) == pytest.approx(0.75)
    uniform = seen / seen.sum(axis=-1, keepdims=True)
    assert metrics.entropy(uniform, seen) == pytest.approx(np.log(2) / 2)


# ------------------------------------------------------------------------------------------- the sweep


@pytest.fixture
def tiny_profile(monkeypatch):
    acc = accuracy.Config(variants=("full_sdpa", "low_rank_linformer"), seq_lens=(24,), seeds=(0, 1), lr_grid=(3e-3,),
                          steps=60, patience=0, eval_every=30, n_train=128, n_eval=16, tasks=("needle",), n_needles=2,
                          linformer_k=8)
    monkeypatch.setitem(accuracy.PROFILES, "tiny", acc)
    return interpretability.Config(accuracy_profile="tiny", n_rows=4, n_queries=3, min_seeds=3, jobs=2)


def test_cases_reuse_the_accuracy_ids_and_add_seeds_at_the_shortest_length(tiny_profile):
    cases = interpretability.cases(tiny_profile)
    acc = accuracy.PROFILES["tiny"]
    ids = {accuracy.make_case(acc, "needle", 24, v, s, 3e-3).id for v in acc.variants for s in (0, 1, 2)}
    assert {c["model"] for c in cases} == ids and len(cases) == 6
    assert {c["causal"] for c in cases if c["variant"] == "low_rank_linformer"} == {False}


def test_the_sweep_runs_end_to_end_and_reuses_cached_models(tiny_profile, tmp_path):
    sweep = interpretability.SWEEP
    first = run_sweep(sweep, tiny_profile, profile="tiny", out_dir=tmp_path / "a", progress=False)
    second = run_sweep(sweep, tiny_profile, profile="tiny", out_dir=tmp_path / "b", progress=False)
    rows1, rows2 = store.load(first), store.load(second)
    assert (rows1["status"] == "ok").all() and rows1["trained"].all() and len(rows1) == 6
    assert (rows2["status"] == "ok").all() and not rows2["trained"].any() and rows2["train_s"].isna().all()
    cols = ["case_id", "alignment", "tau_grad", "entropy"]
    same = [r.sort_values("case_id")[cols].reset_index(drop=True).to_json() for r in (rows1, rows2)]
    assert same[0] == same[1]  # the cached model reads the same
    table = metrics.summary(rows2)
    assert set(table["variant"]) == {"full_sdpa", "low_rank_linformer"}
    assert table.set_index("T")["seeds"].to_dict() == {24: 3}
    result = fig_interpretability(rows2, store.load_manifests(second), tmp_path / "fig")
    assert result.paths[0].exists() and not result.table.empty
    assert len(re.findall(r"[.!?](\s|$)", result.caption)) == 2, result.caption


def test_bad_config_is_a_one_line_error():
    from bench.config import ConfigError
    with pytest.raises(ConfigError, match="accuracy-profile"):
        interpretability.Config(accuracy_profile="nope").validate()
    with pytest.raises(ConfigError, match="answer position"):
        interpretability.Config(tasks=("listops",)).validate()
