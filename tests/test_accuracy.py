"""bench.sweeps.accuracy: the grid, one tiny executed case, validation, the causal posing, and the summary."""
from __future__ import annotations

import dataclasses

import math

import numpy as np
import pandas as pd
import pytest

import variants
from bench.config import ConfigError, apply_overrides
from bench.analysis import accuracy as analysis
from bench.sweeps import accuracy
from bench.tasks import IGNORE, mqar, needle

METRICS = {"accuracy", "loss", "bits_per_byte", "steps_to_target", "censored", "curve", "steps_run", "train_s",
           "n_params"}
TINY = accuracy.Config(tasks=("mqar",), variants=("full_sdpa",), seq_lens=(16,), seeds=(0,), steps=4, batch_size=8,
                       eval_every=2, warmup=1, n_train=32, n_eval=16, d_model=16, n_layers=1, n_pairs=2,
                       mqar_vocab=16, threads=1)


def test_cases_grid_is_complete_and_unique():
    cfg = accuracy.Config(tasks=("mqar", "needle"), variants=("full_sdpa", "sparse_window", "low_rank_linformer"),
                          seq_lens=(128, 64), seeds=(0, 1, 2))
    cases = list(accuracy.cases(cfg))
    assert len(cases) == 2 * 3 * 2 * 3
    assert len({c.id for c in cases}) == len(cases)
    keys = {(c["task"], c["variant"], c["T"], c["seed"]) for c in cases}
    assert len(keys) == len(cases)
    assert [c["T"] for c in cases[:9]] == [64] * 9  # shortest T first within a task
    window = next(c for c in cases if c["variant"] == "sparse_window")
    assert window["attn_window"] == 32 and next(c for c in cases if "attn_k" in c.as_dict())["attn_k"] == 32
    assert all(c["token_shift"] for c in cases) and not any(c["causal"] for c in cases)


def test_empty_variants_means_every_registered_variant():
    cfg = accuracy.Config(variants=(), seq_lens=(64,), seeds=(0,))
    assert [c["variant"] for c in accuracy.cases(cfg)] == variants.names()


def test_profiles_validate_and_quick_is_the_documented_grid():
    for cfg in accuracy.PROFILES.values():
        cfg.validate()
    quick = list(accuracy.cases(accuracy.PROFILES["quick"]))
    assert len(quick) == 2 * len(accuracy.QUICK_VARIANTS) * 3
    assert {c["task"] for c in quick} == {"mqar", "needle"} and {c["T"] for c in quick} == {64}
    assert "listops" in accuracy.PROFILES["full"].tasks


def test_execute_tiny_case_returns_documented_metrics():
    (case,) = accuracy.cases(TINY)
    out = accuracy.execute(case)
    assert set(out) == METRICS
    assert not set(out) & set(case.as_dict())  # metrics never collide with case params (the store rejects that)
    assert 0.0 <= out["accuracy"] <= 1.0 and math.isfinite(out["loss"]) and out["bits_per_byte"] is None
    assert out["censored"] == (out["steps_to_target"] is None)
    assert [p[0] for p in out["curve"]][0] == 0 and out["steps_run"] <= 4 and out["n_params"] > 0
    assert out == {**accuracy.execute(case), "train_s": out["train_s"]}  # seeded: the same numbers again


def test_non_causal_variant_on_causally_posed_task_is_unsupported():
    cfg = accuracy.Config(**{**dataclasses.asdict(TINY), "variants": ("low_rank_linformer",),
                             "bidirectional": False})
    (case,) = accuracy.cases(cfg)
    assert case["causal"] is True
    with pytest.raises(NotImplementedError, match="causal"):
        accuracy.execute(case)


def test_posing_text_bytes_stays_causal_and_classify_tasks_are_not():
    cfg = accuracy.Config()
    assert accuracy.posed_causal(cfg, "text_bytes") and not accuracy.posed_causal(cfg, "mqar")
    assert not accuracy.posed_causal(cfg, "listops") and not accuracy.posed_causal(cfg, "local_motif")
    assert accuracy.posed_causal(accuracy.Config(bidirectional=False), "needle")


def test_leak_free_tasks_hold_nothing_after_a_query_that_gives_the_answer():
    """The premise of posing MQAR and needle non-causally: later inputs carry the answer only by chance."""
    data = mqar.make(mqar.Config(seq_len=64, n_pairs=8, vocab_size=256), 0, 512)
    x, y = data.x.numpy(), data.y.numpy()
    rows, pos = np.nonzero(y != IGNORE)
    later = [(x[r, p + 1:] == y[r, p]).mean() for r, p in zip(rows, pos) if p + 1 < x.shape[1]]
    assert np.mean(later) < 2.0 / 256  # filler is uniform: about 1/V, not the Zoology layout (value after key)
    data = needle.make(needle.Config(seq_len=64, distance=40), 0, 256)
    values = (data.x >= 1) & (data.x <= 16)
    assert (values.sum(dim=1) == 1).all()  # the needle's value occurs once, before the query


@pytest.mark.parametrize("override, message", [
    ({"tasks": "nope"}, "unknown task"),
    ({"variants": "full_sdpa,nope"}, "unknown variant"),
    ({"seq_lens": "64,0"}, "positive"),
    ({"seq_lens": "-8"}, "positive"),
    ({"tasks": "mqar", "seq_lens": "16"}, "mqar"),  # 8 pairs do not fit T = 16
    ({"steps": "0"}, "steps"),
])
def test_validate_rejects_bad_config(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(accuracy.Config(), override)


def test_summarize_mean_std_and_censored_median():
    rows = [dict(task="mqar", variant="v", T=64, seed=s, status="ok", accuracy=a, loss=1.0, bits_per_byte=None,
                 steps_to_target=st, censored=st is None, steps=1000, train_s=1.0)
            for s, a, st in [(0, 1.0, 300), (1, 0.99, 500), (2, 0.4, None)]]
    rows += [dict(task="mqar", variant="w", T=64, seed=s, status="ok", accuracy=0.2, loss=2.0, bits_per_byte=None,
                  steps_to_target=None, censored=True, steps=1000, train_s=1.0) for s in range(3)]
    rows.append(dict(task="mqar", variant="w", T=64, seed=9, status="timeout"))
    table = analysis.summary(pd.DataFrame(rows)).set_index("variant")
    assert table.loc["v", "acc_mean"] == pytest.approx((1.0 + 0.99 + 0.4) / 3)
    assert table.loc["v", "acc_std"] == pytest.approx(np.std([1.0, 0.99, 0.4], ddof=1))
    assert table.loc["v", "steps_to_target_median"] == 500 and table.loc["v", "reached"] == "2/3"
    assert math.isnan(table.loc["w", "steps_to_target_median"]) and table.loc["w", "seeds"] == 3
