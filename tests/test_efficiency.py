"""bench/sweeps/efficiency.py: which cases a profile makes, and the exponent table built from rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import variants
from bench.config import ConfigError
from bench.analysis import efficiency as eff_analysis
from bench.sweeps import efficiency as eff


def grid(cfg: eff.Config) -> set[tuple[str, int, str]]:
    return {(c["variant"], c["T"], c["phase"]) for c in eff.cases(cfg)}


def test_full_profile_takes_subquadratic_variants_past_the_quadratic_cap():
    cfg = eff.PROFILES["full"]
    made = grid(cfg)
    top = max(cfg.seq_lens)
    assert top >= 4 * cfg.quadratic_max_t  # the linear ones get two doublings beyond the quadratic ones
    for name in variants.names():
        longest = max(T for v, T, p in made if v == name and p == "forward")
        if variants.get(name).spec.time_exponent >= 2:
            assert longest == cfg.quadratic_max_t, name
        else:
            assert longest == top, name
    assert max(T for v, T, p in made if p == "train_step") == cfg.train_step_max_t


def test_no_quadratic_cap_by_default_and_a_negative_one_is_refused():
    cfg = eff.Config(variants=("full_sdpa",), seq_lens=(128, 256), phases=("forward",))
    assert {T for _, T, _ in grid(cfg)} == {128, 256}
    with pytest.raises(ConfigError, match="quadratic-max-t"):
        eff.Config(quadratic_max_t=-1).validate()


def test_memory_exponent_sees_through_a_fixed_buffer():
    """A linear variant with a 4 MiB buffer beside an output of 1 KiB per token: slope < 0.9, offset fit ≈ 1."""
    T = 2 ** np.arange(10, 16)
    rows = pd.DataFrame({"sweep": "efficiency", "status": "ok", "variant": "linear_elu", "phase": "forward",
                         "causal": False, "T": T, "median_s": 1e-6 * T, "peak_bytes": 4 * 2 ** 20 + 1024 * T})
    table = eff_analysis.exponent_table(rows)
    (row,) = table.to_dict("records")
    assert row["mem_exp"].value == pytest.approx(1.0, abs=0.02)
    assert row["time_exp"].value == pytest.approx(1.0, abs=0.01)
    assert eff_analysis.memory_exponent(T[:2], T[:2]) is None  # three lengths at least


def test_summary_and_tables_say_n_a_for_a_two_length_curve():
    """Two lengths: a time "exponent" is an exact 2-point line, shown as n/a in the summary and flagged in the
    time table; the memory fit needs three lengths and is n/a too."""
    T = np.array([1024, 2048])
    rows = pd.DataFrame({"sweep": "efficiency", "status": "ok", "variant": "linear_elu", "phase": "forward",
                         "causal": False, "T": T, "median_s": 1e-6 * T, "iqr_s": 0.0, "peak_bytes": 1024 * T,
                         "bytes_analytic": 1024 * T})
    line = eff_analysis.summary(rows).splitlines()[1]
    assert line.count("n/a") == 2 and "n/a (2 points)" in line, line
    (timed,) = eff_analysis.time_table(rows).to_dict("records")
    assert timed["fit"] == "n/a: 2 points" and timed["n_fit"] == 2
    (mem,) = eff_analysis.memory_table(rows, rows, rows).to_dict("records")
    assert mem["fit"] == "n/a: too few points" and mem["analytic_exponent"] == "n/a"


def test_the_gpu_profiles_run_past_launch_bound_lengths_until_memory_or_the_quadratic_cap():
    """bf16 and fp32 on CUDA from T = 1024 (the quick CUDA run is launch-bound at T <= 4096) up to 2^23, where
    the sub-quadratic variants run out of an H200's memory; the quadratic ones stop at their time cap."""
    for profile, dtype, quadratic_cap in (("gpu", "bfloat16", 1 << 19), ("gpu_fp32", "float32", 1 << 18)):
        cfg = eff.PROFILES[profile]
        cases = list(eff.cases(cfg))
        assert {c["dtype"] for c in cases} == {dtype} and {c["device"] for c in cases} == {"cuda"}
        top = {name: max(c["T"] for c in cases if c["variant"] == name) for name in variants.names()}
        for name, T in top.items():
            quadratic = variants.get(name).spec.time_exponent >= 2
            assert T == (quadratic_cap if quadratic else 1 << 23), (profile, name)
        assert min(c["T"] for c in cases) == 1024


def test_a_gpu_profile_without_a_gpu_is_a_one_line_error(capsys, tmp_path):
    import torch

    from bench import cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli.main(["run", "efficiency", "--profile", "gpu", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not available here" in err


def test_causal_flops_of_a_kernel_that_skips_masked_blocks_count_the_lower_triangle():
    T, D = 1000, 16
    sdpa, naive = variants.get("full_sdpa").spec, variants.get("full_naive").spec
    assert sdpa.causal_skips_masked and not naive.causal_skips_masked
    assert sdpa.executed_flops(2, 3, T, D, causal=True) == 2 * 3 * 4 * D * T * (T + 1) // 2  # T(T+1)/2 pairs
    assert sdpa.executed_flops(2, 3, T, D, causal=False) == sdpa.analytic_flops(2, 3, T, D) == 2 * 3 * 4 * D * T * T
    assert naive.executed_flops(2, 3, T, D, causal=True) == naive.analytic_flops(2, 3, T, D, causal=True)
    window = variants.get("sparse_window").spec  # its formula already counts only the blocks it computes
    assert window.executed_flops(1, 1, T, D, causal=True) == window.analytic_flops(1, 1, T, D, causal=True)


def test_flops_fraction_uses_executed_flops():
    rows = pd.DataFrame([{"variant": v, "causal": c, "T": 1024, "B": 1, "H": 1, "D": 64, "phase": "forward",
                          "status": "ok", "median_s": 1.0, "flops_analytic": 4 * 1024 * 1024 * 64, "run_id": "r"}
                         for v in ("full_sdpa", "full_naive") for c in (False, True)])
    manifests = pd.DataFrame([{"run_id": "r", "gemm_peak_flops": 1e9}])
    table = eff_analysis.flops_table(eff_analysis.flops_rows(rows, manifests)).set_index(["variant", "causal"])
    full = 4 * 1024 * 1024 * 64
    assert table.loc[("full_sdpa", True), "flops_executed"] == full * 1025 // 2048
    assert table.loc[("full_sdpa", False), "flops_executed"] == table.loc[("full_naive", True), "flops_executed"] == full
    assert table.loc[("full_sdpa", True), "fraction_of_peak"] == pytest.approx(full * 1025 / 2048 / 1e9)
