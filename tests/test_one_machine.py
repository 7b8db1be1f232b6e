"""No figure mixes machines: results of two machines side by side, or in one resumed file, and every figure draws
from one of them (its Measured-by sources name one machine); the Pareto figure takes accuracy and time from the
same machine or says it cannot.

Machine A is the fixtures as committed (old manifests: known by their device name, "Fixture CPU"); machine B is the
same files with ``machine`` set and new run ids.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench import plots, store
from bench.plots.common import FigureResult, NotMeasured

FIXTURES = Path(__file__).parent / "fixtures" / "results"
A, B = "Fixture CPU", "Other CPU, 64 cores, 256 GiB"


def as_machine_b(src: Path, **manifest_fields) -> str:
    """The lines of a fixtures file as measured on machine B (new run ids, ``manifest_fields`` set)."""
    lines = []
    for record in store.read_records(src):
        record = {**record, "run_id": record["run_id"] + "b"}
        if record["kind"] == "manifest":
            record.update(machine=B, **manifest_fields)
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def copy_a(root: Path, *sweeps: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for sweep in sweeps:
        name = f"{sweep}-quick-cpu.jsonl"
        (root / name).write_text((FIXTURES / name).read_text())


def every_figure(root: Path, out: Path) -> dict[str, FigureResult | NotMeasured]:
    df, manifests = store.load(root=root), store.load_manifests(root=root)
    return {r.name: r for r in (figure(df, manifests, out) for figure in plots.FIGURES)}


def machines_drawn(results: dict) -> dict[str, set[str]]:
    return {name: set(r.sources["machine"]) for name, r in results.items() if isinstance(r, FigureResult)}


def test_old_manifests_are_known_by_their_device_name():
    manifests = store.load_manifests(root=FIXTURES)
    assert set(manifests["machine"]) == {A}


def test_a_better_run_of_another_machine_never_joins_this_ones_pareto(tmp_path):
    """B's full efficiency run is the one the time figure draws; the Pareto figure still pairs A with A."""
    copy_a(tmp_path, "accuracy", "efficiency", "limits", "approximation")
    (tmp_path / "efficiency-full-cpu.jsonl").write_text(
        as_machine_b(FIXTURES / "efficiency-quick-cpu.jsonl", profile="full"))
    drawn = machines_drawn(every_figure(tmp_path, tmp_path / "figures"))
    assert drawn["time_vs_length"] == {B} and drawn["memory_vs_length"] == {B}
    assert drawn["accuracy_vs_length"] == {A} and drawn["accuracy_speed_pareto"] == {A}
    assert all(len(m) == 1 for m in drawn.values()), drawn


def test_a_file_resumed_on_another_machine_is_drawn_from_one(tmp_path):
    copy_a(tmp_path, "accuracy", "efficiency", "limits", "approximation")
    for sweep in ("efficiency", "accuracy", "limits", "approximation"):
        path = tmp_path / f"{sweep}-quick-cpu.jsonl"
        path.write_text(path.read_text() + as_machine_b(path))
    results = every_figure(tmp_path, tmp_path / "figures")
    drawn = machines_drawn(results)
    assert set(drawn) >= {"time_vs_length", "memory_vs_length", "limits", "flops_fraction", "accuracy_vs_length",
                          "accuracy_speed_pareto", "approximation_error"}
    assert all(len(m) == 1 for m in drawn.values()), drawn
    pareto = results["accuracy_speed_pareto"]
    assert pareto.sources["run_id"].nunique() == 2  # accuracy and efficiency, one segment of each


def test_the_pareto_figure_says_when_its_two_sweeps_share_no_machine(tmp_path):
    copy_a(tmp_path, "accuracy")
    (tmp_path / "efficiency-quick-cpu.jsonl").write_text(as_machine_b(FIXTURES / "efficiency-quick-cpu.jsonl"))
    results = every_figure(tmp_path, tmp_path / "figures")
    assert machines_drawn(results)["time_vs_length"] == {B}
    pareto = results["accuracy_speed_pareto"]
    assert isinstance(pareto, NotMeasured) and A in pareto.reason


def test_a_new_manifest_names_the_hardware_class_not_the_host():
    env = store.environment("cpu")
    assert env["machine"].startswith(env["device_name"]) and " cores, " in env["machine"]
    assert env["machine"].endswith(" GiB")
    record = store.manifest(sweep="fake", profile="quick", device="cpu", env=env)
    assert record["machine"] == env["machine"]
