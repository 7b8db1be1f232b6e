"""bench.measure.timing.time_callable: the re-round rule for unstable timings, on a fake Timer (no real timing)."""
from __future__ import annotations

import pytest
from torch.utils.benchmark import Measurement, Timer

from bench.measure import timing


SPEC = Timer("pass")._task_spec


class FakeTimer:
    """Returns canned block times, one list per ``blocked_autorange`` call, and records the run times asked."""

    rounds: list[list[float]] = []
    asked: list[float] = []
    first: float = 0.01  # the cold call's time


    def __init__(self, stmt, globals, num_threads):
        pass

    def timeit(self, number):
        return Measurement(number, [FakeTimer.first], SPEC)

    def blocked_autorange(self, min_run_time):
        FakeTimer.asked.append(min_run_time)
        return Measurement(1, FakeTimer.rounds.pop(0), SPEC)


NOISY = [0.010, 0.010, 0.013, 0.013, 0.016, 0.016, 0.010, 0.016]  # IQR/median ~ 40%
QUIET = [0.010, 0.0101, 0.0100, 0.0099, 0.0100, 0.0101, 0.0099, 0.0100]
LESS_NOISY = [0.010, 0.0104, 0.0108, 0.0112] * 2  # IQR/median ~ 6%


@pytest.fixture
def fake_timer(monkeypatch):
    monkeypatch.setattr(timing.tbench, "Timer", FakeTimer)
    FakeTimer.asked, FakeTimer.first = [], 0.01
    yield FakeTimer


def test_a_stable_first_round_is_kept(fake_timer):
    fake_timer.rounds = [QUIET]
    out = timing.time_callable(lambda: None, 1, 0.1)
    assert (out["rounds"], out["stable"], fake_timer.asked) == (1, True, [0.1])
    assert out["median_s"] == pytest.approx(0.0100) and out["repeats"] == 8


def test_an_unstable_round_is_remeasured_until_stable(fake_timer):
    fake_timer.rounds = [NOISY, QUIET]
    out = timing.time_callable(lambda: None, 1, 0.1)
    assert (out["rounds"], out["stable"], fake_timer.asked) == (2, True, [0.1, 0.1])
    assert out["iqr_s"] / out["median_s"] <= timing.STABLE_REL_IQR


def test_never_stable_keeps_the_least_noisy_round_and_says_so(fake_timer):
    fake_timer.rounds = [NOISY, LESS_NOISY, NOISY, NOISY, NOISY, NOISY]
    out = timing.time_callable(lambda: None, 1, 0.1)
    assert timing.MAX_TIMING_ROUNDS == 6
    assert (out["rounds"], out["stable"], fake_timer.asked) == (6, False, [0.1] * 6)
    assert out["median_s"] == pytest.approx(0.0106)


def test_a_slow_call_gets_run_time_for_several_blocks(fake_timer):
    """A 1 s call under a 0.5 s min_run_time would be one block, whose IQR reads 0: the run time is raised."""
    fake_timer.first = 1.0
    fake_timer.rounds = [[t * 100 for t in QUIET]]
    out = timing.time_callable(lambda: None, 1, 0.5)
    assert fake_timer.asked == [timing.MIN_TIMING_REPEATS * 1.0] and timing.MIN_TIMING_REPEATS >= 5
    assert out["stable"] and out["repeats"] == 8


def test_sub_millisecond_cases_are_not_remeasured(fake_timer):
    fake_timer.rounds = [[t / 100 for t in NOISY]]
    out = timing.time_callable(lambda: None, 1, 0.1)
    assert (out["rounds"], out["stable"]) == (1, False)


class DriftingTimer:
    """Times ``fn`` as its ``cost`` attribute × the machine's state, which turns 25% slower from the third round
    on (a slow spell); records which fn each block timed."""

    calls: list[str] = []

    def __init__(self, stmt, globals, num_threads):
        self.fn = globals["fn"]

    def timeit(self, number):
        DriftingTimer.calls.append(self.fn.__name__)
        state = 1.25 if len(DriftingTimer.calls) > 4 + 4 else 1.0  # 4 calibration calls, then two rounds
        return Measurement(number, [self.fn.cost * state * number], SPEC)


def test_paired_ratios_time_both_side_by_side_so_a_slow_spell_cancels(monkeypatch):
    monkeypatch.setattr(timing.tbench, "Timer", DriftingTimer)
    DriftingTimer.calls = []

    def ours():
        pass

    def peer():
        pass

    ours.cost, peer.cost = 0.002, 0.004
    ratios = timing.paired_ratios(ours, peer, threads=1, block_s=0.01, rounds=5)
    assert ratios == pytest.approx([0.5] * 5)  # unpaired, a block in the spell against one before: 0.625 or 0.4
    blocks = DriftingTimer.calls[4:]  # after calibrating each fn (two calls each)
    assert blocks == ["ours", "peer", "peer", "ours", "ours", "peer", "peer", "ours", "ours", "peer"]
