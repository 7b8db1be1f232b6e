"""How does accuracy depend on sequence length T, per attention variant and task? (accuracy_vs_length)

Every variant × T × seed × task: one small Transformer (``variants.model``) per case, trained with
``bench.train`` on a budget of steps, then scored on the held-out test split. Every variant gets the same model
(d_model, layers, heads, token shift) and the same optimiser; they differ only in token mixing. Budgeted variants
get the budgets below (``--window``, ``--linformer-k``, ``--landmarks``, ...), stored in each case as ``attn_*``;
task knobs are stored as ``task_*`` (the task Config's own field names after the prefix).

Causality (``--bidirectional``). MQAR and needle are posed causally by their generators, and Linformer and
Nyströmformer cannot be causal. Both tasks score only a query's answer, which depends on the past alone, and
nothing after a query carries it: in ``bench.tasks.mqar`` the token after a query is uniform filler (Zoology's
causal layout puts the value there; ours does not), later queries are other keys, and the value shows up later
only by chance (filler is uniform over the vocabulary); in ``bench.tasks.needle`` filler never uses value ids, so
the needle's value occurs once. So these two tasks (``LEAK_FREE``) can be posed NON-causally without leaking the
answer, and by default (``bidirectional=True``) they are, for EVERY variant alike, so low-rank variants are
compared on the same footing. A sliding window's reach to the past is the same either way. ``bidirectional=False``
keeps the tasks causal (as Zoology) and the non-causal variants' cases are recorded ``unsupported``. text_bytes
(y[t] = x[t+1]) would leak, so it is always causal; listops and local_motif are non-causal classification.

Metrics per case: test ``accuracy``, ``loss`` (nats), ``bits_per_byte`` (text_bytes), ``steps_to_target`` (first
val eval at ``target_accuracy``; None = censored at the budget, with ``censored`` True), ``curve`` (compact
[step, val acc, val loss] list), ``steps_run``, ``train_s``, ``n_params``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import variants
from bench import tasks
from bench.config import Case, ConfigError
from bench.train import TrainConfig, model_config_for, train

NAME = "accuracy"
PARALLEL = True  # accuracy does not depend on an idle machine: `jobs` workers train cases side by side
QUESTION = "accuracy_vs_length"
LEAK_FREE = frozenset({"mqar", "needle"})  # causal tasks whose answers need only the past and nothing later leaks
ATTN, TASK = "attn_", "task_"  # case-key prefixes of variant params and task knobs
LENGTH_FIELD = {"listops": "max_len"}  # the task Config field that T sets (default "seq_len")
TRAIN_FIELDS = ("steps", "batch_size", "lr", "weight_decay", "warmup", "final_lr_frac", "eval_every",
                "target_accuracy", "n_train", "n_eval", "threads")
MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "token_shift")


@dataclass(frozen=True)
class Config:
    """The grid (tasks × seq_lens × variants × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("mqar",)
    variants: tuple[str, ...] = ()  # empty: every registered variant
    seq_lens: tuple[int, ...] = (64, 128, 256)
    seeds: tuple[int, ...] = (0, 1, 2)
    # training (bench.train.TrainConfig)
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3  # 1e-3 left full attention below 0.15 on quick MQAR after 1500 steps; 1e-2 stalled
    weight_decay: float = 0.1
    warmup: int = 50
    final_lr_frac: float = 1.0  # constant lr after warm-up: cosine decay to 0.1 within 1000 steps stalled MQAR
    eval_every: int = 100
    target_accuracy: float = 0.99
    n_train: int = 16384
    n_eval: int = 256
    # model (variants.model.ModelConfig), the same for every variant
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    token_shift: bool = True
    bidirectional: bool = True  # pose LEAK_FREE tasks non-causally for every variant (see the module docstring)
    # task knobs
    n_pairs: int = 8  # mqar
    mqar_vocab: int = 256
    distance: int = 40  # needle
    n_values: int = 16
    listops_depth: int = 10
    listops_args: int = 10
    listops_min_frac: float = 0.5  # listops min_len = ceil(frac * T)
    motif_vocab: int = 16  # local_motif
    motif_len: int = 3
    motif_classes: int = 2
    text_pool_bytes: int = 2_000_000  # text_bytes
    # variant budgets
    window: int = 32  # sparse_window and sparse_bigbird one-sided reach
    bigbird_block: int = 16  # sparse_bigbird block_size = min(this, window)
    linformer_k: int = 32
    landmarks: int = 32  # low_rank_nystrom
    performer_features: int = 64  # linear_performer
    threads: int = 1
    jobs: int = 2  # worker processes training at once (each with `threads` threads)
    time_cap_s: float = 600.0

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first problem (names, grids, then every task Config per T)."""
        for name in self.tasks:
            tasks.get(name)
        for name in self.variants:
            try:
                variants.get(name)
            except variants.UnknownVariantError as exc:
                raise ConfigError(str(exc)) from None
        for label in ("tasks", "seq_lens", "seeds"):
            if not getattr(self, label):
                raise ConfigError(f"--{label.replace('_', '-')} must not be empty")
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
        for label in ("d_model", "n_layers", "n_heads", "window", "bigbird_block", "linformer_k", "landmarks",
                      "performer_features", "threads"):
            if getattr(self, label) < 1:
                raise ConfigError(f"--{label.replace('_', '-')} must be >= 1, got {getattr(self, label)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"--d-model={self.d_model} is not divisible by --n-heads={self.n_heads}")
        if not 0.0 < self.listops_min_frac <= 1.0:
            raise ConfigError(f"--listops-min-frac must be in (0, 1], got {self.listops_min_frac}")
        if not self.time_cap_s > 0:
            raise ConfigError("--time-cap-s must be > 0")


QUICK_VARIANTS = ("full_sdpa", "sparse_window", "low_rank_linformer", "linear_elu")

PROFILES = {
    # 24 cases. Measured (threads=1, a shared 2-core AMD EPYC): ~32 ms CPU per step at T=64, 16 500 steps run in
    # all (early stops included), 547 s of CPU summed over the cases: inside 10 minutes on an idle core, with
    # ~9% margin. Full attention reaches 0.99 on MQAR only at ~900-1000 steps, so 1000 is the least budget.
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


def config_dict(cfg: Config) -> dict[str, Any]:
    """The config as a plain dict (for the manifest)."""
    return asdict(cfg)
