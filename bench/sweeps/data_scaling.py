"""How much data does attention need, against models with more inductive bias, and what does pretraining buy?

Learning curves: test error against the number of labelled training examples n, fitted as a·n^(−α) + c, for
the Transformer with full or light attention, the attention-free CNN and GRU baselines, and (on the labelled
real-text task ``text_kind``) the same full-attention Transformer fine-tuned from a body pretrained on unlabelled
train-split text (``bench.pretrain``). Every model trains on nested prefixes of one seeded pool, to convergence:
its step cap scales with the data (``epochs`` passes over n, clamped to [min_steps, max_steps]), it stops early
on a plateau (``patience``: no val-loss drop and, for the classifiers, no val-accuracy gain; the best-val-accuracy
weights are the ones tested), and a run that hits the cap still improving is ``censored``. Rows carry
``test_error``, not ``error`` (the store's failure message), and the trivial rules' errors on the same test set.
Protocol and references: docs/sweeps.md#data_scaling.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bench import tasks
from bench.config import Case, ConfigError, TaskPoolConfig, require_nonempty, require_positive
from bench.pretrain import PretrainSpec, load_body, pretrained_body
from bench.sweep import Sweep
from bench.analysis.learning import FIT_METRIC, summary
from bench.tasks import TaskData, trivial_accuracies
from bench.tasks import text_kind
from bench.train import BITS_PER_BYTE_TASKS, TrainConfig, deterministic, evaluate, fit, model_config_for
from bench.tasks.text_bytes import bits_per_byte
from variants import create_model
from variants.model import ModelConfig, Transformer, count_parameters

NAME = "data_scaling"
TRAIN_FIELDS = ("batch_size", "lr", "weight_decay", "warmup", "eval_every", "n_eval", "threads", "patience",
                "min_delta", "min_delta_abs", "min_delta_acc")
STEP_FIELDS = ("epochs", "min_steps", "max_steps")
PRETRAIN_FIELDS = ("pretrain_steps", "pretrain_windows")
PRETRAIN_TASKS = frozenset({"text_kind"})  # tasks with unlabelled text to pretrain on
PRETRAIN_COST = ("pretrain_s", "pretrain_bpb", "pretrain_cached")  # what a pretrained row records of its body
MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "token_shift")
TASK_FIELDS = {"local_motif": {"seq_len": "seq_len", "vocab_size": "motif_vocab", "motif_len": "motif_len",
                               "n_classes": "motif_classes"},
               "text_bytes": {"seq_len": "seq_len", "max_pool_bytes": "text_pool_bytes"},
               "text_kind": {"seq_len": "seq_len", "max_pool_bytes": "text_pool_bytes"}}  # task field -> sweep's


@dataclass(frozen=True)
class ModelChoice:
    """One model of the sweep: its attention (for the Transformer's config), a factory, whether it is an
    attention-free baseline and whether it starts from a pretrained body. ``window`` and ``kernel`` come from
    the sweep Config."""

    attention: str
    build: Callable[[ModelConfig, int], nn.Module]  # (model config, conv kernel) -> module
    baseline: bool
    pretrained: bool = False


MODELS: dict[str, ModelChoice] = {
    "transformer": ModelChoice("full_sdpa", lambda cfg, k: Transformer(cfg), False),
    "sparse_window": ModelChoice("sparse_window", lambda cfg, k: Transformer(cfg), False),
    "linear_elu": ModelChoice("linear_elu", lambda cfg, k: Transformer(cfg), False),
    "cnn_baseline": ModelChoice("full_sdpa", lambda cfg, k: create_model("cnn_baseline", cfg, kernel=k), True),
    "gru_baseline": ModelChoice("full_sdpa", lambda cfg, k: create_model("gru_baseline", cfg), True),
    "pretrained": ModelChoice("full_sdpa", lambda cfg, k: Transformer(cfg), False, pretrained=True),
}


@dataclass(frozen=True)
class Config(TaskPoolConfig):
    """The grid (tasks × models × sizes × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("local_motif", "text_kind")  # local_motif | text_kind | text_bytes
    models: tuple[str, ...] = ("transformer", "pretrained", "cnn_baseline", "gru_baseline")  # keys of MODELS
    sizes: tuple[int, ...] = (64, 256, 1024)  # labelled training examples (windows for text_bytes), nested
    # training to convergence: cap = clamp(epochs · n / batch_size, min_steps, max_steps), then a plateau stop
    epochs: float = 30.0  # passes over the n examples the step cap allows
    min_steps: int = 250  # the cap's floor: above patience × eval_every, so a plateau, not the cap, ends small runs
    max_steps: int = 600  # the cap's ceiling; a run that reaches it still improving is censored
    patience: int = 8  # evaluations without progress (val loss, or a classifier's val accuracy) that stop a run
    min_delta: float = 0.005  # relative val-loss drop that counts as progress
    min_delta_abs: float = 0.002  # and the least absolute drop (nats)
    min_delta_acc: float = 0.01  # a classifier's val-accuracy gain that counts as progress too
    eval_every: int = 25  # steps between validation evaluations
    n_eval: int = 300  # validation and test examples each
    # self-supervision (model "pretrained", text_kind only): next-byte prediction on the train split's text
    pretrain_steps: int = 600  # the fixed pretraining budget, optimiser steps (cached once per seed)
    pretrain_windows: int = 16384  # distinct unlabelled train-split windows it draws from
    jobs: int = 2  # worker processes training at once
    # model, the same for every model
    seq_len: int = 64  # task sequence length T (bytes per window on the text tasks)
    d_model: int = 32  # model width, the same for every model
    n_layers: int = 2  # layers
    n_heads: int = 2  # attention heads per layer
    kernel: int = 3  # cnn_baseline convolution width
    window: int = 8  # sparse_window one-sided reach
    # summary targets: test error (local_motif, text_kind), bits per byte (text_bytes)
    target_error: float = 0.1  # summary: the test error a model is scored to reach (local_motif)
    target_text_error: float = 0.25  # summary: the test error a model is scored to reach (text_kind)
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
        train_config(self, seed=0, n_train=max(self.sizes), task=self.tasks[0]).validate()
        require_positive(self, ("epochs", "min_steps", "max_steps", "pretrain_steps", "pretrain_windows",
                                "d_model", "n_layers", "n_heads", "kernel", "window"))
        if self.min_steps > self.max_steps:
            raise ConfigError(f"--min-steps={self.min_steps} exceeds --max-steps={self.max_steps}")
        if self.min_steps <= self.patience * self.eval_every:
            raise ConfigError(f"--min-steps={self.min_steps} must exceed --patience × --eval-every = "
                              f"{self.patience * self.eval_every}, or the cap ends small runs before a plateau can")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"--d-model={self.d_model} must be even and divisible by --n-heads={self.n_heads}")
        if not (0 < self.target_error < 1 and 0 < self.target_text_error < 1 and self.target_bpb > 0):
            raise ConfigError("--target-error and --target-text-error must be in (0, 1); --target-bpb must be > 0")


PROFILES = {
    # the main job's share: 3 sizes over 1.2 decades, 2 seeds, the pretrained-vs-scratch gap on text_kind; the
    # cap's floor is twice the patience span, as in standard
    "quick": Config(seeds=(0, 1), min_steps=300, max_steps=400, patience=6),
    # 8 sizes over 2.1 decades, 3 seeds (docs/sweeps.md#data_scaling has its measured time); patience spans
    # 500 steps, so a Transformer's flat phase before it learns locality does not end the run, and the cap's
    # floor is twice that, so a small run's plateau shows before the cap does
    "standard": Config(models=("transformer", "pretrained", "sparse_window", "linear_elu", "cnn_baseline",
                               "gru_baseline"), sizes=tuple(2 ** k for k in range(5, 13)), seeds=(0, 1, 2),
                       min_steps=1000, max_steps=2000, eval_every=50, patience=10, pretrain_steps=2000,
                       pretrain_windows=32768, time_cap_s=1200.0),
    "full": Config(models=tuple(MODELS), sizes=tuple(2 ** k for k in range(6, 15)), seeds=(0, 1, 2, 3, 4),
                   epochs=50.0, min_steps=400, max_steps=6000, patience=6, eval_every=50, n_eval=1024, d_model=64,
                   pretrain_steps=6000, pretrain_windows=65536, time_cap_s=3600.0),
}


def step_cap(cfg: Config | Case, n_train: int) -> int:
    """The step cap of a run on ``n_train`` examples: ``epochs`` passes, clamped to [min_steps, max_steps]."""
    steps = math.ceil(_field(cfg, "epochs") * n_train / _field(cfg, "batch_size"))
    return int(min(max(steps, _field(cfg, "min_steps")), _field(cfg, "max_steps")))


# ---------------------------------------------------------------------------------------------- data and models

def _field(cfg: Config | Case, name: str) -> Any:
    return cfg[name] if isinstance(cfg, Case) else getattr(cfg, name)


def task_config(cfg: Config | Case, task: str) -> Any:
    """The task's frozen Config, from the sweep Config or a Case (which carries the same knobs)."""
    return tasks.get(task).Config(**{f: _field(cfg, mine) for f, mine in TASK_FIELDS[task].items()})


def train_config(cfg: Config | Case, seed: int, n_train: int, task: str) -> TrainConfig:
    """The TrainConfig of one case: the data-scaled step cap, the plateau stop, no stop short of a perfect val
    score, a constant learning rate after warm-up (so the cap does not reshape the schedule); a classifier keeps
    its best-val-accuracy weights (text_bytes, scored in bits per byte, its best val loss)."""
    return TrainConfig(seed=seed, n_train=n_train, steps=step_cap(cfg, n_train), target_accuracy=1.0,
                       final_lr_frac=1.0, select_accuracy=task not in BITS_PER_BYTE_TASKS,
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
    """Seeded build, ``fit`` to the cap or a plateau, then test and (a sample of) train scores."""
    train_data, val, test = splits
    with deterministic(tc.threads):
        torch.manual_seed(tc.seed)
        net = factory()
        start = time.perf_counter()
        curve, reason, watch = fit(net, train_data, val, tc)
        train_s = time.perf_counter() - start
        accuracy, loss = evaluate(net, test, tc.eval_batch_size)
        head = TaskData(*(t[:tc.n_eval] for t in (train_data.x, train_data.y, train_data.valid)))
        train_accuracy, train_loss = evaluate(net, head, tc.eval_batch_size)
    steps = curve[-1][0]
    return {"accuracy": accuracy, "test_error": 1.0 - accuracy, "loss": loss, "train_accuracy": train_accuracy,
            "train_loss": train_loss, "curve": [[s, round(a, 4), round(l, 4)] for s, a, l in curve],
            "steps_run": steps, "steps_cap": tc.steps, "epochs_run": steps * tc.batch_size / len(train_data),
            "stop_reason": reason, "censored": reason == "cap", "best_step": watch.best_step, "train_s": train_s,
            "n_params": count_parameters(net), "model_obj": net}


# ---------------------------------------------------------------------------------------------------- the grid

def cases(cfg: Config) -> Iterator[Case]:
    """One Case per (task, model, size, seed): tasks in order, smallest size first, seeds innermost; the
    pretrained model only on the tasks with text to pretrain on (``PRETRAIN_TASKS``)."""
    shared = {name: getattr(cfg, name) for name in TRAIN_FIELDS + MODEL_FIELDS + STEP_FIELDS}
    for task in cfg.tasks:
        knobs = {mine: getattr(cfg, mine) for mine in ("kernel", "window", "data_seed", *TASK_FIELDS[task].values())}
        for model in cfg.models:
            if MODELS[model].pretrained and task not in PRETRAIN_TASKS:
                continue
            extra = {name: getattr(cfg, name) for name in PRETRAIN_FIELDS} if MODELS[model].pretrained else {}
            for n in sorted(set(cfg.sizes)):
                for seed in dict.fromkeys(cfg.seeds):
                    yield Case.make(NAME, task=task, model=model, n_train=n, seed=seed, **shared, **knobs, **extra)


def pretrain_spec(case: Case, task_cfg: text_kind.Config, model_cfg: ModelConfig) -> PretrainSpec:
    """The pretrained body a ``pretrained`` case fine-tunes: one per seed and configuration."""
    return PretrainSpec(text=task_cfg.source(), model=model_cfg, steps=case["pretrain_steps"],
                        windows=case["pretrain_windows"], batch_size=case["batch_size"], lr=case["lr"],
                        seed=case["seed"], threads=case["threads"])


def factory_of(case: Case, task_cfg: Any, model_cfg: ModelConfig) -> tuple[Callable[[], nn.Module], dict]:
    """(a builder of the case's model, the pretraining cost to record): a pretrained model's builder loads the
    cached body into a fresh classifier."""
    build = lambda: build_model(case["model"], model_cfg, case["kernel"])  # noqa: E731
    if not MODELS[case["model"]].pretrained:
        return build, {}
    state, meta = pretrained_body(pretrain_spec(case, task_cfg, model_cfg))
    return lambda: load_body(build(), state), {name: meta[name] for name in PRETRAIN_COST}


def trivial_errors(task: str, task_cfg: Any, splits: tuple[TaskData, TaskData, TaskData]) -> dict[str, Any]:
    """The trivial rules' test errors, fitted on the same n examples: the majority class, and on text_kind the
    nearest byte-histogram centroid."""
    train_data, _, test = splits
    if tasks.get(task).Config.head != "classify":
        return {}
    out = {"majority_error": 1.0 - trivial_accuracies(task, task_cfg, train_data, test)["majority"]}
    if task == "text_kind":
        out["centroid_error"] = 1.0 - text_kind.centroid_accuracy(train_data, test)
    return out


def execute(case: Case) -> dict[str, Any]:
    """Train one model on the first ``n_train`` rows of the pool; score it on the sweep's one test set."""
    task = case["task"]
    task_cfg = task_config(case, task)
    model_cfg = sweep_model_config(case, task_cfg)
    tc = train_config(case, case["seed"], case["n_train"], task)
    splits = fixed_splits(task, task_cfg, case["data_seed"], case["n_train"], case["n_eval"])
    factory, cost = factory_of(case, task_cfg, model_cfg)
    out = fit_and_test(factory, splits, tc)
    del out["model_obj"]
    in_bits = task in BITS_PER_BYTE_TASKS
    return {**out, **cost, **trivial_errors(task, task_cfg, splits),
            "bits_per_byte": bits_per_byte(out["loss"]) if in_bits else None,
            "train_bytes": case["n_train"] * task_cfg.seq_len if in_bits else None,
            "baseline": MODELS[case["model"]].baseline, "pretrained": MODELS[case["model"]].pretrained}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=summary,
              metrics=("accuracy", "test_error", "loss", "train_accuracy", "train_loss", "curve", "steps_run",
                       "steps_cap", "epochs_run", "stop_reason", "censored", "best_step", "train_s", "n_params",
                       *PRETRAIN_COST,
                       "majority_error", "centroid_error", "bits_per_byte", "train_bytes", "baseline",
                       "pretrained"))
