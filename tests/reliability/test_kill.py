"""SIGKILL the sweep's parent at random points, resume, repeat: the file ends with exactly the uninterrupted run's
cases, none lost, none twice, and every line parses but a torn last line that the loader reports and skips.

Most trials run the cases inside the parent (``sweep_driver.py --inline``: a start costs ~0.3 s, not a worker
child's torch import), so >= 20 kills fit in CI; two more kill a parent that has a real worker child (its child
dies with it, and its lock is left stale for the resume to take over).
"""
from __future__ import annotations

import collections
import os
import random
import signal
import time

import pytest

from bench import store
from reliability_helpers import driver

KILLS = int(os.environ.get("RELIABILITY_KILLS", "20"))  # inline trials; nightly: more
CASES = 8
ROW_S = 0.1  # about one nap case (50 ms) plus its torn write (40 ms), inline
MODES = {"inline": (("--inline",), KILLS, 0.4), "worker": ((), 2, 5.0)}  # flags, kills, seconds to the first row


def rows_of(path) -> tuple[list[str], list[int]]:
    """Case ids of the file's rows, and the numbers of the lines the loader skipped."""
    skipped: list[int] = []
    records = list(store.read_records(path, skipped)) if path.exists() else []
    return [r["case_id"] for r in records if r["kind"] == "row"], skipped


def last_line_number(path) -> int:
    return len(path.read_bytes().rstrip(b"\n").split(b"\n")) if path.exists() else 0


def run_and_maybe_kill(out, rng: random.Random, flags: tuple[str, ...], start_s: float, resume: bool) -> bool:
    """One run of the driver, SIGKILLed at a random moment: during start-up (a quarter of the runs) or while
    rows are written (each line in two halves, so some kills tear one). True if the kill landed."""
    proc = driver(out, CASES, "--torn-s", "0.04", *flags, *(["--resume"] if resume else []))
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, start_s))
    elif proc.stdout.readline():  # the first row of this run is written
        time.sleep(rng.uniform(0.0, CASES * ROW_S))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> list[str]:
    """The case ids of one uninterrupted run (the same for either mode: an id is a hash of the case's params)."""
    whole = tmp_path_factory.mktemp("whole")
    assert driver(whole, CASES, "--inline").wait() == 0
    ids, skipped = rows_of(store.results_path(whole, "fake", "quick", "cpu"))
    assert len(ids) == CASES and not skipped
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_random_sigkills_of_the_parent_lose_and_repeat_nothing(tmp_path, expected, mode):
    flags, wanted, start_s = MODES[mode]
    rng = random.Random(21)
    kills = torn = rounds = 0
    while kills < wanted:
        out = tmp_path / f"round{rounds}"
        path = store.results_path(out, "fake", "quick", "cpu")
        rounds += 1
        resume = False
        while kills < wanted and run_and_maybe_kill(out, rng, flags, start_s, resume):
            kills += 1
            _, skipped = rows_of(path)
            assert skipped in ([], [last_line_number(path)]), f"only a torn last line may be unreadable: {skipped}"
            torn += bool(skipped)
            resume = True
        if kills >= wanted and resume:  # enough kills: the last one is resumed without one
            assert driver(out, CASES, *flags, "--resume").wait() == 0
        ids, skipped = rows_of(path)
        duplicated = [i for i, n in collections.Counter(ids).items() if n > 1]
        assert not skipped and not duplicated and sorted(ids) == sorted(expected)
    print(f"{mode}: kill trials {kills} in {rounds} rounds; torn tails detected and skipped {torn}; rows lost 0; "
          f"duplicated 0")
    if mode == "inline":
        assert torn >= 1, "no kill landed inside a write: the test did not test torn lines"
