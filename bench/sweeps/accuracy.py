"""How does accuracy depend on sequence length T, per attention variant and task?

Every variant × T × seed × task: the same small Transformer (``variants.model``) per case, trained with
``bench.train`` on a budget of steps and scored on the held-out test split; variants differ only in token mixing.
Variant budgets are stored in each case as ``attn_*``, task knobs as ``task_*``. MQAR and needle (``LEAK_FREE``)
are posed non-causally for every variant by default (``--bidirectional``), since nothing after a query leaks its
answer; why that is safe, and the metrics: docs/sweeps.md#accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import variants
from bench import tasks
from bench.config import Case, ConfigError, RunConfig, require_nonempty, require_positive
from bench.sweep import Sweep
from bench.analysis.accuracy import summary
from bench.train import TrainConfig, model_config_for, train

NAME = "accuracy"
LEAK_FREE = frozenset({"mqar", "needle"})  # causal tasks whose answers need only the past and nothing later leaks
ATTN, TASK = "attn_", "task_"  # case-key prefixes of variant params and task knobs
LENGTH_FIELD = {"listops": "max_len"}  # the task Config field that T sets (default "seq_len")
TRAIN_FIELDS = ("steps", "batch_size", "lr", "weight_decay", "warmup", "final_lr_frac", "eval_every",
                "target_accuracy", "n_train", "n_eval", "threads")
MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "token_shift")


@dataclass(frozen=True)
class Config(RunConfig):
    """The grid (tasks × seq_lens × variants × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("mqar",)  # mqar | needle | listops | text_bytes | local_motif
    variants: tuple[str, ...] = ()  # empty: every registered variant
    seq_lens: tuple[int, ...] = (64, 128, 256)  # T, sequence lengths (each task generated at T)
    seeds: tuple[int, ...] = (0, 1, 2)  # model init, batch order and data seeds
    # training (bench.train.TrainConfig)
    steps: int = 1000  # training steps (the budget; a run stops early at target_accuracy)
    batch_size: int = 32  # sequences per training step
    lr: float = 3e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.1  # AdamW weight decay
    warmup: int = 50  # linear warm-up steps
    final_lr_frac: float = 1.0  # lr after the cosine decay, as a fraction of the peak (1: constant)
    eval_every: int = 100  # steps between validation evaluations
    target_accuracy: float = 0.99  # validation accuracy that ends training early (steps_to_target)
    n_train: int = 16384  # training examples
    n_eval: int = 256  # validation and test examples each
    # model (variants.model.ModelConfig), the same for every variant
    d_model: int = 64  # model width
    n_layers: int = 2  # Transformer layers
    n_heads: int = 2  # attention heads per layer
    token_shift: bool = True  # mix each token with its predecessor before attention
    bidirectional: bool = True  # pose LEAK_FREE tasks non-causally for every variant (see the module docstring)
    # task knobs
    n_pairs: int = 8  # mqar
    mqar_vocab: int = 256  # mqar vocabulary size
    distance: int = 40  # needle
    n_values: int = 16  # needle: distinct values
    listops_depth: int = 10  # listops: maximum nesting depth
    listops_args: int = 10  # listops: maximum arguments per operator
    listops_min_frac: float = 0.5  # listops min_len = ceil(frac * T)
    motif_vocab: int = 16  # local_motif
    motif_len: int = 3  # local_motif: tokens per motif
    motif_classes: int = 2  # local_motif: classes (motifs + none)
    text_pool_bytes: int = 2_000_000  # text_bytes
    # variant budgets
    window: int = 32  # sparse_window and sparse_bigbird one-sided reach
    bigbird_block: int = 16  # sparse_bigbird block_size = min(this, window)
    linformer_k: int = 32  # low_rank_linformer projected length k
    landmarks: int = 32  # low_rank_nystrom
    performer_features: int = 64  # linear_performer
    threads: int = 1  # torch threads per worker child
    jobs: int = 2  # worker processes training at once (each with `threads` threads)
    time_cap_s: float = 600.0  # seconds one case may run before its child is killed (status timeout)

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first problem (names, grids, then every task Config per T)."""
        super().validate()
        for name in self.tasks:
            tasks.get(name)
        for name in self.variants:
            try:
                variants.get(name)
            except variants.UnknownVariantError as exc:
                raise ConfigError(str(exc)) from None
        require_nonempty(self, ("tasks", "seq_lens", "seeds"))
        if any(t <= 0 for t in self.seq_lens):
            raise ConfigError(f"sequence lengths must be positive, got {self.seq_lens}")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"--seeds must be >= 0, got {self.seeds}")
        self._validate_numbers()
        for name in self.tasks:
            for T in self.seq_lens:
                task_config(name, T, task_knobs(self, name, T)).validate()

    def _validate_numbers(self) -> None:
        """Training, model and budget numbers (the training ones through TrainConfig.validate)."""
        train_config(self, seed=0).validate()
        require_positive(self, ("d_model", "n_layers", "n_heads", "window", "bigbird_block", "linformer_k",
                                "landmarks", "performer_features", "jobs"))
        if self.d_model % self.n_heads:
            raise ConfigError(f"--d-model={self.d_model} is not divisible by --n-heads={self.n_heads}")
        if not 0.0 < self.listops_min_frac <= 1.0:
            raise ConfigError(f"--listops-min-frac must be in (0, 1], got {self.listops_min_frac}")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds)


QUICK_VARIANTS = ("full_sdpa", "sparse_window", "low_rank_linformer", "linear_elu")

PROFILES = {
    # 24 cases, sized to fit the main job (the measurement: docs/sweeps.md#accuracy)
    "quick": Config(tasks=("mqar", "needle"), variants=QUICK_VARIANTS, seq_lens=(64,), seeds=(0, 1, 2),
                    steps=1000, time_cap_s=300.0),
    "full": Config(tasks=("mqar", "needle", "listops", "text_bytes", "local_motif"), seq_lens=(64, 128, 256, 512),
                   seeds=(0, 1, 2), steps=3000, eval_every=100, n_pairs=16, n_train=65536, n_eval=1024,
                   time_cap_s=3600.0),
}


# --------------------------------------------------------------------------------------------- tasks and variants

def _listops_knobs(cfg: Config, T: int) -> dict[str, Any]:
    """ListOps at length T: expressions of ceil(listops_min_frac · T) .. T tokens."""
    return {"max_depth": cfg.listops_depth, "max_args": cfg.listops_args,
            "min_len": max(1, math.ceil(cfg.listops_min_frac * T))}


# Per-task knobs: the task Config's field names (T itself is set through LENGTH_FIELD in task_config).
TASK_KNOBS: dict[str, Callable[[Config, int], dict[str, Any]]] = {
    "mqar": lambda cfg, T: {"n_pairs": cfg.n_pairs, "vocab_size": cfg.mqar_vocab},
    "needle": lambda cfg, T: {"distance": cfg.distance, "n_values": cfg.n_values},
    "listops": _listops_knobs,
    "text_bytes": lambda cfg, T: {"max_pool_bytes": cfg.text_pool_bytes},
    "local_motif": lambda cfg, T: {"vocab_size": cfg.motif_vocab, "motif_len": cfg.motif_len,
                                   "n_classes": cfg.motif_classes},
}

# Per-variant budget params, named as the variant's own params; variants not listed run with their defaults.
VARIANT_PARAMS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "sparse_window": lambda cfg: {"window": cfg.window},
    "sparse_bigbird": lambda cfg: {"window": cfg.window, "block_size": min(cfg.bigbird_block, cfg.window)},
    "low_rank_linformer": lambda cfg: {"k": cfg.linformer_k},
    "low_rank_nystrom": lambda cfg: {"landmarks": cfg.landmarks},
    "linear_performer": lambda cfg: {"n_features": cfg.performer_features},
}


def task_knobs(cfg: Config, task: str, T: int) -> dict[str, Any]:
    """The task Config's fields this sweep sets at length T (besides T itself)."""
    return TASK_KNOBS[task](cfg, T)


def task_config(task: str, T: int, knobs: dict[str, Any]) -> Any:
    """The task's frozen Config at length T with ``knobs``."""
    return tasks.get(task).Config(**{LENGTH_FIELD.get(task, "seq_len"): T, **knobs})


def posed_causal(cfg: Config, task: str) -> bool:
    """Whether ``task`` is posed causally in this sweep (see the module docstring)."""
    own = tasks.get(task).Config().causal
    return own and not (cfg.bidirectional and task in LEAK_FREE)


def train_config(cfg: Config, seed: int) -> TrainConfig:
    """The sweep's TrainConfig for one seed."""
    return TrainConfig(seed=seed, **{name: getattr(cfg, name) for name in TRAIN_FIELDS})


# ---------------------------------------------------------------------------------------------------- the grid

def selected_variants(cfg: Config) -> tuple[str, ...]:
    """cfg.variants (duplicates dropped), or every registered variant."""
    return tuple(dict.fromkeys(cfg.variants)) or tuple(variants.names())


def cases(cfg: Config) -> Iterator[Case]:
    """One Case per (task, T, variant, seed): tasks in order, shortest T first, seeds innermost."""
    shared = {name: getattr(cfg, name) for name in TRAIN_FIELDS + MODEL_FIELDS}
    for task in dict.fromkeys(cfg.tasks):
        causal = posed_causal(cfg, task)
        for T in sorted(set(cfg.seq_lens)):
            knobs = {TASK + k: v for k, v in task_knobs(cfg, task, T).items()}
            for name in selected_variants(cfg):
                params = {ATTN + k: v for k, v in VARIANT_PARAMS.get(name, lambda c: {})(cfg).items()}
                for seed in dict.fromkeys(cfg.seeds):
                    yield Case.make(NAME, task=task, variant=name, T=T, seed=seed, causal=causal, **shared,
                                    **knobs, **params)


def _strip(case: Case, prefix: str) -> dict[str, Any]:
    """The case params named ``prefix + key``, as {key: value}."""
    return {k[len(prefix):]: v for k, v in case.params if k.startswith(prefix)}


def execute(case: Case) -> dict[str, Any]:
    """Train one model and score it on the test split; NotImplementedError for a non-causal-only variant on a
    task posed causally (recorded as ``unsupported``)."""
    spec = variants.get(case["variant"]).spec
    if case["causal"] and not spec.supports_causal:
        raise NotImplementedError(f"{spec.name} does not support causal attention, and {case['task']} is posed "
                                  f"causally here")
    task_cfg = task_config(case["task"], case["T"], _strip(case, TASK))
    model_cfg = model_config_for(task_cfg, case["variant"], causal=case["causal"],
                                 attention_params=_strip(case, ATTN),
                                 **{name: case[name] for name in MODEL_FIELDS})
    tc = TrainConfig(seed=case["seed"], **{name: case[name] for name in TRAIN_FIELDS})
    result = train(model_cfg, case["task"], task_cfg, tc)
    return {"accuracy": result.accuracy, "loss": result.loss, "bits_per_byte": result.bits_per_byte,
            "steps_to_target": result.steps_to_target, "censored": result.censored,
            "curve": [[s, round(a, 4), round(l, 4)] for s, a, l in result.curve],
            "steps_run": result.steps, "train_s": result.wall_s, "n_params": result.n_params}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, parallel=True,
              summarize=summary,
              metrics=("accuracy", "loss", "bits_per_byte", "steps_to_target", "censored", "curve", "steps_run",
                       "train_s", "n_params"))
