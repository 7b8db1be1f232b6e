"""bench.store: append-only JSONL segments, tolerant reading, one tidy typed frame."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import store
from bench.config import Case
from bench.measure import ALLOCATOR_POLICY
from bench.outcome import Outcome

METRICS = ("time_s", "peak_bytes", "x", "n")
ENV = {"torch": "2.x", "parallel_info": "ATen/Parallel: test", "threads": 2, "device_name": "Test CPU"}


def manifest(**extra):
    return store.manifest(sweep="fake", profile="quick", device="cpu", config={"a": 1}, seeds=[0, 1], env=ENV,
                          allocator=ALLOCATOR_POLICY, extra=extra)


def case(i: int) -> Case:
    return Case.make("fake", i=i, variant="v" + str(i % 2))


def write(path, n: int, *, resume=False, start=0, **extra):
    with store.RunWriter(path, manifest(**extra), resume=resume, metrics=METRICS) as writer:
        for i in range(start, start + n):
            writer.write(case(i), Outcome("ok", {"time_s": 0.5 * i, "peak_bytes": 1024 * i}, "", 0.1))
        return writer.run_id


def test_manifest_has_the_provenance_fields():
    record = manifest(gemm_peak_flops=1e11)
    for key in ("run_id", "utc_start", "git_sha", "git_dirty", "torch", "parallel_info", "device", "device_name",
                "threads", "seeds", "allocator", "config"):
        assert key in record
    assert record["kind"] == "manifest" and record["gemm_peak_flops"] == 1e11 and record["seeds"] == [0, 1]
    assert json.loads(json.dumps(record)) == record


def test_environment_describes_this_process():
    env = store.environment("cpu")
    assert env["threads"] >= 1 and env["device_name"] and "ATen" in env["parallel_info"]


def test_fresh_run_truncates_and_resume_appends_a_segment(tmp_path):
    path = store.results_path(tmp_path, "fake", "quick", "cpu")
    write(path, 3)
    write(path, 2)
    assert store.finished_case_ids(path) == {case(0).id, case(1).id}
    write(path, 2, resume=True, start=2)
    kinds = [r["kind"] for r in store.read_records(path)]
    assert kinds == ["manifest", "row", "row", "manifest", "row", "row"]
    assert store.finished_case_ids(path) == {case(i).id for i in range(4)}


def test_keep_aside_moves_a_file_to_previous_with_its_time(tmp_path):
    from datetime import datetime, timezone

    path = tmp_path / "fake-quick-cpu.jsonl"
    assert store.keep_aside(path) is None
    now = datetime(2026, 11, 30, 11, 45, 0, tzinfo=timezone.utc)
    kept = []
    for text in ("first\n", "second\n"):
        path.write_text(text)
        kept.append(store.keep_aside(path, now=now))
    assert [p.name for p in kept] == ["fake-quick-cpu.2026-11-30T114500.jsonl",
                                      "fake-quick-cpu.2026-11-30T114500-1.jsonl"]
    assert [p.read_text() for p in kept] == ["first\n", "second\n"] and not path.exists()
    assert store._paths(None, tmp_path) == []  # kept-aside files are not read as runs


def test_a_truncated_last_line_is_ignored_and_cut_on_resume(tmp_path):
    path = tmp_path / "fake-quick-cpu.jsonl"
    write(path, 2)
    with open(path, "a") as fh:
        fh.write('{"kind": "row", "case_id": "trunc')
    assert store.finished_case_ids(path) == {case(0).id, case(1).id}
    assert len(store.load(path)) == 2
    write(path, 1, resume=True, start=2)
    assert len(list(store.read_records(path))) == 5 and len(store.load(path)) == 3


def test_a_corrupt_line_in_the_middle_is_skipped_counted_and_warned_once(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    write(path, 3)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:10]
    lines[2] = "[1, 2]"  # JSON, but not a record
    path.write_text("\n".join(lines) + "\n")
    assert len(store.load(path)) == 1 and len(store.load_manifests(path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "x.jsonl: skipped 2 unreadable line(s) (line 2, 3)" in err
    skipped: list[int] = []
    assert len(list(store.read_records(path, skipped))) == 2 and skipped == [2, 3]
    assert store.finished_case_ids(path) == {case(2).id}


def test_load_is_one_tidy_typed_frame_across_files_and_segments(tmp_path):
    first = write(tmp_path / "a.jsonl", 2)
    second = write(tmp_path / "a.jsonl", 1, resume=True, start=2)
    write(tmp_path / "b.jsonl", 1)
    df = store.load(root=tmp_path)
    assert len(df) == 4
    for col in ("run_id", "sweep", "case_id", "i", "variant", "status", "error", "wall_s", "time_s",
                "peak_bytes", "git_sha", "device", "device_name", "threads", "profile"):
        assert col in df.columns
    assert (df["kind"] == "row").all()  # the record kind is a column: rows here, limits beside them elsewhere
    assert set(df.loc[df.i < 2, "run_id"]) >= {first} and second in set(df.run_id)
    assert pd.api.types.is_string_dtype(df.status) and pd.api.types.is_string_dtype(df.run_id)
    assert df.wall_s.dtype == "float64" and df.threads.dtype == "Int64"
    assert pd.api.types.is_integer_dtype(df.peak_bytes) and pd.api.types.is_float_dtype(df.time_s)
    assert (df.device_name == "Test CPU").all() and (df.profile == "quick").all()


def test_load_without_files_is_empty_but_typed(tmp_path):
    df = store.load(root=tmp_path)
    assert len(df) == 0 and {"run_id", "status", "wall_s", "threads"} <= set(df.columns)
    assert df.wall_s.dtype == "float64" and df.threads.dtype == "Int64"
    assert pd.api.types.is_string_dtype(df.status)
    assert len(store.load_manifests(root=tmp_path)) == 0


def test_load_manifests_has_one_row_per_segment(tmp_path):
    write(tmp_path / "a.jsonl", 1)
    write(tmp_path / "a.jsonl", 1, resume=True, start=1, gemm_peak_flops=2e11)
    frame = store.load_manifests(root=tmp_path)
    assert len(frame) == 2 and frame.allocator.iloc[0]["mmap_max"] == 0
    assert frame.gemm_peak_flops.isna().tolist() == [True, False]


def test_the_schema_is_checked_on_write(tmp_path):
    """An undeclared metric, an unknown kind or a case param named like a common column is a sweep bug."""
    with pytest.raises(ValueError, match="not declared"):
        store.row_record("r", case(0), Outcome("ok", {"surprise": 1}), metrics=METRICS)
    with pytest.raises(ValueError, match="unknown record kind"):
        store.row_record("r", case(0), Outcome("ok", {}), kind="limits")
    with pytest.raises(ValueError, match="shadow"):
        store.row_record("r", Case.make("fake", wall_s=1), Outcome("ok", {}))
    assert manifest()["schema_version"] == store.SCHEMA_VERSION


def test_a_summary_has_its_own_kind_and_old_limit_rows_migrate_on_read(tmp_path):
    """A limit is ``kind="limit"``; a schema-1 file's limit (a limits row with T == 0) reads the same way."""
    path = tmp_path / "limits.jsonl"
    found = Case.make("limits", variant="v", budget="memory")
    with store.RunWriter(path, manifest(), metrics=("max_fit_t",)) as writer:
        writer.write(Case.make("limits", variant="v", budget="memory", T=1024), Outcome("ok", {}))
        writer.write(found, Outcome("ok", {"max_fit_t": 1024}), kind="limit")
        writer._write({"kind": "row", "run_id": writer.run_id, "sweep": "limits", "case_id": "old", "variant": "w",
                       "budget": "memory", "T": 0, "status": "ok", "error": "", "wall_s": 0.0, "max_fit_t": 512})
    df = store.load(path)
    assert list(df["kind"]) == ["row", "limit", "limit"] and df["T"].isna().tolist() == [False, True, True]
    assert list(store.load(path, kinds=("limit",))["max_fit_t"]) == [1024, 512]
    assert store.finished_case_ids(path) == {df["case_id"][0], found.id, "old"}


def test_metrics_colliding_with_row_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="collide"):
        store.row_record("r", case(0), Outcome("ok", {"status": 1}))
    with pytest.raises(ValueError, match="collide"):
        store.row_record("r", case(0), Outcome("ok", {"variant": "x"}))


def test_numpy_scalars_and_tuples_are_written_as_json(tmp_path):
    import numpy as np

    path = tmp_path / "n.jsonl"
    with store.RunWriter(path, manifest(), metrics=METRICS) as writer:
        writer.write(Case.make("fake", lens=[1, 2]), Outcome("ok", {"x": np.float32(1.5), "n": np.int64(3)}))
    row = list(store.read_records(path))[1]
    assert (row["x"], row["n"], row["lens"]) == (1.5, 3, [1, 2])


def test_results_path_names_sweep_profile_device(tmp_path):
    assert store.results_path(tmp_path, "efficiency", "quick", "cuda:0").name == "efficiency-quick-cuda0.jsonl"


def test_dirty_means_code_changed_not_results(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for rel in ("bench/code.py", "results/runs/a.jsonl", "reports/report.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert store.git_state(tmp_path)[1] is False
    (tmp_path / "results/runs/a.jsonl").write_text("v2\n")
    (tmp_path / "reports/report.md").write_text("v2\n")
    assert store.git_state(tmp_path)[1] is False  # a sweep's own outputs do not make the code dirty
    (tmp_path / "bench/code.py").write_text("v2\n")
    assert store.git_state(tmp_path)[1] is True


def test_a_copied_tree_records_the_sha_its_copier_names(tmp_path, monkeypatch):
    """A tree copied to a remote GPU machine records the sha its copier names, dirty unknown, with or without a
    .git beside it (one that came along read as an older commit)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path either
    monkeypatch.delenv(store.SOURCE_SHA_ENV, raising=False)
    assert store.git_state(tmp_path) == ("unknown", None)
    monkeypatch.setenv(store.SOURCE_SHA_ENV, "0123abcd" * 5)
    assert store.git_state(tmp_path) == ("0123abcd" * 5, None)
    assert store.git_state()[0] == "0123abcd" * 5  # this checkout's own .git does not override it
