import pytest

from bench.config import ConfigError, apply_overrides
from bench.sweeps import limits


def probe_below(limit):
    seen = []

    def probe(T):
        seen.append(T)
        return T <= limit
    return probe, seen


@pytest.mark.parametrize("limit", [1500, 4096, 5000, 100_000])
def test_search_brackets_the_limit(limit):
    probe, seen = probe_below(limit)
    lo, hi = limits.search(probe, start=1024, max_t=2 ** 20, grid=256, steps=4)
    assert lo <= limit < hi
    assert hi - lo <= max(256, hi // 8)
    assert len(seen) == len(set(seen))


def test_search_reports_censoring_both_ways():
    probe, _ = probe_below(10 ** 9)
    assert limits.search(probe, 1024, 8192, 256, 4) == (8192, None)
    probe, _ = probe_below(100)
    lo, hi = limits.search(probe, 1024, 8192, 256, 4)
    assert lo == 64 and hi == 128
    probe, _ = probe_below(0)
    assert limits.search(probe, 4, 8192, 256, 4) == (None, 1)


def test_bad_limits_flags_are_one_line_errors():
    with pytest.raises(ConfigError, match="64 MiB"):
        apply_overrides(limits.PROFILES["quick"], {"mem-budget-bytes": "1000"})
    with pytest.raises(ConfigError, match="unknown budget"):
        apply_overrides(limits.PROFILES["quick"], {"budgets": "memory,speed"})
    with pytest.raises(ConfigError, match="start-t"):
        apply_overrides(limits.PROFILES["quick"], {"start-t": "0"})


def test_a_time_search_is_not_ended_by_the_memory_budgets_cap(tmp_path):
    """Time probes run under the worker's default cap: with a 64 MiB memory budget (probes capped at 96 MiB) the
    time search of linear_elu still goes past T = 65536, whose inputs alone take 192 MiB, without an oom."""
    from bench import store
    from bench.run import run_sweep
    from bench.sweeps import limits

    cfg = limits.Config(variants=("linear_elu",), budgets=("time",), mem_budget_bytes=64 * 2**20,
                        time_budget_s=0.5, start_t=16384, max_t=2**17, threads=1, time_cap_s=60.0)
    rows = store.load(run_sweep(limits.SWEEP, cfg, profile="quick", out_dir=tmp_path))
    probes, found = rows[rows["kind"] == "row"], rows[rows["kind"] == "limit"].iloc[0]
    assert set(probes["status"]) == {"ok"}
    assert found["max_fit_t"] >= 65536 and found["min_fail_why"] in ("", "over budget")
    manifest = store.load_manifests(root=tmp_path).iloc[0]
    assert manifest["mem_cap_bytes"] == 96 * 2**20 and manifest["time_probe_mem_cap_bytes"] > 96 * 2**20


def test_a_resumed_limits_run_skips_the_limits_it_found(tmp_path):
    """run_sweep drives the limits plan: probes are rows, the limit is kind "limit", and resume skips it."""
    from bench import store
    from bench.run import run_sweep

    cfg = limits.Config(variants=("linear_elu",), budgets=("memory",), mem_budget_bytes=256 * 2**20, start_t=256,
                        max_t=512, grid=256, bisect_steps=0, threads=1, head_dim=16, time_cap_s=60.0)
    path = run_sweep(limits.SWEEP, cfg, profile="quick", out_dir=tmp_path, progress=False)
    rows = store.load(path)
    assert list(rows["kind"]) == ["row", "row", "limit"] and list(rows["T"][:2]) == [256, 512]
    assert rows["max_fit_t"].iloc[-1] == 512 and bool(rows["censored"].iloc[-1])
    before = len(path.read_text().splitlines())
    run_sweep(limits.SWEEP, cfg, profile="quick", out_dir=tmp_path, resume=True, progress=False)
    assert len(path.read_text().splitlines()) == before + 1  # a new segment's manifest, nothing else


def drive(budget: str, outcomes: dict[int, "Outcome"]):
    """Run one search of the limits plan on canned probe outcomes (T -> Outcome); return probes and the limit."""
    from bench.outcome import Outcome
    from bench.sweep import Summary

    cfg = limits.Config(start_t=1024, max_t=2 ** 16, grid=256, bisect_steps=3)
    walk, probed = limits._search(cfg, "full_sdpa", budget), []
    step = next(walk)
    while not isinstance(step, Summary):
        probed.append(step["T"])
        step = walk.send(outcomes.get(step["T"], Outcome("ok", {"fits": True})))
    return probed, step.outcome.metrics


def test_a_search_stopped_by_a_probe_cap_is_censored():
    from bench.outcome import Outcome

    probed, limit = drive("memory", {4096: Outcome("timeout", error="over the time cap")})
    assert probed == [1024, 2048, 4096]  # no bisection against a bound that is not the budget's
    assert limit["censored"] and limit["max_fit_t"] == 2048 and limit["min_fail_t"] == 4096
    assert limit["min_fail_why"] == "timeout (probe cap, not the budget: censored)"
    probed, limit = drive("time", {4096: Outcome("oom", error="DefaultCPUAllocator")})
    assert limit["censored"] and "oom (probe cap" in limit["min_fail_why"]


@pytest.mark.parametrize("budget, over", [("memory", "oom"), ("time", "timeout"), ("memory", "ok")])
def test_a_failure_over_the_budget_is_a_limit_found(budget, over):
    from bench.outcome import Outcome

    fail = Outcome("ok", {"fits": False}) if over == "ok" else Outcome(over, error="")
    probed, limit = drive(budget, {T: fail for T in range(4096, 2 ** 17, 256)})
    assert not limit["censored"] and limit["max_fit_t"] == 3840 and limit["min_fail_t"] == 4096
    assert limit["min_fail_why"] == ("over budget" if over == "ok" else over) and len(probed) > 3  # bisected


def test_memory_probes_get_their_own_time_cap():
    cfg = limits.PROFILES["quick"]
    memory, time = (limits.probe_case(cfg, "full_sdpa", b, 4096) for b in ("memory", "time"))
    assert limits.time_cap(cfg, memory) == cfg.memory_time_cap_s > limits.time_cap(cfg, time) == cfg.time_cap_s


def test_the_figure_labels_a_probe_cap_apart_from_the_search_cap():
    from bench.plots.limits import bar_text

    why = limits.censored_why("timeout")
    assert bar_text(65536, True, 131072, why) == "≥ 65,536 (timeout at 131,072: probe cap)"
    assert bar_text(65536, True, float("nan"), "") == "≥ 65,536 (search cap)"
    assert bar_text(4096, False, 4608, "over budget") == "4,096 (fails at 4,608)"


def test_an_older_record_stopped_by_a_probe_timeout_reads_as_censored():
    import pandas as pd

    from bench.analysis.limits import limits_table

    base = {"kind": "limit", "status": "ok", "mem_budget_bytes": 2 ** 30, "time_budget_s": 0.1, "censored": False}
    rows = pd.DataFrame([{**base, "variant": "full_sdpa", "budget": "memory", "max_fit_t": 28672,
                          "min_fail_t": 30720, "min_fail_why": "timeout"},
                         {**base, "variant": "full_naive", "budget": "memory", "max_fit_t": 5632,
                          "min_fail_t": 6144, "min_fail_why": "oom"},
                         {**base, "variant": "full_naive", "budget": "time", "max_fit_t": 3840,
                          "min_fail_t": 4096, "min_fail_why": "timeout"}])
    table = limits_table(rows).set_index(["variant", "budget"])["censored"]
    assert table["full_sdpa", "memory"] and not table["full_naive", "memory"] and not table["full_naive", "time"]
    why = limits_table(rows).set_index(["variant", "budget"])["min_fail_why"]
    assert why["full_sdpa", "memory"] == "timeout (probe cap, not the budget: censored)"
    assert why["full_naive", "time"] == "timeout"
