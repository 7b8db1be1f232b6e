"""bench.executors: the same sweeps through isolated local children and through Ray tasks (a real Ray instance on
this machine, no mocks); a Ray worker lost mid-case; resume through Ray; Ray missing is a one-line error."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench import cli, store
from bench.config import ConfigError
from bench.executors import RAY_INSTALL, TIMING_RESOURCE, _check_reachable, create
from bench.run import run_sweep
from bench.sweeps import accuracy, efficiency

import fake_sweep

MiB = 2**20
EFFICIENCY = efficiency.Config(variants=("full_naive", "linear_elu"), seq_lens=(64, 128), phases=("forward",),
                               causal=(False,), min_run_time=0.01, threads=1)
ACCURACY = accuracy.Config(tasks=("mqar",), variants=("full_sdpa", "linear_elu"), seq_lens=(16,), seeds=(0,),
                           steps=4, batch_size=8, eval_every=2, warmup=1, n_train=32, n_eval=16, d_model=16,
                           n_layers=1, n_pairs=2, mqar_vocab=16, threads=1, jobs=2, lr_grid=(1e-3, 3e-3), tune_len=0)


@pytest.fixture(scope="module")
def ray_instance():
    """One Ray instance for the module (each ray.init costs seconds): 2 CPUs and one timing slot, like a node
    started with --resources='{"timing": 1}'."""
    ray = pytest.importorskip("ray", reason=f"Ray is not installed ({RAY_INSTALL})")
    here = str(Path(fake_sweep.__file__).parent)  # Ray's workers and their children import fake_sweep too
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *([saved] if saved else [])])
    try:
        ray.init(num_cpus=2, resources={TIMING_RESOURCE: 1}, include_dashboard=False, log_to_driver=False)
    finally:
        os.environ.pop("PYTHONPATH") if saved is None else os.environ.update(PYTHONPATH=saved)
    yield ray
    ray.shutdown()


def both(sweep, cfg, tmp_path):
    """The sweep's rows through the local executor and through Ray, each indexed by case id."""
    frames = {}
    for name in ("local", "ray"):
        path = run_sweep(sweep, cfg, profile="quick", out_dir=tmp_path / name, executor=name, progress=False)
        frames[name] = store.load(path).set_index("case_id").sort_index()
    return frames["local"], frames["ray"]


def test_efficiency_through_ray_equals_local_in_every_deterministic_field(ray_instance, tmp_path):
    local, ray = both(efficiency.SWEEP, EFFICIENCY, tmp_path)
    assert list(local.index) == list(ray.index) and len(local) == 4
    assert set(local["status"]) == set(ray["status"]) == {"ok"}
    for column in ("flops", "flops_analytic", "bytes_analytic"):
        assert local[column].tolist() == ray[column].tolist(), column
    assert (ray["attempts"] == 1).all() and ray["node"].notna().all() and ray["node_device"].notna().all()
    (man,) = store.load_manifests(tmp_path / "ray" / "efficiency-quick-cpu.jsonl").to_dict("records")
    assert man["executor"] == "ray" and man["ray"]["nodes"] == 1 and man["ray"]["cpus"] == 2
    assert man["ray"]["version"] == ray_instance.__version__ and man["gemm_peak_flops"] > 0


def test_seeded_accuracy_through_ray_equals_local(ray_instance, tmp_path):
    local, ray = both(accuracy.SWEEP, ACCURACY, tmp_path)  # the lr-tuning batch, then the grid, through each
    assert list(local.index) == list(ray.index) and len(local) == 4
    for column in ("status", "accuracy", "loss", "n_params", "steps_run"):
        assert local[column].tolist() == ray[column].tolist(), column


def test_a_lost_ray_worker_loses_no_row_and_its_case_runs_once_more(ray_instance, tmp_path):
    """Cases kill the Ray worker they run under: once (retried, ok on its second attempt) and always (killed
    after two attempts); every other case, before and after, keeps its row."""
    kinds = ("ok", "kill_ray_worker", "ok", "kill_ray_worker_always", "ok")
    cfg = fake_sweep.Config(kinds=kinds, marker=str(tmp_path / "killed-"))
    path = run_sweep(fake_sweep.SWEEP, cfg, profile="quick", out_dir=tmp_path, threads=1, mem_cap_bytes=512 * MiB,
                     executor="ray", progress=False)
    df = store.load(path).sort_values("i").set_index("i")
    assert df["status"].tolist() == ["ok", "ok", "ok", "killed", "ok"]
    assert df["attempts"].tolist() == [1, 2, 1, 2, 1]
    assert df.loc[[0, 1, 2, 4], "value"].tolist() == [0, 1, 4, 16]
    assert df.loc[3, "error"].startswith("RayWorkerLost:")


def test_resume_through_ray_skips_finished_cases(ray_instance, tmp_path):
    def run(n, **kw):
        return run_sweep(fake_sweep.SWEEP, fake_sweep.Config(kinds=("ok",) * n), profile="quick", out_dir=tmp_path,
                         threads=1, mem_cap_bytes=512 * MiB, executor="ray", **kw)

    run(2, progress=False)
    seen = []
    path = run(4, resume=True, progress=lambda case, outcome: seen.append(case["i"]))
    assert sorted(seen) == [2, 3]
    df = store.load(path)
    assert sorted(df["i"]) == [0, 1, 2, 3] and df["run_id"].nunique() == 2


def test_without_ray_the_ray_executor_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(ConfigError, match="attention-limits\\[ray\\]"):
        create("ray", threads=1, device="cpu")
    code = cli.main(["run", "efficiency", "--executor", "ray", "--out-dir", str(tmp_path), "--seq-lens=64"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and RAY_INSTALL in err
    assert not (tmp_path / "efficiency-quick-cpu.jsonl").exists()


def test_executor_names_and_options_are_checked():
    with pytest.raises(ConfigError, match="unknown executor"):
        create("dask", threads=1, device="cpu")
    with pytest.raises(ConfigError, match="--address is for --executor ray"):
        create("local", threads=1, device="cpu", address="auto")
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")  # Ray itself would retry for minutes
