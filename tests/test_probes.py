"""bench.measure.probes: peaks read in a worker child are the call's own, whatever the heap's history."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import Case
from bench.isolate import Worker
from bench.measure import ALLOCATOR_POLICY

import fake_sweep

TARGET = "fake_sweep:execute"
ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20


def case(kind: str, i: int = 0) -> Case:
    return Case.make(fake_sweep.NAME, i=i, variant=kind)


@pytest.fixture(scope="module")
def roomy_worker():
    with Worker(threads=1, mem_cap_bytes=8 * 2**30) as w:
        yield w


def test_peak_probe_sees_256_mib_repeatedly_in_one_child(roomy_worker):
    outs = [roomy_worker.run(TARGET, case("probe"), timeout_s=60) for _ in range(5)]
    assert all(o.status == "ok" for o in outs), [o.error for o in outs]
    assert len({o.metrics["pid"] for o in outs}) == 1
    for out in outs:
        assert out.metrics["peak_bytes"] == pytest.approx(fake_sweep.PROBE_BYTES, rel=0.05)


def test_peak_probe_reads_the_live_peak_not_the_retained_heaps_holes():
    """A freed 32 MiB hole that the next 40 MiB tensor cannot use: the retained heap keeps both resident (74 MiB
    touched), the probe maps large allocations and reads the 42 MiB the call really holds at its peak, and an
    inner mapped block exiting inside an outer one does not switch the mapping off. A fresh child; the scenario
    plugs the heap's free chunks first, so the hole exists whatever torch's start-up left free."""
    with Worker(threads=1, mem_cap_bytes=512 * MiB) as fresh:
        out = fresh.run(TARGET, case("holes"), timeout_s=60)
    assert out.status == "ok", out.error
    m = out.metrics
    for key in ("mapped", "nested", "still_mapped"):
        assert m[key] == pytest.approx(42 * MiB, rel=0.05), (key, m[key] / MiB)
    # the setup really fragmented the retained heap (so this test can fail)
    assert m["retained"] == pytest.approx(74 * MiB, rel=0.05), m["retained"] / MiB


def test_the_allocator_policy_is_settings_only_and_json_able():
    assert json.loads(json.dumps(ALLOCATOR_POLICY))["mmap_max"] == 0
    assert all(not isinstance(v, str) or len(v) < 200 for v in ALLOCATOR_POLICY.values())


def test_a_probe_restores_the_mmap_setting_of_the_process_it_runs_in(monkeypatch):
    """A worker child (the policy's tunables) gets mmap_max 0 back; any other process glibc's default."""
    from bench.measure import probes

    monkeypatch.setenv("GLIBC_TUNABLES", ALLOCATOR_POLICY["glibc_tunables"])
    assert probes.process_mmap_max() == 0
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    assert probes.process_mmap_max() == probes.GLIBC_MMAP_MAX
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert probes.process_mmap_max() == probes.GLIBC_MMAP_MAX


def test_peak_probe_collects_cyclic_garbage_first_and_pauses_the_collector():
    """Tensors held by reference cycles of earlier calls are freed before the baseline, not (or not) during the
    probe depending on the collector's timing: the same case read one tensor apart in two fresh children."""
    import gc
    import weakref

    from bench.measure.probes import peak_bytes

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


def test_asv_reads_forward_peaks_in_one_worker_child():
    """The asv suite's peaks come from ``probes.forward_peak`` in a worker child; an unknown variant is None."""
    from bench.suite import common

    peaks = common.peak_bytes_of([("full_naive", 256), ("no_such_variant", 256)], threads=1)
    B, H, T = common.B, common.H, 256
    assert peaks[("full_naive", 256)] >= B * H * T * T * 4  # the naive forward holds its fp32 scores
    assert peaks[("no_such_variant", 256)] is None


def test_a_sweep_prints_no_profiler_lines(tmp_path):
    """live_peak_bytes runs torch's profiler once per forward case; kineto's start/stop lines stay off stderr."""
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    cmd = [sys.executable, "-m", "bench", "run", "efficiency", "--profile", "quick", "--variants=full_naive",
           "--seq-lens=64,128", "--phases=forward", "--causal=false", f"--out-dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "efficiency-quick-cpu.jsonl").read_text().splitlines()]
    assert sum(r.get("peak_live_bytes") is not None for r in rows) == 2  # the profiler did run, twice
    noise = [line for line in done.stderr.splitlines() if "profiler_start" in line or "USDT" in line]
    assert noise == []
