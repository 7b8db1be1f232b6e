"""The command line: list, run's flag handling, one-line errors with exit code 2."""
import json

import pytest

import variants
from bench import cli


def test_list_prints_every_variant_with_its_properties(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in variants.specs():
        line = next(l for l in out.splitlines() if l.startswith(spec.name + " "))
        assert spec.family in line and spec.time_complexity in line and str(spec.paper.year) in line


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown sweep"),
    (["run", "efficiency", "--variants=full_nope"], "unknown variant"),
    (["run", "efficiency", "--seq-lens=0,128"], "must be positive"),
    (["run", "efficiency", "--seq-lens=abc"], "--seq-lens=abc"),
    (["run", "efficiency", "--device=cuda"], "not available"),
    (["run", "efficiency", "--profile=huge"], "unknown profile"),
    (["run", "efficiency", "--bogus=1"], "unknown option --bogus"),
    (["limits", "--mem-budget-bytes=10"], "64 MiB"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_run_writes_rows_and_prints_a_summary(tmp_path, capsys):
    argv = ["run", "efficiency", "--variants=full_sdpa,linear_elu", "--seq-lens=64,128", "--phases=forward",
            "--causal=false", "--min-run-time=0.01", f"--out-dir={tmp_path}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "full_sdpa" in out and "linear_elu" in out
    lines = (tmp_path / "efficiency-quick-cpu.jsonl").read_text().splitlines()
    manifest, rows = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
    assert manifest["kind"] == "manifest" and manifest["gemm_peak_flops"] > 0
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(r["flops"] == r["flops_analytic"] for r in rows)
    assert cli.main(argv + ["--resume"]) == 0  # nothing left to do, nothing duplicated
    assert len((tmp_path / "efficiency-quick-cpu.jsonl").read_text().splitlines()) == 6


def test_sweep_names_accept_hyphens():
    from bench import sweeps

    assert sweeps.get("data-scaling") is sweeps.get("data_scaling")


def test_run_sweep_help_lists_its_fields_from_the_config(capsys):
    """``run SWEEP --help``: every Config field as --flag, type, the chosen profile's default and one line of doc."""
    import dataclasses

    from bench import sweeps

    assert cli.main(["run", "efficiency", "--profile=full", "--help"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("--fresh-child-min-t "))
    assert line.split()[1:3] == ["int", "32768"] and "child" in line.split(None, 3)[3]
    for name in sweeps.names():
        sweep = sweeps.get(name)
        text = cli.sweep_help(sweep, "quick")
        for field in dataclasses.fields(sweep.config):
            row = next(l for l in text.splitlines() if l.strip().startswith(f"--{field.name.replace('_', '-')} "))
            assert len(row.split(None, 3)) == 4, f"{name}: --{field.name} has no doc (a trailing # comment)"


def test_report_says_each_figure_as_it_is_drawn(tmp_path, capsys):
    from pathlib import Path

    from bench import plots

    fixtures = Path(__file__).parent / "fixtures" / "results"
    assert cli.main(["report", f"--results-root={fixtures}", f"--out-dir={tmp_path}"]) == 0
    captured = capsys.readouterr()
    lines = [l for l in captured.err.splitlines() if l.startswith("report: figure ")]
    n = len(plots.FIGURES)
    assert len(lines) == n and lines[0].startswith(f"report: figure 1/{n} time_vs_length drawn (")
    assert any("not measured yet" in l for l in lines)  # the fixtures have no data_scaling rows
    assert f"report: {tmp_path / 'index.html'}" in captured.out
