"""The sweep under machine faults: a full disk, two runs on one file, cases far over their budget."""
from __future__ import annotations

import os
import resource
import signal
import time

import pytest

import variants
from bench import cli, store
from reliability_helpers import driver

CASES = 6


def _limit_file_size(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _rows(path) -> tuple[list[str], list[int]]:
    skipped: list[int] = []
    ids = [r["case_id"] for r in store.read_records(path, skipped) if r["kind"] == "row"]
    return ids, skipped


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_with_one_line_and_a_resume_completes_it(tmp_path):
    whole = tmp_path / "whole"
    assert driver(whole, CASES).wait() == 0
    lines = store.results_path(whole, "fake", "quick", "cpu").read_bytes().splitlines(keepends=True)
    room = len(lines[0]) + len(lines[1]) + len(lines[2]) + len(lines[3]) // 2  # the manifest, 2 rows, half a row
    out = tmp_path / "full"
    proc = driver(out, CASES, preexec_fn=_limit_file_size(room))
    _, err = proc.communicate()
    path = store.results_path(out, "fake", "quick", "cpu")
    assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot write {path}: File too large" in err and "--resume" in err
    ids, skipped = _rows(path)
    assert len(ids) == 2 and skipped == [4]  # the rows before stay readable; the torn one is reported
    assert driver(out, CASES, "--resume").wait() == 0  # space "freed": no limit this time
    ids, skipped = _rows(path)
    assert sorted(ids) == sorted(_rows(store.results_path(whole, "fake", "quick", "cpu"))[0]) and not skipped


@pytest.mark.slow
def test_a_second_run_on_the_same_file_refuses_and_a_dead_holder_is_stale(tmp_path):
    first = driver(tmp_path, 3, "--kinds", "sleep")  # its first case runs until the driver's 60 s time cap
    path = store.results_path(tmp_path, "fake", "quick", "cpu")
    deadline = time.monotonic() + 300
    while not path.exists() and time.monotonic() < deadline:  # the manifest is written: it holds the lock
        time.sleep(0.1)
    for extra in ((), ("--resume",)):
        second = driver(tmp_path, 3, "--kinds", "sleep", *extra)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2 and err.count("\n") == 1, err
        assert f"is being written by another run (pid {first.pid})" in err
    assert first.poll() is None, "the first run ended before the second tried: the test tested nothing"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    lock = store.ResultsLock(path)
    assert lock.path.read_text().strip() == str(first.pid)  # left by the killed holder
    ids, skipped = _rows(path)
    assert len(ids) == len(set(ids)) and not skipped
    assert len(store.load_manifests(path)) == 1  # the refused runs wrote nothing
    with lock:  # stale: taken over
        assert lock.path.read_text().strip() == str(os.getpid())
    assert not lock.path.exists()


def test_one_writer_per_file_within_a_process_too(tmp_path):
    path = tmp_path / "x.jsonl"
    with store.ResultsLock(path):
        with pytest.raises(store.ResultsError, match=f"pid {os.getpid()}"):
            store.ResultsLock(path).acquire()
    with store.ResultsLock(path):  # released: free again
        pass


@pytest.mark.slow
def test_every_variant_far_over_its_memory_budget_is_an_oom_row_and_the_parent_goes_on(tmp_path):
    """T = 131072: q, k and v alone (128 MiB each) exceed the 256 MiB cap of each case. Each variant's case runs
    after the previous one's oom (a fresh child each time), and the parent returns normally."""
    argv = ["run", "efficiency", "--phases=forward", "--causal=false", "--seq-lens=131072",
            "--mem-cap-bytes=268435456", "--time-cap-s=60", f"--out-dir={tmp_path}"]
    assert cli.main(argv) == 0
    df = store.load(store.results_path(tmp_path, "efficiency", "quick", "cpu"))
    assert sorted(df.variant) == sorted(variants.names()) and (df.wall_s > 0).all()
    assert set(df.status) <= {"oom", "timeout"}, df[["variant", "status", "error"]]
