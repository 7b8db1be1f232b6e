"""How much data does attention need, against models with more inductive bias?

Learning curves: test error (or bits per byte) against training-set size D, fitted as a·D^(−α) + c, for the
Transformer with full or light attention and the attention-free CNN and GRU baselines (``MODELS``), all trained
for the same steps on nested prefixes of one seeded pool and tested on one test set. Rows carry ``test_error``,
not ``error`` (the store's failure message). Protocol and references: docs/sweeps.md#data_scaling.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from bench import tasks
from bench.config import Case, ConfigError, TaskPoolConfig, require_nonempty, require_positive
from bench.sweep import Sweep
from bench.fit import PowerLaw, crossover, fit_power_law
from bench.tasks import TaskData
from bench.train import BITS_PER_BYTE_TASKS, TrainConfig, deterministic, evaluate, fit, model_config_for
from bench.tasks.text_bytes import bits_per_byte
from variants import create_model
from variants.model import ModelConfig, Transformer, count_parameters

NAME = "data_scaling"
TRAIN_FIELDS = ("batch_size", "lr", "weight_decay", "warmup", "eval_every", "n_eval", "threads")
MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "token_shift")
TASK_FIELDS = {"local_motif": {"seq_len": "seq_len", "vocab_size": "motif_vocab", "motif_len": "motif_len",
                               "n_classes": "motif_classes"},
               "text_bytes": {"seq_len": "seq_len", "max_pool_bytes": "text_pool_bytes"}}  # task field -> sweep's
FIT_METRIC = {"local_motif": "test_error", "text_bytes": "bits_per_byte"}  # what the power law is fitted to
REFERENCE = "transformer"  # the model whose crossover with each baseline is reported


@dataclass(frozen=True)
class ModelChoice:
    """One model of the sweep: its attention (for the Transformer's config), a factory, and whether it is an
    attention-free baseline. ``window`` and ``kernel`` come from the sweep Config."""

    attention: str
    build: Callable[[ModelConfig, int], nn.Module]  # (model config, conv kernel) -> module
    baseline: bool


MODELS: dict[str, ModelChoice] = {
    "transformer": ModelChoice("full_sdpa", lambda cfg, k: Transformer(cfg), False),
    "sparse_window": ModelChoice("sparse_window", lambda cfg, k: Transformer(cfg), False),
    "linear_elu": ModelChoice("linear_elu", lambda cfg, k: Transformer(cfg), False),
    "cnn_baseline": ModelChoice("full_sdpa", lambda cfg, k: create_model("cnn_baseline", cfg, kernel=k), True),
    "gru_baseline": ModelChoice("full_sdpa", lambda cfg, k: create_model("gru_baseline", cfg), True),
}


@dataclass(frozen=True)
class Config(TaskPoolConfig):
    """The grid (tasks × models × sizes × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("local_motif", "text_bytes")  # local_motif | text_bytes
    models: tuple[str, ...] = ("transformer", "sparse_window", "cnn_baseline", "gru_baseline")  # keys of MODELS
    sizes: tuple[int, ...] = (128, 512, 2048, 8192)  # training examples (windows for text_bytes), nested
    # training: the same budget of steps for every size and model of a task
    steps: int = 400  # training steps on local_motif
    text_steps: int = 200  # training steps on text_bytes
    jobs: int = 2  # worker processes training at once
    # model, the same for every model
    d_model: int = 32  # model width, the same for every model
    n_layers: int = 2  # layers
    n_heads: int = 2  # attention heads per layer
    kernel: int = 3  # cnn_baseline convolution width
    window: int = 8  # sparse_window one-sided reach
    # summary targets: test error for local_motif, bits per byte for text_bytes
    target_error: float = 0.1  # summary: the test error a model is scored to reach (local_motif)
    target_bpb: float = 3.0  # summary: the bits per byte a model is scored to reach (text_bytes)

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first problem."""
        super().validate()
        for name in self.tasks:
            tasks.get(name)
            if name not in FIT_METRIC:
                raise ConfigError(f"--tasks: {name!r} has no learning-curve metric; known: {', '.join(FIT_METRIC)}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
        require_nonempty(self, ("tasks", "models", "sizes", "seeds"))
        if len(set(self.sizes)) < 3:
            raise ConfigError(f"--sizes needs at least three distinct sizes to fit a power law, got {self.sizes}")
        if min(self.sizes) < self.batch_size:
            raise ConfigError(f"--sizes: {min(self.sizes)} is smaller than one batch ({self.batch_size})")
        self._validate_numbers()
        for name in self.tasks:
            task_config(self, name).validate()

    def _validate_numbers(self) -> None:
        train_config(self, "local_motif", seed=0, n_train=max(self.sizes)).validate()
        require_positive(self, ("text_steps", "d_model", "n_layers", "n_heads", "kernel", "window"))
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"--d-model={self.d_model} must be even and divisible by --n-heads={self.n_heads}")
        if not (0 < self.target_error < 1 and self.target_bpb > 0):
            raise ConfigError("--target-error must be in (0, 1); --target-bpb must be > 0")


PROFILES = {
    # two seeds keep the main job inside 15 minutes on 2 cores (docs/sweeps.md#data_scaling)
    "quick": Config(seeds=(0, 1)),
    "full": Config(models=tuple(MODELS), sizes=tuple(2 ** k for k in range(7, 17)), seeds=(0, 1, 2, 3, 4),
                   steps=3000, text_steps=3000, eval_every=250, n_eval=2048, d_model=64, seq_len=64,
                   time_cap_s=3600.0),
}


# ---------------------------------------------------------------------------------------------- data and models

def _field(cfg: Config | Case, name: str) -> Any:
    return cfg[name] if isinstance(cfg, Case) else getattr(cfg, name)


def task_config(cfg: Config | Case, task: str) -> Any:
    """The task's frozen Config, from the sweep Config or a Case (which carries the same knobs)."""
    return tasks.get(task).Config(**{f: _field(cfg, mine) for f, mine in TASK_FIELDS[task].items()})


def task_steps(cfg: Config, task: str) -> int:
    """The step budget of ``task``'s cases."""
    return cfg.text_steps if task == "text_bytes" else cfg.steps


def train_config(cfg: Config | Case, task: str, seed: int, n_train: int) -> TrainConfig:
    """The TrainConfig of one case. No early stop short of a perfect val score."""
    steps = cfg["steps"] if isinstance(cfg, Case) else task_steps(cfg, task)
    return TrainConfig(seed=seed, n_train=n_train, steps=steps, target_accuracy=1.0, final_lr_frac=1.0,
                       **{name: _field(cfg, name) for name in TRAIN_FIELDS})


def fixed_splits(task: str, task_cfg: Any, data_seed: int, n_train: int,
                 n_eval: int) -> tuple[TaskData, TaskData, TaskData]:
    """(train, val, test): the first ``n_train`` rows of the pool, and the one val and test set of the sweep."""
    make = tasks.get(task).make
    return (make(task_cfg, data_seed, n_train, "train"), make(task_cfg, data_seed, n_eval, "val"),
            make(task_cfg, data_seed, n_eval, "test"))


def build_model(name: str, model_cfg: ModelConfig, kernel: int) -> nn.Module:
    """The named model of ``MODELS`` on ``model_cfg``."""
    return MODELS[name].build(model_cfg, kernel)


def sweep_model_config(case: Case, task_cfg: Any) -> ModelConfig:
    """The ModelConfig of a case (the baselines ignore its attention fields)."""
    choice = MODELS[case["model"]]
    params = {"window": case["window"]} if choice.attention == "sparse_window" else {}
    return model_config_for(task_cfg, choice.attention, attention_params=params,
                            **{name: case[name] for name in MODEL_FIELDS})


def fit_and_test(factory: Callable[[], nn.Module], splits: tuple[TaskData, TaskData, TaskData],
                 tc: TrainConfig) -> dict[str, Any]:
    """``bench.train.train`` on given splits: seeded build, ``fit``, then test and (a sample of) train scores."""
    train_data, val, test = splits
    with deterministic(tc.threads):
        torch.manual_seed(tc.seed)
        net = factory()
        start = time.perf_counter()
        curve, _, steps = fit(net, train_data, val, tc)
        train_s = time.perf_counter() - start
        accuracy, loss = evaluate(net, test, tc.eval_batch_size)
        head = TaskData(*(t[:tc.n_eval] for t in (train_data.x, train_data.y, train_data.valid)))
        train_accuracy, train_loss = evaluate(net, head, tc.eval_batch_size)
    return {"accuracy": accuracy, "test_error": 1.0 - accuracy, "loss": loss, "train_accuracy": train_accuracy,
            "train_loss": train_loss, "curve": [[s, round(a, 4), round(l, 4)] for s, a, l in curve],
            "steps_run": steps, "train_s": train_s, "n_params": count_parameters(net), "model_obj": net}


# ---------------------------------------------------------------------------------------------------- the grid

def cases(cfg: Config) -> Iterator[Case]:
    """One Case per (task, model, size, seed): tasks in order, smallest size first, seeds innermost."""
    shared = {name: getattr(cfg, name) for name in TRAIN_FIELDS + MODEL_FIELDS}
    for task in cfg.tasks:
        knobs = {mine: getattr(cfg, mine) for mine in ("kernel", "window", "data_seed", *TASK_FIELDS[task].values())}
        for model in cfg.models:
            for n in sorted(set(cfg.sizes)):
                for seed in dict.fromkeys(cfg.seeds):
                    yield Case.make(NAME, task=task, model=model, n_train=n, seed=seed, steps=task_steps(cfg, task),
                                    **shared, **knobs)


def execute(case: Case) -> dict[str, Any]:
    """Train one model on the first ``n_train`` rows of the pool; score it on the sweep's one test set."""
    task = case["task"]
    task_cfg = task_config(case, task)
    model_cfg = sweep_model_config(case, task_cfg)
    tc = train_config(case, task, case["seed"], case["n_train"])
    splits = fixed_splits(task, task_cfg, case["data_seed"], case["n_train"], case["n_eval"])
    out = fit_and_test(lambda: build_model(case["model"], model_cfg, case["kernel"]), splits, tc)
    del out["model_obj"]
    in_bits = task in BITS_PER_BYTE_TASKS
    return {**out, "bits_per_byte": bits_per_byte(out["loss"]) if in_bits else None,
            "train_bytes": case["n_train"] * task_cfg.seq_len if in_bits else None,
            "baseline": MODELS[case["model"]].baseline}


# ------------------------------------------------------------------------------------------------------ summary

def _resolution(group: Any, metric: str) -> float:
    """The smallest error the test set can tell from zero (one example in ``n_eval``); 0 for bits per byte."""
    return 1.0 / float(group["n_eval"].min()) if metric == "test_error" and "n_eval" in group else 0.0


def _flat(group: Any, metric: str) -> bool:
    """True when the mean metric falls by less than two test examples' worth from the smallest to the largest D."""
    means = group.groupby("n_train")[metric].mean()
    return metric == "test_error" and means.iloc[0] - means.iloc[-1] < 2 * _resolution(group, metric)


def fitted_law(group: Any, metric: str) -> PowerLaw | None:
    """The fitted power law of one (task, model) group; None with fewer than three sizes or a flat curve.

    Errors are floored at half the test set's resolution: bench.fit searches the floor c in [0, min(err)), so a
    single seed at exactly zero error would leave no admissible c."""
    if _flat(group, metric):
        return None
    err = group[metric].astype(float).clip(lower=0.5 * _resolution(group, metric))
    try:
        return fit_power_law(group["n_train"].astype(float), err)
    except ValueError:
        return None


def _crossovers(means: Any, law: dict[str, PowerLaw | None], baselines: list[str]) -> dict[str, Any]:
    """For the reference model: measured and extrapolated crossover size with each baseline (NaN: none)."""
    out: dict[str, Any] = {}
    if REFERENCE not in means:
        return out
    for base in baselines:
        pair = means[[REFERENCE, base]].dropna().clip(lower=1e-4)  # errors of 0 would break the log ratio
        at = crossover(pair.index, pair[REFERENCE], pair[base]) if len(pair) >= 2 else None
        out[f"crossover_vs_{base}"] = math.nan if at is None else at
        out[f"extrapolated_crossover_vs_{base}"] = _extrapolated(law.get(REFERENCE), law.get(base), pair.index)
    return out


def _extrapolated(ref: PowerLaw | None, base: PowerLaw | None, sizes: Any) -> float:
    """The first D (up to 10^9) at which the fitted reference curve falls below the baseline's; NaN if none."""
    if ref is None or base is None or len(sizes) == 0:
        return math.nan
    grid = np.geomspace(float(min(sizes)), 1e9, 400)
    below = ref.predict(grid) < base.predict(grid)
    if not below.any():
        return math.nan
    i = int(np.argmax(below))
    return float(grid[i]) if below[i:].all() else math.nan


def _fit_row(task: str, model: str, group: Any, law: PowerLaw | None, target: float) -> dict[str, Any]:
    means = group.groupby("n_train")[FIT_METRIC[task]].mean()
    row = {"task": task, "model": model, "baseline": model in MODELS and MODELS[model].baseline,
           "metric": FIT_METRIC[task], "n_sizes": int(group["n_train"].nunique()),
           "seeds": int(group["seed"].nunique()), "n_params": int(group["n_params"].median()),
           "metric_at_min": means.iloc[0], "metric_at_max": means.iloc[-1], "target": target}
    if law is None or law.a <= 0:  # no decrease to fit: α is undefined (NaN), not 0
        flat = _flat(group, FIT_METRIC[task]) or law is not None
        return {**row, "fit": "flat" if flat else "too few sizes"}
    need = law.data_for(target)
    return {**row, "fit": "ok", "alpha": law.alpha.value, "alpha_lo": law.alpha.lo, "alpha_hi": law.alpha.hi,
            "floor_c": law.c.value, "c_lo": law.c.lo, "c_hi": law.c.hi, "a": law.a,
            "data_for_target": math.nan if need is None else need}


def _task_rows(task: str, rows: Any, target: float) -> list[dict[str, Any]]:
    """Every model's fit on one task, the reference row carrying its crossovers with each baseline."""
    metric = FIT_METRIC[task]
    laws = {m: fitted_law(g, metric) for m, g in rows.groupby("model", sort=True)}
    out = [_fit_row(task, m, g, laws[m], target) for m, g in rows.groupby("model", sort=True)]
    means = rows.pivot_table(index="n_train", columns="model", values=metric, aggfunc="mean")
    baselines = sorted(m for m in laws if MODELS.get(m) is not None and MODELS[m].baseline)
    cross = _crossovers(means, laws, baselines)
    return [{**r, **cross} if r["model"] == REFERENCE else r for r in out]


def summarize(df: Any, target_error: float = 0.1, target_bpb: float = 3.0) -> Any:
    """Per (task, model): α and the floor c with 95% bootstrap CIs, D needed for the target, the metric at the
    smallest and largest D; on the ``transformer`` row, the size above which it beats each baseline (measured,
    interpolated in log-log; NaN when it never does within the range) and the crossover of the fitted curves
    (extrapolated, up to 10^9). Only rows with status ok count."""
    import pandas as pd

    if df is None or len(df) == 0 or "n_train" not in df or "test_error" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    targets = {"local_motif": target_error, "text_bytes": target_bpb}
    rows = [r for task, g in ok.groupby("task", sort=True) if task in FIT_METRIC
            for r in _task_rows(task, g.dropna(subset=[FIT_METRIC[task]]), targets[task])]
    return pd.DataFrame(rows)



SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=summarize,
              metrics=("accuracy", "test_error", "loss", "train_accuracy", "train_loss", "curve", "steps_run",
                       "train_s", "n_params", "bits_per_byte", "train_bytes", "baseline"))
