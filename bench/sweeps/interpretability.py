"""Does each variant's attention point at what drives its output, on recall tasks with a known answer position?

The models are the accuracy sweep's: every case is an accuracy case (``accuracy.make_case`` on the accuracy
profile named by ``accuracy_profile``, so its id is the one the accuracy run cached), loaded from the checkpoint
cache (``bench.checkpoints``) or, when absent, trained with ``accuracy.train_case`` and saved. Where that profile
has fewer than ``min_seeds`` seeds, seeds are added at its shortest T only (trained here, then cached). Each model
is read on ``n_rows`` test rows: every layer's effective attention map, and for ``n_queries`` queries the
input-gradient × input and occlusion importances (``bench.measure.attribution``); the metrics are
``bench.analysis.interpretability``'s. Sizing and findings: docs/sweeps.md#interpretability.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from bench import checkpoints, tasks
from bench.analysis import interpretability as metrics
from bench.config import Case, ConfigError, RunConfig, require_positive
from bench.measure.attribution import attention_maps, grad_times_input, occlusion
from bench.sweep import Sweep
from bench.sweeps import accuracy
from bench.train import deterministic

NAME = "interpretability"
RECALL = ("mqar", "needle")  # the accuracy tasks whose answer position is known (bench.analysis.answer_positions)
OWN = ("model", "n_rows", "n_queries")  # case keys of this sweep; the rest is the accuracy case


@dataclass(frozen=True)
class Config(RunConfig):
    """Which accuracy models to read (by the accuracy profile that trained them) and how many queries per model."""

    accuracy_profile: str = "quick"  # the accuracy profile whose cases (and cached models) are read
    tasks: tuple[str, ...] = ()  # recall tasks to read (empty: those of the accuracy profile among mqar, needle)
    min_seeds: int = 3  # seeds per variant at the shortest T (added there, trained, if the profile has fewer)
    n_rows: int = 16  # test rows read per model (every scored query in them: alignment, entropy)
    n_queries: int = 16  # of their queries, how many get gradient and occlusion importances (T passes each)
    threads: int = 1  # torch threads per worker child
    jobs: int = 2  # worker processes at once
    time_cap_s: float = 600.0  # seconds one case (training included) may run

    def validate(self) -> None:
        super().validate()
        if self.accuracy_profile not in accuracy.PROFILES:
            raise ConfigError(f"unknown --accuracy-profile {self.accuracy_profile!r}; known: "
                              f"{', '.join(accuracy.PROFILES)}")
        for task in self.tasks:
            if task not in RECALL:
                raise ConfigError(f"--tasks: {task!r} has no known answer position; known: {', '.join(RECALL)}")
        require_positive(self, ("min_seeds", "n_rows", "n_queries", "jobs"))

    @property
    def source(self) -> accuracy.Config:
        return accuracy.PROFILES[self.accuracy_profile]

    @property
    def seed_list(self) -> list[int]:
        return sorted({case["seed"] for case in cases(self)})


PROFILES = {
    "quick": Config(),
    "full": Config(accuracy_profile="full", n_rows=64, n_queries=64, time_cap_s=7200.0),
}


def chosen_lr(acc: accuracy.Config, task: str, T: int, variant: str, seed: int) -> float:
    """The first grid lr whose model is cached (the accuracy run's choice), else the first of the grid."""
    grid = tuple(dict.fromkeys(acc.lr_grid))
    for lr in grid:
        if checkpoints.path_of(accuracy.make_case(acc, task, T, variant, seed, lr).id).exists():
            return lr
    return grid[0]


def model_grid(cfg: Config) -> Iterator[tuple[str, int, str, int]]:
    """(task, T, variant, seed): the accuracy profile's recall grid, plus seeds up to ``min_seeds`` at its
    shortest T."""
    acc = cfg.source
    seeds = list(dict.fromkeys(acc.seeds))
    extra = [s for s in range(max(seeds) + cfg.min_seeds + 1) if s not in seeds][:max(0, cfg.min_seeds - len(seeds))]
    for task in cfg.tasks or [t for t in dict.fromkeys(acc.tasks) if t in RECALL]:
        for T in sorted(set(acc.seq_lens)):
            for variant in accuracy.selected_variants(acc):
                for seed in seeds + (extra if T == min(acc.seq_lens) else []):
                    yield task, T, variant, seed


def cases(cfg: Config) -> list[Case]:
    """One case per accuracy model read; ``model`` is that accuracy case's id (the checkpoint's key)."""
    out = []
    for task, T, variant, seed in model_grid(cfg):
        acc = accuracy.make_case(cfg.source, task, T, variant, seed, chosen_lr(cfg.source, task, T, variant, seed))
        out.append(Case.make(NAME, model=acc.id, n_rows=cfg.n_rows, n_queries=cfg.n_queries, **acc.as_dict()))
    return out


# ---------------------------------------------------------------------------------------------------- one case

def model_of(case: Case) -> tuple[torch.nn.Module, Case, float | None]:
    """(the trained model, its accuracy case, training seconds or None when it came from the cache)."""
    acc = Case.make(accuracy.NAME, **{k: v for k, v in case.params if k not in OWN})
    if acc.id != case["model"]:
        raise ValueError(f"case {case.id}: its accuracy params hash to {acc.id}, not the model {case['model']}")
    cached = checkpoints.load(acc.id)
    if cached is not None:
        return cached[0], acc, None
    result, model, model_cfg = accuracy.train_case(acc)
    checkpoints.save(acc.id, model, model_cfg, acc.as_dict())
    return model.eval(), acc, result.wall_s


def test_rows(acc: Case, n: int) -> tasks.TaskData:
    """The first ``n`` rows of the accuracy case's test split (the rows its test accuracy was scored on)."""
    knobs = {k[len(accuracy.TASK):]: v for k, v in acc.params if k.startswith(accuracy.TASK)}
    task_cfg = accuracy.task_config(acc["task"], acc["T"], knobs)
    return tasks.get(acc["task"]).make(task_cfg, acc["seed"], n, "test")


def per_head(scores: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-query arrays (L, H, Q) -> per layer, per head means (NaN-aware), as nested lists for the row."""
    return {name: np.round(metrics.nanmean(v), 5).tolist() for name, v in scores.items()}


def read_model(model: torch.nn.Module, data: tasks.TaskData, causal: bool, n_queries: int) -> dict[str, Any]:
    """Alignment, faithfulness, rollout and entropy of one model on ``data`` (see the module docstring)."""
    rows, positions, truth = metrics.answer_positions(data.x.numpy(), data.y.numpy())
    keep = truth >= 0
    rows, positions, truth = rows[keep], positions[keep], truth[keep]
    maps = metrics.weight_shares(attention_maps(model, data.x, data.valid))  # (L, N, H, T, T)
    seen = metrics.visible_keys(data.valid.numpy(), rows, positions, causal)
    weights = metrics.query_weights(maps, rows, positions)  # (L, H, Q, T)
    mass, hit = metrics.alignment(weights, truth)
    roll = metrics.rollout(maps)[rows, positions][None]  # (1, Q, T)
    r_mass, r_hit = metrics.alignment(roll, truth)
    pick = np.random.default_rng(0).permutation(rows.size)[:n_queries]
    q_rows, q_pos = torch.as_tensor(rows[pick]), torch.as_tensor(positions[pick])
    args = (q_rows, q_pos, data.y[q_rows, q_pos])
    importance = {"grad": grad_times_input(model, data.x, data.valid, *args),
                  "occlusion": occlusion(model, data.x, data.valid, *args)}
    with torch.no_grad():
        predicted = model(data.x, data.valid).argmax(dim=-1).numpy()[rows, positions]
    out: dict[str, Any] = {"n_queries_scored": int(rows.size), "n_queries_importance": int(pick.size),
                           "alignment": np.round(mass, 5).tolist(), "hit_rate": np.round(hit, 5).tolist(),
                           "rollout_alignment": float(r_mass[0]), "rollout_hit_rate": float(r_hit[0]),
                           "entropy": np.round(metrics.entropy(weights, seen), 5).tolist(),
                           "uniform_alignment": metrics.uniform_alignment(seen),
                           "uniform_entropy": float(np.log(seen.sum(axis=-1)).mean()),
                           "accuracy": float((predicted == data.y.numpy()[rows, positions]).mean())}
    for source, imp in importance.items():
        agree = metrics.rank_agreement(weights[..., pick, :], imp, seen[pick])
        rolled = metrics.rank_agreement(roll[:, pick], imp, seen[pick])
        top1 = metrics.top1_agreement(weights[..., pick, :], imp, seen[pick], positions[pick])
        out.update(per_head({f"tau_{source}": agree["kendall"], f"rho_{source}": agree["spearman"],
                             f"top1_{source}": top1}))
        out[f"rollout_tau_{source}"] = float(metrics.nanmean(rolled["kendall"])[0])
    return out


def execute(case: Case) -> dict[str, Any]:
    """Load (or train and cache) one accuracy model and read its attention on its test rows."""
    model, acc, train_s = model_of(case)
    with deterministic(acc["threads"]):
        read = read_model(model, test_rows(acc, case["n_rows"]), bool(acc["causal"]), case["n_queries"])
    return {"trained": train_s is not None, "train_s": train_s, **read}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=metrics.summary,
              metrics=("trained", "train_s", "n_queries_scored", "n_queries_importance", "alignment", "hit_rate",
                       "rollout_alignment", "rollout_hit_rate", "entropy", "uniform_alignment", "uniform_entropy",
                       "accuracy", "tau_grad", "rho_grad", "tau_occlusion", "rho_occlusion", "top1_grad",
                       "top1_occlusion", "rollout_tau_grad",
                       "rollout_tau_occlusion"))
