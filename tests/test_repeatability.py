"""The repeatability sweep: fresh children per case, repeats outermost, and the spread table's arithmetic."""
from __future__ import annotations

import pandas as pd
import pytest

from bench import store
from bench.config import ConfigError, apply_overrides
from bench.run import run_sweep
from bench.analysis import repeatability as analysis
from bench.sweeps import repeatability as rep


def test_repeats_are_outermost_and_config_errors_are_one_line():
    cfg = apply_overrides(rep.PROFILES["quick"], {"variants": "full_sdpa,linear_elu", "repeats": "3"})
    got = [(c["repeat"], c["variant"], c["phase"]) for c in rep.cases(cfg)]
    assert len(got) == 3 * 2 * len(cfg.phases) and [r for r, _, _ in got] == sorted(r for r, _, _ in got)
    for bad in ({"repeats": "1"}, {"phases": "sideways"}, {"seq_lens": "0"}):
        with pytest.raises(ConfigError):
            apply_overrides(rep.PROFILES["quick"], bad).validate()


def frame(peaks, medians, iqrs):
    n = len(peaks)
    return pd.DataFrame({"sweep": rep.NAME, "status": "ok", "variant": "v", "phase": "forward", "T": 1024,
                         "peak_bytes": peaks, "median_s": medians, "iqr_s": iqrs, "repeat": range(n)})


def test_spread_table_flags_memory_beyond_five_percent_and_unstable_times():
    good = analysis.repeat_table(frame([100e6, 104e6], [0.010, 0.011], [0.0002, 0.0003])).iloc[0]
    assert good["mem_spread"] == pytest.approx(2e6 / 102e6) and good["mem_ok"]
    assert good["max_rel_iqr"] == pytest.approx(0.0003 / 0.011) and good["time_ok"]
    bad = analysis.repeat_table(frame([100e6, 112e6], [0.010, 0.010], [0.0002, 0.0005])).iloc[0]
    assert not bad["mem_ok"] and not bad["time_ok"]
    assert pd.isna(bad["live_spread"])  # rows without live bytes (CUDA, older runs)
    sub_ms = analysis.repeat_table(frame([1e6, 1e6], [1e-4, 1e-4], [5e-5, 5e-5])).iloc[0]
    assert sub_ms["time_ok"] is None  # the 3% bound is not applied under 1 ms


def test_live_bytes_spread_separates_the_heap_layout_from_the_call():
    rows = frame([100e6, 112e6], [0.010, 0.010], [0.0002, 0.0002]).assign(peak_live_bytes=[90e6, 90e6])
    row = analysis.repeat_table(rows).iloc[0]
    assert not row["mem_ok"] and row["live_spread"] == 0.0


def test_each_repeat_runs_in_its_own_child(tmp_path):
    cfg = apply_overrides(rep.PROFILES["quick"], {"variants": "full_sdpa", "seq_lens": "256", "phases": "forward",
                                                  "min_run_time": "0.01", "threads": "1"})
    path = run_sweep(rep.SWEEP, cfg, profile="quick", out_dir=tmp_path)
    df = store.load(path)
    assert list(df["status"]) == ["ok", "ok"] and df["child_pid"].nunique() == 2
    assert (df["peak_bytes"] > 0).all() and "memory within 5%" in analysis.summary(df)
    assert (df["peak_live_bytes"] > 0).all() and df["peak_live_bytes"].nunique() == 1
