"""How much data does attention need, against models with more inductive bias? (data_scaling)

The data-dependence limit: a Transformer has little built-in prior, so at small training sets models with a
stronger bias (a CNN's locality, a GRU's recurrence) should win, and attention should catch up only with data.
Learning curves measure it: test error against training-set size D, fitted as error(D) = a·D^(−α) + c
(Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically", arXiv 1712.00409, who report α in
0.07–0.35 on real tasks; Kaplan et al. 2020, arXiv 2001.08361, for the form with a floor).

Protocol. One fixed pool per task, drawn with ``data_seed``: the training sets are prefixes of it (``make(cfg,
data_seed, n, "train")`` is a prefix of ``make(cfg, data_seed, m, "train")`` for n < m), and ONE val and ONE test
set (``n_eval`` each, also from ``data_seed``) serve every size, model and seed. ``seed`` varies only the model's
initialisation and the batch order. Every model trains for the same budget of ``steps`` at the same batch size,
whatever D is: small sets are cycled for many epochs and overfit honestly (no early stopping, no checkpoint
selection: the last model is tested; ``train_accuracy`` on up to ``n_eval`` training rows shows the gap).

Models (``MODELS``): the Transformer of ``variants.model`` with full attention (``transformer``) or a lightweight
variant (``sparse_window``, ``linear_elu``), and the attention-free baselines of ``variants.baselines``
(``cnn_baseline``, ``gru_baseline``), all with the same d_model, layers and MLP, so parameter counts are within
~±15% of each other (each row stores ``n_params``).

Tasks: ``local_motif`` (the label is whether a motif of ``motif_len`` adjacent tokens occurs: a convolution's
prior) and ``text_bytes`` (next-byte prediction on the Python standard library; the fitted metric is bits per
byte, D is counted in windows of ``seq_len`` bytes and ``train_bytes`` = D·seq_len). Rows carry ``test_error``
(1 − accuracy) rather than ``error``, a row field the store reserves for the one-line failure message.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bench import tasks
from bench.analysis.learning import FIT_METRIC
from bench.config import Case, ConfigError
from bench.tasks import TaskData
from bench.train import BITS_PER_BYTE_TASKS, TrainConfig, deterministic, evaluate, fit, model_config_for
from bench.tasks.text_bytes import bits_per_byte
from variants.baselines import ConvNet, GRUNet
from variants.model import ModelConfig, Transformer, count_parameters

NAME = "data_scaling"
PARALLEL = True  # accuracy does not depend on an idle machine: `jobs` workers train cases side by side
QUESTION = "accuracy_vs_data"
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
    "cnn_baseline": ModelChoice("full_sdpa", lambda cfg, k: ConvNet(cfg, kernel=k), True),
    "gru_baseline": ModelChoice("full_sdpa", lambda cfg, k: GRUNet(cfg), True),
}


@dataclass(frozen=True)
class Config:
    """The grid (tasks × models × sizes × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("local_motif", "text_bytes")
    models: tuple[str, ...] = ("transformer", "sparse_window", "cnn_baseline", "gru_baseline")
    sizes: tuple[int, ...] = (128, 512, 2048, 8192)  # training examples (windows for text_bytes), nested
    seeds: tuple[int, ...] = (0, 1, 2)  # model init and batch order
    data_seed: int = 0  # the one pool, val and test set
    # training: the same budget of steps for every size and model of a task
    steps: int = 400  # local_motif
    text_steps: int = 200  # text_bytes
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 25
    eval_every: int = 100
    n_eval: int = 512
    threads: int = 1  # 2 threads on a loaded 2-core machine measured 4-10x slower per step than 1
    jobs: int = 2  # worker processes training at once
    # model, the same for every model
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    token_shift: bool = True
    kernel: int = 3  # cnn_baseline convolution width
    window: int = 8  # sparse_window one-sided reach
    # tasks
    seq_len: int = 32
    motif_vocab: int = 16
    motif_len: int = 3
    motif_classes: int = 4  # 3 motifs + "none": chance 0.25
    text_pool_bytes: int = 2_000_000
    # summary targets: test error for local_motif, bits per byte for text_bytes
    target_error: float = 0.1
    target_bpb: float = 3.0
    time_cap_s: float = 300.0

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first problem."""
        for name in self.tasks:
            tasks.get(name)
            if name not in FIT_METRIC:
                raise ConfigError(f"--tasks: {name!r} has no learning-curve metric; known: {', '.join(FIT_METRIC)}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
        for label in ("tasks", "models", "sizes", "seeds"):
            if not getattr(self, label):
                raise ConfigError(f"--{label} must not be empty")
        if len(set(self.sizes)) < 3:
            raise ConfigError(f"--sizes needs at least three distinct sizes to fit a power law, got {self.sizes}")
        if min(self.sizes) < self.batch_size:
            raise ConfigError(f"--sizes: {min(self.sizes)} is smaller than one batch ({self.batch_size})")
        self._validate_numbers()
        for name in self.tasks:
            task_config(self, name).validate()

    def _validate_numbers(self) -> None:
        train_config(self, "local_motif", seed=0, n_train=max(self.sizes)).validate()
        for label in ("text_steps", "d_model", "n_layers", "n_heads", "kernel", "window", "seq_len"):
            if getattr(self, label) < 1:
                raise ConfigError(f"--{label.replace('_', '-')} must be >= 1, got {getattr(self, label)}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(f"--d-model={self.d_model} must be even and divisible by --n-heads={self.n_heads}")
        if any(s < 0 for s in self.seeds) or self.data_seed < 0:
            raise ConfigError("--seeds and --data-seed must be >= 0")
        if not (0 < self.target_error < 1 and self.target_bpb > 0 and self.time_cap_s > 0):
            raise ConfigError("--target-error must be in (0, 1); --target-bpb and --time-cap-s must be > 0")


PROFILES = {
    # Measured here (threads=1, load ~5 on 2 cores): 8–28 ms per step at d_model=32, T=32, batch 32 (the GRU
    # slowest); 96 cases (3 seeds) ≈ 7 minutes loaded, baselines stopping early once val accuracy is perfect.
    # Two seeds (64 cases) keep the main job inside 15 minutes on 2 cores.
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


def config_dict(cfg: Config) -> dict[str, Any]:
    """The config as a plain dict (for the manifest)."""
    return asdict(cfg)
