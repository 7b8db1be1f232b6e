"""bench.isolate: every way a case can end becomes an Outcome, and the worker survives it."""
from __future__ import annotations

import pytest

from bench.config import Case
from bench.isolate import Worker, child_env
from bench.measure import ALLOCATOR_POLICY

import fake_sweep

TARGET = "fake_sweep:execute"
MiB = 2**20


def case(kind: str, i: int = 0) -> Case:
    return Case.make(fake_sweep.NAME, i=i, variant=kind)


@pytest.fixture(scope="module")
def worker():
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as w:
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


def test_fresh_child_runs_every_case_in_a_new_process():
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as w:
        outs = [w.run(TARGET, case("ok", i=i), timeout_s=60, fresh=True) for i in range(3)]
    assert [o.status for o in outs] == ["ok"] * 3
    assert len({o.metrics["pid"] for o in outs}) == 3 and w.starts == 3


def test_for_device_caps_the_address_space_on_cpu_only_and_children_get_the_policy():
    assert Worker.for_device("cpu", 1, 512 * MiB).cap_address_space
    assert not Worker.for_device("cuda:0", 1).cap_address_space
    env = child_env(threads=3)
    assert ALLOCATOR_POLICY["glibc_tunables"] in env["GLIBC_TUNABLES"] and env["OMP_NUM_THREADS"] == "3"
