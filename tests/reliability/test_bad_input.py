"""Every row of the bad-input catalogue (bad_inputs.py): one stderr line naming the problem and the fix, the
documented exit code, no traceback, and the results folder byte-identical before and after."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

import variants
from bad_inputs import CASES, DOC, Bad, render
from bench import cli, store
from reliability_helpers import ROOT, PYTHON, env, folder_hash

FIXTURE = ROOT / "tests" / "fixtures" / "results"
CLI_CASES = [b for b in CASES if not b.command.startswith("python:") and "(SIGINT)" not in b.command]
API_CASES = [b for b in CASES if b.command.startswith("python:")]
# The progress lines every run and report prints on stderr (bench.progress, bench.report): not the answer to a
# bad input, so they are set aside before counting its one line.
PROGRESS = re.compile(r"^(report: figure \d+/\d+ |[\w-]+: case \d+(/\d+)?, )")


def answer_lines(err: str) -> list[str]:
    """stderr without the progress lines."""
    return [line for line in err.strip().splitlines() if not PROGRESS.match(line)]


def _write(path: Path, records: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """The folders the placeholders name, each written once."""
    base = tmp_path_factory.mktemp("bad")
    manifest = store.manifest(sweep="efficiency", profile="quick", device="cpu",
                              env={"torch": "x", "parallel_info": "", "threads": 1, "device_name": "cpu"})
    p = {name: base / name.lower() for name in ("RESULTS", "EMPTY", "OTHER", "NEWER", "GARBAGE", "BLANK",
                                                  "REPORTS", "PLUGIN")}
    real = (FIXTURE / "efficiency-quick-cpu.jsonl").read_text().splitlines()
    _write(store.results_path(p["RESULTS"], "efficiency", "quick", "cpu"), real)
    p["EMPTY"].mkdir()
    _write(store.results_path(p["OTHER"], "efficiency", "quick", "cpu"), [{**manifest, "sweep": "limits"}])
    _write(store.results_path(p["NEWER"], "efficiency", "quick", "cpu"),
           [{**manifest, "schema_version": store.SCHEMA_VERSION + 1}])
    _write(store.results_path(p["GARBAGE"], "efficiency", "quick", "cpu"), [real[0], "}{ not json", *real[1:]])
    _write(p["BLANK"] / "efficiency-quick-cpu.jsonl", [])
    _write(p["PLUGIN"] / "dup_plugin.py", ["from variants.full import NaiveAttention",
                                            "from variants import register", "register(NaiveAttention)"])
    p["FILE"] = base / "a-file"
    p["FILE"].write_text("not a folder\n")
    p["READONLY"] = Path(tempfile.mkdtemp(prefix="attention-limits-readonly-"))  # in /tmp: others may enter it
    _write(store.results_path(p["READONLY"], "efficiency", "quick", "cpu"), real)
    for path in (p["READONLY"], *p["READONLY"].iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    yield p
    p["READONLY"].chmod(0o755)
    shutil.rmtree(p["READONLY"])


NOBODY = 65534  # the conventional unprivileged id; no passwd entry is needed to take it


@contextlib.contextmanager
def not_root():
    """Run the block as ``nobody`` when the tests run as root (whom no permission bit stops): the effective
    ids only, so they can be switched back. Nobody may not be able to read this Python's own library: the caller
    runs the same command once as root first, so everything it imports is loaded already."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def argv_of(bad: Bad, places: dict[str, Path]) -> list[str]:
    words = bad.command.split()
    for name, path in places.items():
        words = [w.replace(name, str(path)) for w in words]
    return words


@pytest.mark.parametrize("bad", CLI_CASES, ids=lambda b: b.problem)
def test_a_bad_command_gets_one_line_and_changes_nothing(bad, places, capsys, monkeypatch):
    monkeypatch.chdir(places["PLUGIN"])  # where `check --plugin=dup_plugin` finds its module
    stored = [name for name, path in places.items() if path.is_dir() and name != "REPORTS"]  # REPORTS: output
    before = {name: folder_hash(places[name]) for name in stored}
    if "READONLY" in bad.command:  # the same command into FILE/x (refused as root too): its imports, as root
        cli.main([w.replace(str(places["READONLY"]), f"{places['FILE']}/x") for w in argv_of(bad, places)])
        capsys.readouterr()
    with not_root() if "READONLY" in bad.command else contextlib.nullcontext():
        code = cli.main(argv_of(bad, places))
    err = capsys.readouterr().err
    assert code == bad.code and bad.expect in err, err
    assert len(answer_lines(err)) == 1 and "Traceback" not in err, err
    assert before == {name: folder_hash(places[name]) for name in stored}


def qkv(T: int, B: int = 1):
    return [torch.randn(B, 2, T, 8) for _ in range(3)]


@pytest.mark.parametrize("bad", API_CASES, ids=lambda b: b.problem)
def test_a_bad_call_raises_one_named_line(bad, places):
    expression = bad.command.removeprefix("python: ")
    for name, path in places.items():
        expression = expression.replace(name, repr(str(path)))
    with pytest.raises(Exception) as info:
        eval(expression, {"variants": variants, "store": store, "torch": torch, "qkv": qkv})
    assert type(info.value).__name__ == bad.raises and bad.expect in str(info.value)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_the_rows_kept(tmp_path):
    (bad,) = [b for b in CASES if "(SIGINT)" in b.command]
    argv = ["run", "efficiency", "--variants=full_sdpa,linear_elu", "--seq-lens=64,128,256,512,1024,2048",
            "--phases=forward", "--min-run-time=1", f"--out-dir={tmp_path}"]  # >= 1 s a case: 24 s to interrupt
    proc = subprocess.Popen([PYTHON, "-m", "bench", *argv], env=env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    path = store.results_path(tmp_path, "efficiency", "quick", "cpu")
    deadline = time.monotonic() + 300
    while not store.finished_case_ids(path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    seen = store.finished_case_ids(path)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # during the second case (each takes seconds) or the third
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == bad.code and answer_lines(err) == [f"attention-limits: {bad.expect}"], err
    assert seen and seen <= store.finished_case_ids(path)  # the rows so far are kept
    shutil.rmtree(tmp_path)


def test_limits_where_nothing_fits_says_so_instead_of_an_empty_table():
    """Every search failed at its first T: the summary is one sentence with the fix, not ``Empty DataFrame``."""
    import pandas as pd

    from bench.analysis.limits import summary

    rows = pd.DataFrame({"kind": "limit", "status": "ok", "variant": ["full_naive", "linear_elu"],
                         "budget": ["memory", "time"], "max_fit_t": [float("nan")] * 2, "min_fail_t": [1, 1]})
    text = summary(rows)
    assert text.startswith("no variant fits even the smallest T") and "raise the budgets" in text
    assert "Empty" not in text and len(text.splitlines()) == 1


def test_the_catalogue_in_docs_is_generated_from_these_cases():
    assert len(CASES) >= 30 and len({b.problem for b in CASES}) == len(CASES)
    assert DOC.read_text(encoding="utf-8") == render(), "run: python tests/reliability/bad_inputs.py"
