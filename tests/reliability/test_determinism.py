"""Same seed, same profile, same machine: one tiny training case run twice gives identical accuracy rows (every
field but the run's id and its timings)."""
from __future__ import annotations

import pytest

from bench import cli, store

TIMED = {"run_id", "wall_s", "train_s"}  # what may differ between two runs of the same case


@pytest.mark.slow
def test_a_tiny_training_case_twice_gives_identical_accuracy_rows(tmp_path):
    argv = ["run", "accuracy", "--variants=linear_elu", "--tasks=mqar", "--seq-lens=32", "--seeds=0",
            "--steps=30", "--eval-every=15", "--n-train=256", "--n-eval=64", "--batch-size=16", "--warmup=5"]
    rows = []
    for run in ("first", "second"):
        assert cli.main(argv + [f"--out-dir={tmp_path / run}"]) == 0
        (row,) = store.load(store.results_path(tmp_path / run, "accuracy", "quick", "cpu")).to_dict("records")
        rows.append({k: v for k, v in row.items() if k not in TIMED})
    assert rows[0]["status"] == "ok" and rows[0]["steps_run"] == 30
    assert rows[0] == rows[1]
