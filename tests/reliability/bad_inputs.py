"""The catalogue of bad input: what a new user gets wrong, and the one line each gets back.

Each ``Bad`` is tried by ``test_bad_input.py`` (CLI: exit code, ONE stderr line holding ``expect``, no traceback,
the results folder unchanged; Python API: the exception type and a one-line message). ``python
tests/reliability/bad_inputs.py`` writes docs/bad-input.md from this list; a test fails when the two differ.

Placeholders in a command: RESULTS (a folder holding a valid efficiency results file), FILE (a regular file),
EMPTY (an empty folder), OTHER (that folder with a limits file named as an efficiency one), NEWER (a file of a
newer schema), GARBAGE (a results folder whose file has one garbage line), BLANK (an empty results file),
REPORTS (a fresh report folder), PLUGIN (a folder with a plugin that registers ``full_naive`` again), READONLY (a
results folder without write permission, tried as a user other than root: root may write anywhere).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"


@dataclass(frozen=True)
class Bad:
    problem: str  # what the user did wrong
    command: str  # the CLI arguments (after `attention-limits`), or "python: <expression>" for the API
    expect: str  # a fragment of the one line that comes back
    code: int = 2  # exit code (CLI), 0 where the input is skipped with a warning line
    raises: str = ""  # API: the exception type


RUN = "run efficiency --out-dir=RESULTS"
CASES: tuple[Bad, ...] = (
    Bad("unknown sweep", "run nope --out-dir=RESULTS", "unknown sweep 'nope'; known:"),
    Bad("unknown variant", f"{RUN} --variants=full_nope", "unknown variant 'full_nope'; known:"),
    Bad("unknown task", "run accuracy --tasks=sudoku --out-dir=RESULTS", "unknown task 'sudoku'"),
    Bad("unknown profile", f"{RUN} --profile=huge", "unknown profile 'huge' for efficiency; known:"),
    Bad("unknown option", f"{RUN} --bogus=1", "unknown option --bogus; known:"),
    Bad("option without a value", f"{RUN} --seq-lens", "option --seq-lens needs a value"),
    Bad("stray positional argument", f"{RUN} fast", "unexpected argument 'fast'; options look like --key=value"),
    Bad("T = 0", f"{RUN} --seq-lens=0,128", "must be positive"),
    Bad("negative T", f"{RUN} --seq-lens=-64", "must be positive"),
    Bad("non-integer T", f"{RUN} --seq-lens=1.5", "--seq-lens=1.5: invalid literal for int()"),
    Bad("T not a number", f"{RUN} --seq-lens=abc", "expected tuple[int, ...]"),
    Bad("empty list of T", f"{RUN} --seq-lens=,", "--seq-lens must not be empty"),
    Bad("a boolean that is not one", f"{RUN} --causal=maybe", "not a boolean: 'maybe'"),
    Bad("unknown dtype", f"{RUN} --dtype=float8", "unknown dtype 'float8'; known:"),
    Bad("unknown device", f"{RUN} --device=tpu", "unknown device 'tpu'; use cpu or cuda"),
    Bad("--device cuda without CUDA", f"{RUN} --device=cuda", "is not available here"),
    Bad("zero threads", f"{RUN} --threads=0", "--threads must be >= 1"),
    Bad("a time cap of 0", f"{RUN} --time-cap-s=0", "--time-cap-s must be > 0"),
    Bad("a memory cap too small to start", f"{RUN} --mem-cap-bytes=1000", "below the 64 MiB a case needs"),
    Bad("a budget that does not parse", "limits --mem-budget-bytes=1GB --out-dir=RESULTS",
        "--mem-budget-bytes=1GB: invalid literal for int()"),
    Bad("a memory budget below what the inputs need", "limits --mem-budget-bytes=10 --out-dir=RESULTS",
        "below the 64 MiB a case needs"),
    Bad("unknown budget kind", "limits --budgets=energy --out-dir=RESULTS", "unknown budget(s) energy; known:"),
    Bad("search that starts at T = 0", "limits --start-t=0 --out-dir=RESULTS", "need 1 <= --start-t <= --max-t"),
    Bad("a window / landmarks larger than every T", "run approximation --budgets=128 --seq-lens=64 --out-dir=RESULTS",
        "all exceed T=64"),
    Bad("out-dir under a regular file", "run efficiency --out-dir=FILE/runs",
        "Not a directory; pass a writable --out-dir"),
    Bad("out-dir the OS will not let us write (/proc)", "run efficiency --out-dir=/proc/self",
        "pass a writable --out-dir"),
    Bad("a results folder without write permission", "run efficiency --out-dir=READONLY",
        "Permission denied; pass a writable --out-dir"),
    Bad("--resume into a results folder without write permission", "run efficiency --resume --out-dir=READONLY",
        "Permission denied; pass a writable --out-dir"),
    Bad("--resume on another sweep's file", "run efficiency --resume --out-dir=OTHER",
        "holds results of sweep 'limits', not 'efficiency'"),
    Bad("--resume on a file of a newer schema", "run efficiency --resume --out-dir=NEWER",
        "newer than this code's"),
    Bad("report from a folder that does not exist", "report --results-root=/nonexistent --out-dir=REPORTS",
        "--results-root /nonexistent is not a folder"),
    Bad("report from a folder without results", "report --results-root=EMPTY --out-dir=REPORTS",
        "holds no *.jsonl results files"),
    Bad("report from an empty results file", "report --results-root=BLANK --out-dir=REPORTS",
        "holds no results records"),
    Bad("report into a folder under a regular file", "report --results-root=RESULTS --out-dir=FILE/reports",
        "pass a writable --out-dir"),
    Bad("report into /proc", "report --results-root=RESULTS --out-dir=/proc/self/reports", "pass a writable --out-dir"),
    Bad("a results file with one garbage line", "report --results-root=GARBAGE --out-dir=REPORTS",
        "skipped 1 unreadable line(s) (line 2)", code=0),
    Bad("a plugin module that does not import", "check --plugin no_such_module",
        "--plugin no_such_module: the module failed to import (ModuleNotFoundError"),
    Bad("a plugin that registers a taken name", "check --plugin=dup_plugin",
        "variant 'full_naive' is already registered"),
    Bad("Ctrl-C during a run", "run efficiency --out-dir=RESULTS (SIGINT)",
        "interrupted; finished cases are saved (rerun with --resume)", code=130),
    Bad("unknown variant (API)", "python: variants.create('full_nope', d_head=8, n_heads=2, max_seq_len=64)",
        "unknown variant 'full_nope'; known:", raises="UnknownVariantError"),
    Bad("unknown variant parameter (API)",
        "python: variants.create('sparse_window', d_head=8, n_heads=2, max_seq_len=64, width=3)",
        "unknown parameter(s) width; known:", raises="TypeError"),
    Bad("fixed-length variant asked for T > max_seq_len (API)",
        "python: variants.create('low_rank_linformer', d_head=8, n_heads=2, max_seq_len=64)(*qkv(T=65))",
        "T=65 exceeds max_seq_len=64", raises="ValueError"),
    Bad("padding mask of the wrong dtype (API)",
        "python: variants.create('full_naive', d_head=8, n_heads=2, max_seq_len=64)(*qkv(T=8), torch.ones(1, 8))",
        "key_valid must be torch.bool", raises="TypeError"),
    Bad("q, k, v of different shapes (API)",
        "python: variants.create('full_naive', d_head=8, n_heads=2, max_seq_len=64)(*qkv(T=8)[:2], qkv(T=9)[2])",
        "q, k, v shapes differ", raises="ValueError"),
    Bad("causal asked of a non-causal variant (API)",
        "python: variants.create('low_rank_nystrom', d_head=8, n_heads=2, max_seq_len=64, causal=True)",
        "low_rank_nystrom does not support causal attention", raises="NotImplementedError"),
    Bad("reading a results path that is a folder (API)", "python: list(store.read_records(EMPTY))",
        "cannot read", raises="ResultsError"),
)


def render() -> str:
    """docs/bad-input.md: the catalogue as a table."""
    lines = ["# Bad input, catalogued", "",
             "Generated from `tests/reliability/bad_inputs.py` (`python tests/reliability/bad_inputs.py`); "
             "`tests/reliability/test_bad_input.py` tries every row and fails when this page differs from the list.",
             "Each CLI row gives ONE line on stderr that names the problem and the fix, no traceback, and leaves the "
             "results folder byte-identical; the API rows raise the named exception with a one-line message. "
             "Placeholders are described in the module's docstring.", "",
             "| # | problem | command (`attention-limits ...`) | exit / raises | the line contains |",
             "| --- | --- | --- | --- | --- |"]
    for i, bad in enumerate(CASES, 1):
        outcome = bad.raises or str(bad.code)
        cells = (str(i), bad.problem, f"`{bad.command}`", outcome, f"`{bad.expect}`")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(DOC)
