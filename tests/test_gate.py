"""The regression gate trips on each kind of regression, names the variant and the metric, and passes an
unchanged tree. The regressions are test-only variants (tests/gate_regressions.py) impersonating linear_elu: each
gets linear_elu's baseline entry, measured in the same session, and honest linear_elu is gated beside them."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys

import pytest

import variants
from bench import gate

PLUGIN = "gate_regressions"  # imported by the same name here and in the worker child (tests/ is on sys.path)
HONEST = tuple(variants.names())  # before the plugin registers anything


def run_gate(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gate.main(list(argv))
    return rc, out.getvalue()


def failures(text: str) -> set[tuple[str, str]]:
    """(variant, metric) of every row in the table's REGRESSION section."""
    _, _, tail = text.partition("REGRESSION:")
    return {(row.split()[0], row.split()[1]) for row in tail.splitlines() if row.rstrip().endswith("FAIL")}


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """linear_elu's baseline written by the gate, copied to every impersonator; then one gated run of all."""
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    rc, _ = run_gate("--update-baseline", "--variants", "linear_elu", "--baseline", str(path))
    assert rc == 0
    plugin = importlib.import_module(PLUGIN)  # registers the impersonators in this process
    try:
        baseline = json.loads(path.read_text())
        for name in plugin.NAMES:
            baseline["variants"][name] = dict(baseline["variants"]["linear_elu"])
        path.write_text(json.dumps(baseline))
        yield run_gate("--variants", ",".join(("linear_elu",) + plugin.NAMES), "--plugin", PLUGIN,
                       "--baseline", str(path))
    finally:  # other test modules parametrise over variants.names(): leave the registry as it was
        for name in plugin.NAMES:
            variants.unregister(name)
        sys.modules.pop(PLUGIN, None)


@pytest.mark.slow  # shares one gate run (module fixture): 53 s idle, up to 120 s on a loaded machine
def test_gate_exits_1_and_honest_variant_passes(regression_run):
    rc, text = regression_run
    assert rc == 1
    assert not any(variant == "linear_elu" for variant, _ in failures(text)), text


@pytest.mark.slow  # shares one gate run (module fixture): 53 s idle, up to 120 s on a loaded machine
def test_secret_quadratic_memory_fails_memory_exponent(regression_run):
    found = failures(regression_run[1])
    assert ("linear_regress_quadratic", "memory_exponent") in found, regression_run[1]
    assert ("linear_regress_quadratic", "peak_bytes") in found


@pytest.mark.slow  # shares one gate run (module fixture): 53 s idle, up to 120 s on a loaded machine
def test_double_flops_fails_exact_flops(regression_run):
    found = failures(regression_run[1])
    assert ("linear_regress_flops", "flops") in found, regression_run[1]
    assert ("linear_regress_flops", "flops_causal") in found


@pytest.mark.slow  # shares one gate run (module fixture): 53 s idle, up to 120 s on a loaded machine
def test_three_times_slower_fails_speed_ratio(regression_run):
    found = failures(regression_run[1])
    assert ("linear_regress_slow", "speed_ratio") in found, regression_run[1]
    assert {m for v, m in found if v == "linear_regress_slow"} == {"speed_ratio"}


@pytest.mark.slow  # shares one gate run (module fixture): 53 s idle, up to 120 s on a loaded machine
def test_shifted_init_fails_seeded_accuracy(regression_run):
    found = failures(regression_run[1])
    assert ("linear_regress_init", "accuracy") in found, regression_run[1]
    assert not any(v == "linear_regress_init" and m.startswith(("flops", "peak", "memory"))
                   for v, m in found)


def test_missing_baseline_entry_fails(tmp_path):
    fresh = {"linear_elu": {"flops": 1}}
    checks = gate.compare({"variants": {}}, fresh)
    assert [(c.variant, c.ok) for c in checks] == [("linear_elu", False)]


def test_exact_metrics_fail_in_both_directions():
    base = {"variants": {"linear_elu": {"flops": 100, "params": 10}}}
    checks = gate.compare(base, {"linear_elu": {"flops": 99, "params": 10}})
    assert {(c.metric, c.ok) for c in checks} == {("flops", False), ("params", True)}


@pytest.mark.slow
def test_unchanged_tree_passes_twice(tmp_path):
    path = tmp_path / "baseline.json"
    names = ",".join(HONEST)
    assert run_gate("--update-baseline", "--variants", names, "--baseline", str(path))[0] == 0
    for _ in range(2):
        rc, text = run_gate("--variants", names, "--baseline", str(path))
        assert rc == 0, text
