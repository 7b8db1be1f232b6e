"""bench.isolate: every way a case can end becomes an Outcome, the worker survives it, and peaks are right."""
from __future__ import annotations

import pytest

from bench.config import Case
from bench.isolate import ALLOCATOR_POLICY, Outcome, Worker, classify, one_line

import fake_sweep

TARGET = "fake_sweep:execute"
MiB = 2**20


def case(kind: str, i: int = 0) -> Case:
    return Case.make(fake_sweep.NAME, i=i, variant=kind)


@pytest.fixture(scope="module")
def worker():
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as w:
        yield w


@pytest.fixture(scope="module")
def roomy_worker():
    with Worker(threads=1, mem_cap_bytes=8 * 2**30) as w:
        yield w


def test_ok_case_returns_its_metrics_from_a_capped_child(worker):
    out = worker.run(TARGET, case("ok", i=3), timeout_s=60)
    assert (out.status, out.metrics["value"], out.error) == ("ok", 9, "")
    assert out.wall_s >= 0 and worker.info["threads"] == 1
    assert worker.info["as_limit_bytes"] == worker.info["as_baseline_bytes"] + 512 * MiB


def test_the_child_is_reused_across_cases(worker):
    pids = {worker.run(TARGET, case("ok", i=i), timeout_s=60).metrics["pid"] for i in range(3)}
    assert len(pids) == 1


def test_over_the_memory_cap_is_oom_and_the_next_case_runs(worker):
    out = worker.run(TARGET, case("oom"), timeout_s=60)
    assert out.status == "oom" and "DefaultCPUAllocator" in out.error and "\n" not in out.error
    assert worker.run(TARGET, case("ok"), timeout_s=60).status == "ok"


def test_over_the_time_cap_is_timeout_and_the_next_case_runs(worker):
    out = worker.run(TARGET, case("sleep"), timeout_s=1.0)
    assert out.status == "timeout" and out.error.startswith("TimeoutError:")
    assert 0.9 < out.wall_s < 30
    assert worker.run(TARGET, case("ok"), timeout_s=60).status == "ok"


def test_a_child_killed_by_a_signal_is_killed_and_the_next_case_runs(worker):
    before = worker.starts
    out = worker.run(TARGET, case("sigkill"), timeout_s=60)
    assert out.status == "killed" and "killed by SIGKILL" in out.error
    assert worker.run(TARGET, case("ok"), timeout_s=60).status == "ok"
    assert worker.starts == before + 1


def test_a_child_that_exits_is_an_error(worker):
    out = worker.run(TARGET, case("exit"), timeout_s=60)
    assert out.status == "error" and "code 3" in out.error
    assert worker.run(TARGET, case("ok"), timeout_s=60).status == "ok"


@pytest.mark.parametrize("kind, status, error", [
    ("unsupported", "unsupported", "NotImplementedError: this combination is not supported"),
    ("error", "error", "ValueError: first line"),
])
def test_exceptions_map_to_a_status_and_one_line(worker, kind, status, error):
    out = worker.run(TARGET, case(kind), timeout_s=60)
    assert (out.status, out.error, out.metrics) == (status, error, {})


def test_a_bad_target_is_an_error_not_a_crash(worker):
    assert worker.run("no_such_module_xyz:execute", case("ok"), 60).error.startswith("ModuleNotFoundError")
    assert worker.run("fake_sweep", case("ok"), 60).status == "error"


def test_peak_probe_sees_256_mib_repeatedly_in_one_child(roomy_worker):
    outs = [roomy_worker.run(TARGET, case("probe"), timeout_s=60) for _ in range(5)]
    assert all(o.status == "ok" for o in outs), [o.error for o in outs]
    assert len({o.metrics["pid"] for o in outs}) == 1
    for out in outs:
        assert out.metrics["peak_bytes"] == pytest.approx(fake_sweep.PROBE_BYTES, rel=0.05)


def test_classify_and_one_line_without_a_child():
    assert classify(NotImplementedError()) == "unsupported"
    assert classify(MemoryError()) == "oom"
    assert classify(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "oom"
    assert classify(RuntimeError("CUDA out of memory. Tried to allocate")) == "oom"
    assert classify(RuntimeError("shape mismatch")) == "error"
    assert one_line(ValueError("a\nb")) == "ValueError: a" and one_line(KeyError()) == "KeyError"


def test_outcome_rejects_unknown_status_and_policy_is_json_able():
    import json

    with pytest.raises(ValueError):
        Outcome("fine")
    assert json.loads(json.dumps(ALLOCATOR_POLICY))["mmap_max"] == 0


def test_fresh_child_runs_every_case_in_a_new_process():
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as w:
        outs = [w.run(TARGET, case("ok", i=i), timeout_s=60, fresh=True) for i in range(3)]
    assert [o.status for o in outs] == ["ok"] * 3
    assert len({o.metrics["pid"] for o in outs}) == 3 and w.starts == 3


def test_peak_probe_reads_the_live_peak_not_the_retained_heaps_holes():
    """A freed 32 MiB hole that the next 40 MiB tensor cannot use: the retained heap keeps both resident (74 MiB
    touched), the probe maps large allocations and reads the 42 MiB the call really holds at its peak, and an
    inner mapped block exiting inside an outer one does not switch the mapping off. A fresh child: the heap's
    history decides where the holes are."""
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as fresh:
        out = fresh.run(TARGET, case("holes"), timeout_s=60)
    assert out.status == "ok", out.error
    m = out.metrics
    assert m["retained"] >= 70 * MiB  # the setup really fragments the retained heap (so this test can fail)
    for key in ("mapped", "nested", "still_mapped"):
        assert m[key] == pytest.approx(42 * MiB, rel=0.05), (key, m[key] / MiB)


def test_a_probe_restores_the_mmap_setting_of_the_process_it_runs_in(monkeypatch):
    """A worker child (the policy's tunables) gets mmap_max 0 back; any other process glibc's default."""
    from bench import isolate

    monkeypatch.setenv("GLIBC_TUNABLES", ALLOCATOR_POLICY["glibc_tunables"])
    assert isolate.process_mmap_max() == 0
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    assert isolate.process_mmap_max() == isolate.GLIBC_MMAP_MAX
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert isolate.process_mmap_max() == isolate.GLIBC_MMAP_MAX


def test_peak_probe_collects_cyclic_garbage_first_and_pauses_the_collector():
    """Tensors held by reference cycles of earlier calls are freed before the baseline, not (or not) during the
    probe depending on the collector's timing: the same case read one tensor apart in two fresh children."""
    import gc
    import weakref

    from bench.isolate import peak_bytes

    class Cycle:
        pass

    garbage = Cycle()
    garbage.self = garbage
    alive = weakref.ref(garbage)
    del garbage
    seen = {}

    def fn():
        seen.update(alive=alive() is not None, collector=gc.isenabled())

    peak_bytes(fn)
    assert seen == {"alive": False, "collector": False} and gc.isenabled()
