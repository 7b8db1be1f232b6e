"""bench.run: a sweep through the isolated worker, findings as rows, resumable after an interrupt."""
from __future__ import annotations

import dataclasses

import pytest

from bench import store
from bench.config import ConfigError
from bench.run import run_sweep, summary_table

import fake_sweep

MiB = 2**20


def sweep(tmp_path, kinds, **kw):
    cfg = fake_sweep.Config(kinds=tuple(kinds), time_cap_s=kw.pop("time_cap_s", 30.0))
    swp = kw.pop("swp", fake_sweep.SWEEP)
    return run_sweep(swp, cfg, profile="quick", out_dir=tmp_path, threads=1, mem_cap_bytes=512 * MiB, **kw)


def test_findings_are_rows_and_each_next_case_still_runs(tmp_path):
    kinds = ["ok", "oom", "ok", "sleep", "ok", "sigkill", "ok", "unsupported", "error", "ok"]
    path = sweep(tmp_path, kinds, time_cap_s=2.0, extra_manifest={"gemm_peak_flops": 1.0e11})
    assert path == tmp_path / "fake-quick-cpu.jsonl"
    df = store.load(path).sort_values("i")
    expected = ["ok", "oom", "ok", "timeout", "ok", "killed", "ok", "unsupported", "error", "ok"]
    assert df.status.tolist() == expected
    assert df.loc[df.status == "ok", "value"].tolist() == [0, 4, 16, 36, 81]
    assert (df.threads == 1).all() and (df.device == "cpu").all() and df.run_id.nunique() == 1
    (man,) = store.load_manifests(path).to_dict("records")
    assert man["gemm_peak_flops"] == 1.0e11 and man["threads"] == 1 and man["mem_cap_bytes"] == 512 * MiB
    assert man["allocator"]["mmap_max"] == 0 and man["config"]["time_cap_s"] == 2.0 and man["seeds"] == [0]
    table = summary_table(df)
    assert "oom" in table and "timeout" in table and "killed" in table and "total" in table


class Interrupt:
    """A progress callback that presses Ctrl-C after ``after`` rows."""

    def __init__(self, after: int):
        self.after, self.seen = after, 0

    def __call__(self, case, outcome):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(tmp_path):
    kinds = ["ok"] * 6
    whole = store.load(sweep(tmp_path / "whole", kinds))
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path / "parts", kinds, progress=Interrupt(after=3))
    path = tmp_path / "parts" / "fake-quick-cpu.jsonl"
    assert len(store.finished_case_ids(path)) == 3
    with open(path, "a") as fh:  # a run killed mid-write leaves half a line
        fh.write('{"kind": "row", "run_id": "x", "case_')
    seen = []
    sweep(tmp_path / "parts", kinds, resume=True, progress=lambda case, outcome: seen.append(case["i"]))
    assert seen == [3, 4, 5]
    parts = store.load(path)
    assert sorted(parts.case_id) == sorted(whole.case_id) and not parts.case_id.duplicated().any()
    assert parts.run_id.nunique() == 2 and len(store.load_manifests(path)) == 2


def test_resume_of_a_finished_run_runs_nothing_and_fresh_run_keeps_the_earlier_file_aside(tmp_path, capsys):
    path = sweep(tmp_path, ["ok", "ok"])
    seen = []
    sweep(tmp_path, ["ok", "ok"], resume=True, progress=lambda c, o: seen.append(c))
    assert seen == [] and len(store.load(path)) == 2
    assert "kept it as" not in capsys.readouterr().err
    sweep(tmp_path, ["ok"])
    assert len(store.load(path)) == 1 and len(store.load_manifests(path)) == 1
    (kept,) = (tmp_path / "previous").glob("fake-quick-cpu.*.jsonl")
    assert len(store.load(kept)) == 2 and len(store.load(root=tmp_path)) == 1  # the loader reads the new one only
    (line,) = [l for l in capsys.readouterr().err.splitlines() if "kept it as" in l]
    assert str(path) in line and str(kept) in line


def test_progress_is_plain_lines_with_case_counts_when_stderr_is_not_a_terminal(tmp_path, capsys):
    sweep(tmp_path, ["ok"] * 3)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("fake: case ")]
    assert lines[0].startswith("fake: case 1/3, ") and "elapsed, ETA " in lines[0]
    assert lines[-1].startswith("fake: case 3/3, ") and len(lines) <= 3
    assert not any("\r" in l for l in lines)


def test_duplicate_cases_are_a_config_error(tmp_path):
    dup = dataclasses.replace(fake_sweep.SWEEP, name="dup", cases=lambda cfg: list(fake_sweep.cases(cfg)) * 2)
    with pytest.raises(ConfigError, match="same case twice"):
        run_sweep(dup, fake_sweep.Config(), profile="quick", out_dir=tmp_path)


def test_summary_table_of_nothing():
    assert summary_table(store.load(root="/nonexistent-dir")) == "no results"


def test_parallel_sweep_writes_every_case_once(tmp_path, monkeypatch):
    """A parallel sweep with jobs=2 runs its cases in two workers; each case is written exactly once."""
    parallel = dataclasses.replace(fake_sweep.SWEEP, parallel=True)
    cfg = fake_sweep.Config(kinds=("ok",) * 6, jobs=2)
    path = run_sweep(parallel, cfg, profile="par", out_dir=tmp_path, progress=False)
    df = store.load(path)
    assert sorted(df["case_id"]) == sorted(c.id for c in fake_sweep.cases(cfg))
    assert set(df["status"]) == {"ok"}


def test_an_adaptive_plan_runs_batches_in_parallel_and_its_children_outlive_a_batch(tmp_path):
    """A plan yielding two batches (as the accuracy sweep's lr tuning, then its grid) gets each batch's outcomes
    in order, and the worker children started for the first batch still serve the second (no ``killed`` row)."""
    cfg = fake_sweep.Config(kinds=("ok",) * 8, jobs=2)
    every = list(fake_sweep.cases(cfg))
    got = []

    def plan(cfg, done):
        got.append((yield every[:4]))
        got.append((yield every[4:]))

    adaptive = dataclasses.replace(fake_sweep.SWEEP, parallel=True, plan=plan)
    df = store.load(run_sweep(adaptive, cfg, profile="plan", out_dir=tmp_path, progress=False, threads=1))
    assert set(df["status"]) == {"ok"} and len(df) == 8
    assert [o.metrics["value"] for o in got[0]] == [0, 1, 4, 9] and [o.metrics["value"] for o in got[1]] == [16, 25, 36, 49]
    first, second = (set(df[df["i"].isin(batch)]["pid"]) for batch in ([0, 1, 2, 3], [4, 5, 6, 7]))
    assert second <= first  # the same children, alive after the first batch's threads went idle


def test_a_sweep_names_the_cases_that_need_a_child_of_their_own(tmp_path):
    """``fresh_child(cfg, case)`` True: that case runs in a child that ran nothing before it; the others share."""
    fresh = dataclasses.replace(fake_sweep.SWEEP, fresh_child=lambda cfg, case: case["i"] in (2, 3))
    df = store.load(sweep(tmp_path, ["ok"] * 5, progress=False, swp=fresh)).sort_values("i")
    pids = list(df["pid"])
    assert (df["status"] == "ok").all()
    assert pids[0] == pids[1] and len({pids[1], pids[2], pids[3]}) == 3 and pids[4] == pids[3]


def test_the_full_efficiency_profile_runs_its_longest_cases_in_fresh_children():
    from bench.sweeps import efficiency

    full, quick = efficiency.PROFILES["full"], efficiency.PROFILES["quick"]
    by_t = {T: efficiency.fresh_child(full, next(c for c in efficiency.cases(full) if c["T"] == T))
            for T in (16384, 32768, 131072)}
    assert by_t == {16384: False, 32768: True, 131072: True}
    assert not any(efficiency.fresh_child(quick, c) for c in efficiency.cases(quick))
    with pytest.raises(ConfigError, match="fresh-child-min-t"):
        efficiency.Config(fresh_child_min_t=-1).validate()
