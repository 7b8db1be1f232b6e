"""How much data does attention need, against models with more inductive bias?

Learning curves: test error (or bits per byte) against training-set size D, fitted as a·D^(−α) + c, for the
Transformer with full or light attention and the attention-free CNN and GRU baselines (``MODELS``), all trained
for the same steps on nested prefixes of one seeded pool and tested on one test set. Rows carry ``test_error``,
not ``error`` (the store's failure message). Protocol and references: docs/sweeps.md#data_scaling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bench import tasks
from bench.config import Case, ConfigError, TaskPoolConfig, require_nonempty, require_positive
from bench.sweep import Sweep
from bench.analysis.learning import FIT_METRIC, summary
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
        curve, _, _ = fit(net, train_data, val, tc)
        steps = curve[-1][0]
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


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=summary,
              metrics=("accuracy", "test_error", "loss", "train_accuracy", "train_loss", "curve", "steps_run",
                       "train_s", "n_params", "bits_per_byte", "train_bytes", "baseline"))
