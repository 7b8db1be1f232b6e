"""bench.train: a tiny run learns, runs are reproducible, censoring is explicit, evaluation is held out."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.config import ConfigError
from bench.tasks import needle, text_bytes
from bench.train import (TrainConfig, TrainResult, check_compatible, deterministic, evaluate, fit_model, load_splits,
                         model_config_for, train)
from variants.model import Transformer

# One needle in a short row: the answer is the only value id in it, so a one-layer model learns it in a few
# hundred steps.
EASY = needle.Config(seq_len=8, n_needles=1, n_keys=2, n_values=4, n_filler=4)
# One needle anywhere in 30 positions, through one sliding-window layer of reach 2 and no token shift: almost never
# a path from the needle to the question, so accuracy stays near chance (1/4) and a target of 0.9 is unreachable.
BLOCKED = needle.Config(seq_len=32, n_needles=1, n_keys=2, n_values=4, n_filler=4)
TINY = dict(d_model=32, n_heads=2, n_layers=1)


def _tc(**overrides) -> TrainConfig:
    base = dict(steps=300, batch_size=32, lr=3e-3, warmup=10, eval_every=25, target_accuracy=0.99, n_train=1024,
                n_eval=128, seed=0, threads=1)
    return TrainConfig(**{**base, **overrides})


def _easy_run(**overrides) -> TrainResult:
    return train(model_config_for(EASY, "full_sdpa", **TINY), "needle", EASY, _tc(**overrides))


def test_tiny_run_learns_a_trivial_task_within_budget():
    result = _easy_run()
    assert result.accuracy >= 0.99, result.curve
    assert result.steps_to_target is not None and not result.censored
    assert result.steps == result.steps_to_target <= 300  # early stop at the first eval reaching the target
    assert result.curve[0][0] == 0 and result.curve[0][1] < 0.6  # starts near chance (1/4)
    assert result.curve[-1][0] == result.steps_to_target and result.curve[-1][1] >= 0.99
    assert result.n_params == sum(p.numel() for p in Transformer(model_config_for(EASY, **TINY)).parameters())
    assert result.bits_per_byte is None and result.wall_s > 0


def test_same_seed_gives_identical_results_and_another_seed_does_not():
    a, b = _easy_run(steps=60, target_accuracy=1.0), _easy_run(steps=60, target_accuracy=1.0)
    assert a.curve == b.curve  # exact equality, every (step, acc, loss)
    assert (a.accuracy, a.loss, a.steps_to_target, a.steps) == (b.accuracy, b.loss, b.steps_to_target, b.steps)
    c = _easy_run(steps=60, target_accuracy=1.0, seed=1)
    assert c.curve != a.curve


def test_constant_lr_makes_a_shorter_budget_a_prefix_of_a_longer_one():
    short, long = _easy_run(steps=40, eval_every=20, target_accuracy=1.0), _easy_run(steps=60, eval_every=20,
                                                                                        target_accuracy=1.0)
    assert long.curve[:len(short.curve)] == short.curve


def test_unreachable_target_is_censored_at_the_budget():
    cfg = model_config_for(BLOCKED, "sparse_window", attention_params={"window": 2}, token_shift=False, **TINY)
    result = train(cfg, "needle", BLOCKED, _tc(steps=60, eval_every=20, target_accuracy=0.9))
    assert result.steps_to_target is None and result.censored
    assert result.steps == 60 and [s for s, _, _ in result.curve] == [0, 20, 40, 60]
    assert result.accuracy < 0.6
    assert result.as_dict()["censored"] is True and result.as_dict()["steps_to_target"] is None


def test_splits_are_disjoint():
    train_data, val, test = load_splits("needle", BLOCKED, _tc(n_train=512, n_eval=256))
    rows = [{r.numpy().tobytes() for r in d.x} for d in (train_data, val, test)]
    assert len(val) == len(test) == 256 and len(train_data) == 512
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]


class Recorder(nn.Module):
    """A model factory's product: a Transformer that logs the rows it sees in train and in eval mode."""

    def __init__(self, cfg):
        super().__init__()
        self.inner = Transformer(cfg)
        self.seen: dict[bool, set[bytes]] = {True: set(), False: set()}

    def forward(self, tokens, valid=None):
        self.seen[self.training].update(r.numpy().tobytes() for r in tokens)
        return self.inner(tokens, valid)


def test_model_factory_is_used_and_evaluation_is_held_out():
    built: list[Recorder] = []

    def factory(cfg):
        built.append(Recorder(cfg))
        return built[0]

    tc = _tc(steps=20, eval_every=10, target_accuracy=1.0, n_train=256, n_eval=64)
    train(model_config_for(EASY, **TINY), "needle", EASY, tc, model=factory)
    train_data, val, test = load_splits("needle", EASY, tc)
    as_set = lambda d: {r.numpy().tobytes() for r in d.x}  # noqa: E731
    seen = built[0].seen
    assert seen[True] and seen[True] <= as_set(train_data)
    assert seen[False] == as_set(val) | as_set(test)  # every eval row is val (curve) or test (final number)
    assert not seen[False] & as_set(train_data)


def test_text_bytes_reports_bits_per_byte():
    cfg = text_bytes.Config(seq_len=16, max_pool_bytes=50_000)
    result = train(model_config_for(cfg, **TINY), "text_bytes", cfg, _tc(steps=2, eval_every=1, n_train=64,
                                                                          n_eval=32))
    assert result.bits_per_byte == pytest.approx(result.loss / math.log(2))
    assert 0 < result.bits_per_byte < 9  # near log2(256) = 8 at the start


def test_config_and_compatibility_errors():
    with pytest.raises(ConfigError, match="steps"):
        _tc(steps=0).validate()
    with pytest.raises(ConfigError, match="target_accuracy"):
        _tc(target_accuracy=1.5).validate()
    with pytest.raises(ConfigError, match="n_train"):
        _tc(n_train=8, batch_size=32).validate()
    small = model_config_for(EASY, **TINY)
    with pytest.raises(ConfigError, match="max_seq_len"):
        check_compatible(small, BLOCKED)


def test_deterministic_restores_global_settings():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with deterministic(1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


# ---------------------------------------------------------------- stopping: target, plateau, cap

class Scripted(nn.Module):
    """A model whose val accuracy follows a script: its output bias moves to the right answer for a share of the
    rows as training steps pass (``schedule(step) -> share``), so the stopping rule sees a curve chosen here."""

    def __init__(self, cfg, schedule):
        super().__init__()
        self.inner = Transformer(cfg)
        self.schedule, self.steps = schedule, 0

    def forward(self, tokens, valid=None):
        if self.training:
            self.steps += 1
        logits = self.inner(tokens, valid) * 0.0  # the real graph, for the optimiser, but no say in the answer
        share = self.schedule(self.steps)  # train_step calls forward once per step; eval does not count
        answer = torch.zeros_like(logits)
        n_right = int(round(share * tokens.shape[0]))
        # the question's key is the last token; the only value in an EASY row is its answer
        values = ((tokens >= EASY.first_value) & (tokens < EASY.first_value + EASY.n_values)).long().argmax(1)
        truth = tokens.gather(1, values[:, None])[:, 0]
        answer[torch.arange(n_right), -1, truth[:n_right]] = 10.0
        return logits + answer


def _scripted(schedule, **overrides):
    built = []

    def factory(cfg):
        built.append(Scripted(cfg, schedule))
        return built[-1]

    tc = _tc(n_eval=100, eval_batch_size=100, **overrides)
    return train(model_config_for(EASY, **TINY), "needle", EASY, tc, model=factory)


def test_a_flat_curve_stops_on_the_plateau_and_is_not_censored():
    result = _scripted(lambda step: 0.5, steps=1000, eval_every=10, patience=3, target_accuracy=0.99)
    assert result.stop_reason == "plateau" and not result.censored and result.steps_to_target is None
    assert [s for s, _, _ in result.curve] == [0, 10, 20, 30]  # best at 0, then three evals without a gain
    assert result.best_step == 0


def test_a_rising_curve_that_hits_the_cap_is_censored():
    result = _scripted(lambda step: min(0.9, 0.1 + step / 400), steps=200, eval_every=20, patience=3,
                       min_delta=0.01)
    assert result.stop_reason == "cap" and result.censored and result.steps == 200
    assert result.best_step == 200  # still improving at the cap


def test_a_small_gain_below_min_delta_does_not_reset_patience():
    result = _scripted(lambda step: 0.5 + step / 100000, steps=1000, eval_every=10, patience=2, min_delta=0.02)
    assert result.stop_reason == "plateau" and result.steps == 20


def test_the_absolute_floor_turns_a_creeping_loss_into_a_plateau():
    creep = lambda step: 0.3 + step / 1000  # two more right answers per eval: the loss falls a little each time
    without = _scripted(creep, steps=200, eval_every=20, patience=2)
    assert without.stop_reason == "cap" and without.censored
    floored = _scripted(creep, steps=200, eval_every=20, patience=2, min_delta_abs=1.0)
    assert floored.stop_reason == "plateau" and not floored.censored and floored.steps == 40
    assert floored.best_step == 0


def test_target_beats_patience_and_plateau_keeps_the_best_weights():
    result = _scripted(lambda step: 1.0 if step >= 30 else 0.2, steps=1000, eval_every=10, patience=5)
    assert result.stop_reason == "target" and result.steps_to_target == 30 and not result.censored
    cfg = model_config_for(BLOCKED, "sparse_window", attention_params={"window": 2}, token_shift=False, **TINY)
    tc = _tc(steps=600, eval_every=20, patience=2, min_delta=0.01, target_accuracy=0.99)
    real, model = fit_model(cfg, "needle", BLOCKED, tc)
    kept = {s: loss for s, _, loss in real.curve}[real.best_step]  # the last eval that beat the best by 1%
    assert real.stop_reason == "plateau" and real.curve[-1][0] - real.best_step == 2 * 20
    assert all(kept < loss * 0.99 for s, _, loss in real.curve if s < real.best_step)
    with deterministic(1):
        loss = evaluate(model, load_splits("needle", BLOCKED, tc)[1], 256)[1]
    assert loss == pytest.approx(kept, rel=1e-6)  # the best weights came back, not the last


def test_select_accuracy_counts_accuracy_gains_as_progress():
    climb = lambda step: min(0.3 + 0.05 * (step // 20), 0.8)  # +5 right answers per eval until step 200
    by_loss = _scripted(climb, steps=1000, eval_every=20, patience=3, min_delta=0.9)
    assert by_loss.stop_reason == "plateau" and by_loss.steps == 60  # the loss never halves: a plateau at once
    by_acc = _scripted(climb, steps=1000, eval_every=20, patience=3, min_delta=0.9, select_accuracy=True,
                       min_delta_acc=0.03)
    assert by_acc.stop_reason == "plateau" and by_acc.best_step == 200 and by_acc.steps == 200 + 3 * 20


def test_select_accuracy_keeps_the_best_accuracy_weights_even_at_the_cap():
    cfg = model_config_for(BLOCKED, "sparse_window", attention_params={"window": 2}, token_shift=False, **TINY)
    tc = _tc(steps=300, eval_every=20, patience=0, target_accuracy=0.99, select_accuracy=True)
    result, model = fit_model(cfg, "needle", BLOCKED, tc)
    best = max(acc for _, acc, _ in result.curve)
    assert result.stop_reason == "cap" and {s: a for s, a, _ in result.curve}[result.best_step] == best
    with deterministic(1):
        accuracy = evaluate(model, load_splits("needle", BLOCKED, tc)[1], 256)[0]
    assert accuracy == pytest.approx(best, abs=1e-9)  # the best-accuracy weights came back, not the last
