"""bench.sweeps.accuracy: the grid, one tiny executed case, validation, the causal posing, and the summary."""
from __future__ import annotations

import dataclasses

import math

import numpy as np
import pandas as pd
import pytest

import variants
from bench import checkpoints
from bench.config import ConfigError, apply_overrides
from bench.analysis import accuracy as analysis
from bench.sweeps import accuracy
from bench.tasks import IGNORE, mqar, needle

METRICS = {"accuracy", "trivial_accuracy", "trivial_rule", "loss", "bits_per_byte", "val_accuracy", "steps_to_target",
           "censored", "stop_reason", "best_step", "curve", "steps_run", "train_s", "n_params"}
TINY = accuracy.Config(tasks=("mqar",), variants=("full_sdpa",), seq_lens=(16,), seeds=(0,), steps=4, batch_size=8,
                       eval_every=2, warmup=1, n_train=32, n_eval=16, d_model=16, n_layers=1, n_pairs=2,
                       mqar_vocab=16, threads=1, lr_grid=(3e-3,))


def _lr_of(cfg, lr=3e-3):
    return {(t, v): lr for t in cfg.tasks for v in accuracy.selected_variants(cfg)}


def test_grid_is_complete_and_unique_with_causal_posing_where_the_variant_allows():
    cfg = accuracy.Config(tasks=("mqar", "needle"), variants=("full_sdpa", "sparse_window", "low_rank_linformer"),
                          seq_lens=(128, 64), seeds=(0, 1, 2))
    cases = list(accuracy.grid_cases(cfg, _lr_of(cfg)))
    # 3 variants, plus full attention posed bidirectionally beside Linformer's bidirectional column
    assert len(cases) == 2 * 4 * 2 * 3 and len({c.id for c in cases}) == len(cases)
    assert len({(c["task"], c["variant"], c["T"], c["seed"], c["causal"]) for c in cases}) == len(cases)
    assert [c["T"] for c in cases[:12]] == [64] * 12  # shortest T first within a task
    reference = {c["causal"] for c in cases if c["variant"] == "full_sdpa"}
    assert reference == {True, False}  # the reference in both posings, so each column has its own
    window = next(c for c in cases if c["variant"] == "sparse_window")
    assert window["attn_window"] == 32 and next(c for c in cases if "attn_k" in c.as_dict())["attn_k"] == 32
    assert {c["attn_window"] for c in cases if c["variant"] == "sparse_window"} == {32}  # budget fixed across T
    assert all(c["causal"] for c in cases if c["variant"] == "sparse_window")
    assert not any(c["causal"] for c in cases if c["variant"] == "low_rank_linformer")
    both = accuracy.Config(**{**dataclasses.asdict(cfg), "bidirectional": True})
    posed_both = list(accuracy.grid_cases(both, _lr_of(both)))
    assert not any(c["causal"] for c in posed_both) and len(posed_both) == 2 * 3 * 2 * 3  # no duplicate reference
    causal_only = accuracy.Config(**{**dataclasses.asdict(cfg), "variants": ("full_sdpa", "sparse_window")})
    assert all(c["causal"] for c in accuracy.grid_cases(causal_only, _lr_of(causal_only)))


def test_posing_rule():
    cfg = accuracy.Config()
    for name in variants.names():
        causal_ok = variants.get(name).spec.supports_causal
        assert accuracy.posed_causal(cfg, "mqar", name) == causal_ok  # causal wherever the variant can be
        assert accuracy.posed_causal(cfg, "needle", name) == causal_ok
        assert not accuracy.posed_causal(accuracy.Config(bidirectional=True), "mqar", name)  # the extra posing
        assert accuracy.posed_causal(cfg, "text_bytes", name)  # would leak the next byte: always causal
        assert not accuracy.posed_causal(cfg, "listops", name) and not accuracy.posed_causal(cfg, "local_motif", name)
    assert not variants.get("low_rank_linformer").spec.supports_causal


def test_empty_variants_means_every_registered_variant():
    cfg = accuracy.Config(tasks=("mqar",), variants=(), seq_lens=(64,), seeds=(0,))
    cases = [c for c in accuracy.grid_cases(cfg, _lr_of(cfg)) if c["causal"] or c["variant"] != "full_sdpa"]
    assert [c["variant"] for c in cases] == variants.names()  # (and the bidirectional reference)


def test_profiles_validate_and_are_the_documented_grids():
    for name, cfg in accuracy.PROFILES.items():
        if cfg.device == "cpu":
            cfg.validate()
    quick, standard = accuracy.PROFILES["quick"], accuracy.PROFILES["standard"]
    assert len(quick.seq_lens) >= 2 and set(quick.tasks) == {"mqar", "needle"} and len(quick.lr_grid) == 1
    assert not accuracy.tuning_cases(quick)
    assert len(standard.seq_lens) >= 4 and max(standard.seq_lens) >= 256 and len(standard.seeds) >= 3
    assert standard.variants == () and len(standard.lr_grid) >= 3 and standard.patience > 0
    assert "mqar" in standard.tasks
    assert len(accuracy.tuning_cases(standard)) == len(standard.tasks) * len(variants.names()) * len(standard.lr_grid)
    gpu = accuracy.PROFILES["gpu"]
    assert gpu.device == "cuda" and max(gpu.seq_lens) >= 2048
    assert "listops" in accuracy.PROFILES["full"].tasks


class FakeOutcome:
    def __init__(self, val, step):
        self.status, self.metrics = "ok", {"val_accuracy": val, "best_step": step}


def test_plan_tunes_then_runs_the_grid_at_each_chosen_lr_and_resumes():
    cfg = accuracy.Config(tasks=("mqar",), variants=("full_sdpa", "linear_elu"), seq_lens=(32, 64), seeds=(0, 1),
                          lr_grid=(1e-3, 3e-3), tune_len=0)
    plan = accuracy.plan(cfg, {})
    tune = next(plan)
    assert [(c["variant"], c["lr"], c["T"], c["seed"]) for c in tune] == [
        ("full_sdpa", 1e-3, 32, 0), ("full_sdpa", 3e-3, 32, 0), ("linear_elu", 1e-3, 32, 0), ("linear_elu", 3e-3, 32, 0)]
    scores = {("full_sdpa", 1e-3): (0.5, 300), ("full_sdpa", 3e-3): (0.9, 300),
              ("linear_elu", 1e-3): (0.8, 300), ("linear_elu", 3e-3): (0.3, 300)}
    grid = plan.send([FakeOutcome(*scores[(c["variant"], c["lr"])]) for c in tune])
    lrs = {c["variant"]: c["lr"] for c in grid}
    assert lrs == {"full_sdpa": 3e-3, "linear_elu": 1e-3}
    assert len(grid) == 2 * 2 * 2 - 2  # the tuning runs at the chosen lr are already rows of the grid
    with pytest.raises(StopIteration):
        plan.send([FakeOutcome(0.5, 1) for _ in grid])
    done = {c.id: {"status": "ok", "val_accuracy": scores[(c["variant"], c["lr"])][0],
                   "best_step": 300} for c in tune}
    resumed = accuracy.plan(cfg, done)
    assert [c.id for c in next(resumed)] == [c.id for c in grid]  # nothing tuned twice, the same choice


@pytest.mark.parametrize("trials, chosen", [
    ([(1e-3, "ok", 0.5, 100), (3e-3, "ok", 0.9, 900), (1e-2, "ok", 0.7, 100)], 3e-3),  # best val wins
    ([(1e-3, "ok", 0.99, 900), (3e-3, "ok", 0.992, 400), (1e-2, "ok", 0.2, 100)], 3e-3),  # tie: fewer steps
    ([(1e-3, "ok", 0.99, 400), (3e-3, "ok", 0.99, 400)], 1e-3),  # full tie: the smaller lr
    ([(1e-3, "error", None, None), (3e-3, "ok", 0.3, 100)], 3e-3),  # a failed run never wins
    ([(1e-3, "timeout", None, None), (3e-3, "error", None, None)], 1e-3),
])
def test_choose_lr_on_a_hand_made_table(trials, chosen):
    assert analysis.choose_lr(trials) == chosen


def test_execute_tiny_case_returns_documented_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTENTION_LIMITS_CACHE", str(tmp_path))
    (case,) = accuracy.grid_cases(TINY, _lr_of(TINY))
    out = accuracy.execute(case)
    assert set(out) == METRICS
    assert not set(out) & set(case.as_dict())  # metrics never collide with case params (the store rejects that)
    assert 0.0 <= out["accuracy"] <= 1.0 and math.isfinite(out["loss"]) and out["bits_per_byte"] is None
    assert out["censored"] == (out["stop_reason"] == "cap") and out["stop_reason"] in ("cap", "target", "plateau")
    assert [p[0] for p in out["curve"]][0] == 0 and out["steps_run"] <= 4 and out["n_params"] > 0
    assert 0.0 <= out["trivial_accuracy"] <= 1.0 and out["trivial_rule"]
    assert out == {**accuracy.execute(case), "train_s": out["train_s"]}  # seeded: the same numbers again
    model, stored = checkpoints.load(case.id)  # the model is cached for the interpretability sweep
    assert stored == case.as_dict() and sum(p.numel() for p in model.parameters()) == out["n_params"]


def test_non_causal_variant_on_a_causal_only_task_is_unsupported():
    cfg = accuracy.Config(**{**dataclasses.asdict(TINY), "tasks": ("text_bytes",), "variants": ("low_rank_linformer",),
                             "text_pool_bytes": 50_000})
    (case,) = accuracy.grid_cases(cfg, _lr_of(cfg))
    assert case["causal"] is True
    with pytest.raises(NotImplementedError, match="causal"):
        accuracy.execute(case)


def test_recall_tasks_hold_nothing_after_a_query_that_gives_the_answer():
    """The premise of the bidirectional column: later inputs carry the answer only by chance."""
    data = mqar.make(mqar.Config(seq_len=64, n_pairs=8, vocab_size=256), 0, 512)
    x, y = data.x.numpy(), data.y.numpy()
    rows, pos = np.nonzero(y != IGNORE)
    later = [(x[r, p + 1:] == y[r, p]).mean() for r, p in zip(rows, pos) if p + 1 < x.shape[1]]
    assert np.mean(later) < 2.0 / 256  # filler is uniform: about 1/V, not the Zoology layout (value after key)
    data = needle.make(needle.Config(seq_len=64), 0, 256)
    x, y = data.x.numpy(), data.y.numpy()
    assert all(y[r, p] not in x[r, p:] for r, p in zip(*np.nonzero(y != IGNORE)))  # never after its question


@pytest.mark.parametrize("override, message", [
    ({"tasks": "nope"}, "unknown task"),
    ({"variants": "full_sdpa,nope"}, "unknown variant"),
    ({"seq_lens": "64,0"}, "positive"),
    ({"seq_lens": "-8"}, "positive"),
    ({"tasks": "mqar", "seq_lens": "16", "n_pairs": "8"}, "mqar"),  # 8 pairs do not fit T = 16
    ({"steps": "0"}, "steps"),
    ({"lr_grid": "0.001,-1"}, "lr"),
    ({"tune_len": "48"}, "tune-len"),
    ({"patience": "-1"}, "patience"),
])
def test_validate_rejects_bad_config(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(accuracy.Config(), override)


def _row(variant, seed, acc, *, T=64, lr=3e-3, st=None, censored=False, causal=True, status="ok", tune_T=64,
         trivial_accuracy=0.125):
    return dict(task="mqar", variant=variant, T=T, seed=seed, status=status, accuracy=acc, loss=1.0,
                bits_per_byte=None, steps_to_target=st, censored=censored, steps=1000, train_s=1.0, lr=lr,
                causal=causal, lr_grid=(1e-3, 3e-3), tune_T=tune_T, tune_seed=0, val_accuracy=acc, best_step=100,
                steps_run=500, trivial_accuracy=trivial_accuracy)


def test_summary_reports_the_median_and_every_seed_at_the_chosen_lr():
    rows = [_row("v", s, a, st=st, censored=st is None) for s, a, st in [(0, 1.0, 300), (1, 0.99, 500), (2, 0.4, None)]]
    rows += [_row("v", 0, 0.2, lr=1e-3)]  # the losing tuning run: not in the summary
    rows += [_row("w", s, 0.2, censored=True) for s in range(3)] + [_row("w", 0, 0.1, lr=1e-3)]
    rows.append(_row("w", 9, None, status="timeout"))
    table = analysis.summary(pd.DataFrame(rows)).set_index("variant")
    assert table.loc["v", "acc_median"] == 0.99 and table.loc["v", "per_seed"] == "1.00 0.99 0.40"
    assert table.loc["v", "lr"] == 3e-3 and table.loc["v", "seeds"] == 3 and table.loc["v", "censored"] == 1
    assert table.loc["v", "steps_to_target_median"] == 500 and table.loc["v", "reached"] == "2/3"
    assert math.isnan(table.loc["w", "steps_to_target_median"]) and table.loc["w", "seeds"] == 3
    assert table.loc["v", "posing"] == "causal"


def test_accuracy_table_and_where_variants_fall_behind():
    rows = []
    for T, (full, window, linformer) in {32: (1.0, 1.0, 1.0), 64: (1.0, 0.95, 0.5), 128: (0.9, 0.5, 0.4)}.items():
        for seed in range(3):
            rows += [_row("full_sdpa", seed, full, T=T, tune_T=32), _row("sparse_window", seed, window, T=T, tune_T=32),
                     _row("low_rank_linformer", seed, linformer, T=T, causal=False, tune_T=32),
                     _row("full_sdpa", seed, 0.5, T=T, causal=False, tune_T=32)]  # a weak bidirectional reference
    acc = analysis.accuracy_rows(pd.DataFrame(rows))
    table = analysis.accuracy_table(acc)
    assert set(table["posing"]) == {"causal", "bidirectional"} and (table["n_seeds"] == 3).all()
    behind = analysis.falls_behind(table).set_index("variant")
    assert behind.loc["sparse_window", "falls_below_at_T"] == 128 and behind.loc["sparse_window", "keeps_up_to_T"] == 64
    # measured against full attention posed bidirectionally (0.5), never the causal reference: it keeps up to 64
    assert behind.loc["low_rank_linformer", "falls_below_at_T"] == 128
    assert behind.loc["low_rank_linformer", "keeps_up_to_T"] == 64
    assert behind.loc["low_rank_linformer", "posing"] == "bidirectional"
    alone = analysis.falls_behind(table[~((table["variant"] == "full_sdpa") & (table["posing"] == "bidirectional"))])
    assert "low_rank_linformer" not in set(alone["variant"])  # no reference in its posing: no line at all
    assert (behind["reference_failed_at_T"] == "").all()


def test_a_reference_that_failed_at_a_length_is_not_compared_there():
    rows = []
    for T, (full, window) in {32: (1.0, 1.0), 64: (0.1, 0.5), 128: (0.9, 0.5)}.items():  # at 64: at trivial
        for seed in range(3):
            rows += [_row("full_sdpa", seed, full, T=T, tune_T=32, trivial_accuracy=0.25),
                     _row("sparse_window", seed, window, T=T, tune_T=32, trivial_accuracy=0.25)]
    behind = analysis.falls_behind(analysis.accuracy_table(analysis.accuracy_rows(pd.DataFrame(rows))))
    line = behind.set_index("variant").loc["sparse_window"]
    assert line["falls_below_at_T"] == 128 and line["keeps_up_to_T"] == 32 and line["lengths"] == 2
    assert line["reference_failed_at_T"] == "64"


def test_the_bidirectional_reference_can_be_left_out():
    cfg = accuracy.Config(tasks=("mqar",), variants=("full_sdpa", "low_rank_linformer"), seq_lens=(64,), seeds=(0,))
    assert sorted(c["causal"] for c in accuracy.grid_cases(cfg, _lr_of(cfg)) if c["variant"] == "full_sdpa") == [False, True]
    lean = accuracy.Config(**{**dataclasses.asdict(cfg), "bidirectional_reference": False})
    assert [c["causal"] for c in accuracy.grid_cases(lean, _lr_of(lean)) if c["variant"] == "full_sdpa"] == [True]
    assert not accuracy.PROFILES["quick"].bidirectional_reference and accuracy.PROFILES["standard"].bidirectional_reference
