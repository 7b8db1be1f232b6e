"""How does accuracy depend on sequence length T, per attention variant and task?

Every task × T × variant × seed: the same small Transformer (``variants.model``) per case, trained with
``bench.train`` until its validation accuracy reaches the target or plateaus (a step cap censors the rest), and
scored on the held-out test split; variants differ only in token mixing, and their budgets (window, k, landmarks,
features) stay fixed across T. Each variant's learning rate is chosen per task from ``lr_grid`` on the validation
split at one length and seed (``tune_len``, the first seed), then used at every T and seed. Posing: recall tasks
are causal for every variant that can be (Zoology's protocol); Linformer and Nyström cannot, and are posed
bidirectionally, in a column of their own (``--bidirectional`` poses every variant so). Why, and the sizing:
docs/sweeps.md#accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from torch import nn

import variants
from bench import checkpoints, tasks
from bench.analysis.accuracy import REFERENCE, choose_lr, summary
from bench.config import Case, ConfigError, RunConfig, require_nonempty, require_positive
from bench.sweep import Plan, Sweep, no_cases
from bench.train import TrainConfig, TrainResult, fit_model, model_config_for
from variants.model import ModelConfig

NAME = "accuracy"
LEAK_FREE = frozenset({"mqar", "needle"})  # causal tasks whose answers need only the past and nothing later leaks
ATTN, TASK = "attn_", "task_"  # case-key prefixes of variant params and task knobs
MIN_PAIRS = 4  # mqar's default floor: chance (one of the row's values) stays at or below 1/4
LENGTH_FIELD = {"listops": "max_len"}  # the task Config field that T sets (default "seq_len")
TRAIN_FIELDS = ("steps", "batch_size", "weight_decay", "warmup", "final_lr_frac", "eval_every", "target_accuracy",
                "n_train", "n_eval", "threads", "patience", "min_delta", "min_delta_abs", "device")
MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "token_shift")


@dataclass(frozen=True)
class Config(RunConfig):
    """The grid (tasks × seq_lens × variants × seeds), the learning-rate grid, and everything held fixed."""

    tasks: tuple[str, ...] = ("mqar", "needle")  # mqar | needle | listops | text_bytes | local_motif
    variants: tuple[str, ...] = ()  # empty: every registered variant
    seq_lens: tuple[int, ...] = (32, 64, 128, 256)  # T, sequence lengths (each task generated at T)
    seeds: tuple[int, ...] = (0, 1, 2)  # model init, batch order and data seeds
    # training (bench.train.TrainConfig)
    lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # peak learning rates tried per task and variant (AdamW)
    tune_len: int = 0  # T at which the lr is chosen, with the first seed (0: the shortest of seq_lens)
    steps: int = 3000  # step cap: a run still improving when it ends here is censored
    patience: int = 8  # evaluations without val-loss progress that count as a plateau (0: off)
    min_delta: float = 0.005  # relative val-loss drop that counts as progress
    min_delta_abs: float = 0.01  # and the least absolute drop (nats): eval noise at a small loss is not progress
    batch_size: int = 16  # sequences per training step
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
    bidirectional: bool = False  # pose the recall tasks bidirectionally for EVERY variant (an extra, not the default)
    bidirectional_reference: bool = True  # also train full attention bidirectionally beside a bidirectional column
    # task knobs
    n_pairs: int = 0  # mqar: key-value pairs (0: T // 16, at least 4, growing with T as in Zoology)
    mqar_vocab: int = 256  # mqar vocabulary size
    n_needles: int = 4  # needle: key-value needles per row, each asked once after the haystack
    needle_keys: int = 16  # needle: distinct key ids
    needle_values: int = 16  # needle: distinct value ids
    max_distance: int = 56  # needle: haystack length, the farthest a needle sits from its question (0: the row)
    listops_depth: int = 10  # listops: maximum nesting depth
    listops_args: int = 10  # listops: maximum arguments per operator
    listops_min_frac: float = 0.5  # listops min_len = ceil(frac * T)
    motif_vocab: int = 16  # local_motif
    motif_len: int = 3  # local_motif: tokens per motif
    motif_classes: int = 2  # local_motif: classes (motifs + none)
    text_pool_bytes: int = 2_000_000  # text_bytes
    # variant budgets, fixed across T
    window: int = 32  # sparse_window and sparse_bigbird one-sided reach
    bigbird_block: int = 16  # sparse_bigbird block_size = min(this, window)
    linformer_k: int = 32  # low_rank_linformer projected length k
    landmarks: int = 32  # low_rank_nystrom
    performer_features: int = 64  # linear_performer
    device: str = "cpu"  # cpu | cuda: where each model trains
    threads: int = 1  # torch threads per worker child
    jobs: int = 2  # worker processes training at once (each with `threads` threads)
    time_cap_s: float = 1200.0  # seconds one case may run before its child is killed (status timeout)

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
        require_nonempty(self, ("tasks", "seq_lens", "seeds", "lr_grid"))
        if any(t <= 0 for t in self.seq_lens):
            raise ConfigError(f"sequence lengths must be positive, got {self.seq_lens}")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"--seeds must be >= 0, got {self.seeds}")
        if self.tune_len and self.tune_len not in self.seq_lens:
            raise ConfigError(f"--tune-len={self.tune_len} is not one of --seq-lens={self.seq_lens}")
        self._validate_numbers()
        for name in self.tasks:
            for T in self.seq_lens:
                task_config(name, T, task_knobs(self, name, T)).validate()

    def _validate_numbers(self) -> None:
        """Training, model and budget numbers (the training ones through TrainConfig.validate)."""
        for lr in self.lr_grid:
            train_config(self, seed=0, lr=lr).validate()
        require_positive(self, ("d_model", "n_layers", "n_heads", "window", "bigbird_block", "linformer_k",
                                "landmarks", "performer_features", "jobs"))
        if self.d_model % self.n_heads:
            raise ConfigError(f"--d-model={self.d_model} is not divisible by --n-heads={self.n_heads}")
        if not 0.0 < self.listops_min_frac <= 1.0:
            raise ConfigError(f"--listops-min-frac must be in (0, 1], got {self.listops_min_frac}")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds)

    @property
    def run_device(self) -> str:
        return self.device

    @property
    def tune_T(self) -> int:
        return self.tune_len or min(self.seq_lens)


QUICK_VARIANTS = ("full_sdpa", "sparse_window", "linear_elu", "low_rank_linformer")

PROFILES = {
    # sized to fit the main job; one lr (no tuning), one seed, Linformer's column without its reference (the
    # measurement: docs/sweeps.md#accuracy)
    "quick": Config(variants=QUICK_VARIANTS, seq_lens=(32, 128), seeds=(0,), lr_grid=(3e-3,), steps=1500, patience=5,
                    bidirectional_reference=False, time_cap_s=600.0),
    # MQAR, every variant, 4 lengths, 3 seeds, lr tuned at T = 64, sized to 90 minutes on 2 CPU cores (the needle
    # is in quick and full: both tasks together do not fit; measured time in docs/sweeps.md#accuracy)
    "standard": Config(tasks=("mqar",), tune_len=64, patience=6),
    "full": Config(tasks=("mqar", "needle", "listops", "text_bytes", "local_motif"), tune_len=128,
                   seq_lens=(64, 128, 256, 512, 1024), seeds=(0, 1, 2, 3, 4), steps=10000, patience=10,
                   batch_size=32, mqar_vocab=8192, n_train=65536, n_eval=1024, time_cap_s=7200.0),
    # the full recall grid to T = 2048 on one GPU (or several, through --executor ray)
    "gpu": Config(seq_lens=(128, 256, 512, 1024, 2048), tune_len=256, seeds=(0, 1, 2), steps=20000, patience=10, batch_size=32,
                  mqar_vocab=8192, n_train=65536, n_eval=1024, device="cuda", jobs=1, time_cap_s=7200.0),
}


# --------------------------------------------------------------------------------------------- tasks and variants

def _listops_knobs(cfg: Config, T: int) -> dict[str, Any]:
    """ListOps at length T: expressions of ceil(listops_min_frac · T) .. T tokens."""
    return {"max_depth": cfg.listops_depth, "max_args": cfg.listops_args,
            "min_len": max(1, math.ceil(cfg.listops_min_frac * T))}


# Per-task knobs: the task Config's field names (T itself is set through LENGTH_FIELD in task_config).
TASK_KNOBS: dict[str, Callable[[Config, int], dict[str, Any]]] = {
    "mqar": lambda cfg, T: {"n_pairs": cfg.n_pairs or max(MIN_PAIRS, T // 16), "vocab_size": cfg.mqar_vocab},
    "needle": lambda cfg, T: {"n_needles": cfg.n_needles, "n_keys": cfg.needle_keys, "n_values": cfg.needle_values,
                              "max_distance": cfg.max_distance},
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


def posed_causal(cfg: Config, task: str, variant: str) -> bool:
    """How ``task`` is posed for ``variant``: a causal recall task stays causal for a variant that supports it
    unless ``cfg.bidirectional``; a variant that cannot be causal gets it bidirectionally (its own column). Other
    causal tasks (text_bytes: the next byte would leak) stay causal; classification tasks are not causal."""
    if not tasks.get(task).Config().causal:
        return False
    if task in LEAK_FREE:
        return not cfg.bidirectional and variants.get(variant).spec.supports_causal
    return True


def train_config(cfg: Config, seed: int, lr: float) -> TrainConfig:
    """The sweep's TrainConfig for one seed and learning rate."""
    return TrainConfig(seed=seed, lr=lr, **{name: getattr(cfg, name) for name in TRAIN_FIELDS})


# ---------------------------------------------------------------------------------------------------- the grid

def selected_variants(cfg: Config) -> tuple[str, ...]:
    """cfg.variants (duplicates dropped), or every registered variant."""
    return tuple(dict.fromkeys(cfg.variants)) or tuple(variants.names())


def reference_both_ways(cfg: Config, task: str) -> bool:
    """True when ``task``'s grid has a bidirectional column (a variant that cannot be causal on a causally posed
    recall task): then the reference (full attention) is run bidirectionally too, so that column is compared with
    full attention posed as it is, never with the causal reference."""
    chosen = selected_variants(cfg)
    return (cfg.bidirectional_reference and REFERENCE in chosen and posed_causal(cfg, task, REFERENCE)
            and any(not posed_causal(cfg, task, v) for v in chosen))


def make_case(cfg: Config, task: str, T: int, variant: str, seed: int, lr: float,
              causal: bool | None = None) -> Case:
    """One training run, posed by ``posed_causal`` unless ``causal`` says otherwise. ``lr_grid`` and ``tune_T``
    ride along so the analysis can redo the lr choice."""
    shared = {name: getattr(cfg, name) for name in TRAIN_FIELDS + MODEL_FIELDS}
    knobs = {TASK + k: v for k, v in task_knobs(cfg, task, T).items()}
    params = {ATTN + k: v for k, v in VARIANT_PARAMS.get(variant, lambda c: {})(cfg).items()}
    causal = posed_causal(cfg, task, variant) if causal is None else causal
    return Case.make(NAME, task=task, variant=variant, T=T, seed=seed, lr=lr, causal=causal,
                     lr_grid=tuple(dict.fromkeys(cfg.lr_grid)), tune_T=cfg.tune_T, tune_seed=cfg.seeds[0], **shared, **knobs, **params)


def tuning_cases(cfg: Config) -> list[Case]:
    """Every grid lr per (task, variant) at ``tune_T`` with the first seed; none when the grid has one lr."""
    grid = tuple(dict.fromkeys(cfg.lr_grid))
    if len(grid) < 2:
        return []
    return [make_case(cfg, task, cfg.tune_T, variant, cfg.seeds[0], lr) for task in dict.fromkeys(cfg.tasks)
            for variant in selected_variants(cfg) for lr in grid]


def grid_cases(cfg: Config, lr_of: Mapping[tuple[str, str], float]) -> Iterator[Case]:
    """One Case per (task, T, variant, seed) at its chosen lr: tasks in order, shortest T first, seeds innermost;
    plus the reference posed bidirectionally (at its causal lr) where ``reference_both_ways``."""
    for task in dict.fromkeys(cfg.tasks):
        for T in sorted(set(cfg.seq_lens)):
            for variant in selected_variants(cfg):
                for seed in dict.fromkeys(cfg.seeds):
                    yield make_case(cfg, task, T, variant, seed, lr_of[(task, variant)])
            if reference_both_ways(cfg, task):
                for seed in dict.fromkeys(cfg.seeds):
                    yield make_case(cfg, task, T, REFERENCE, seed, lr_of[(task, REFERENCE)], causal=False)


def _trial(metrics: Mapping[str, Any], case: Case) -> tuple[float, str, float | None, int | None]:
    return case["lr"], metrics.get("status", "ok"), metrics.get("val_accuracy"), metrics.get("best_step")


def plan(cfg: Config, done: Mapping[str, dict]) -> Plan:
    """Tune (one parallel batch of the lr grid at ``tune_T``), choose each (task, variant)'s lr, then run the grid
    at the chosen lrs; cases in ``done`` are not run again (their stored rows stand in for them)."""
    tune = tuning_cases(cfg)
    todo = [c for c in tune if c.id not in done]
    outcomes = (yield todo) if todo else []
    seen = {c.id: {"status": o.status, **o.metrics} for c, o in zip(todo, outcomes)}
    seen.update({c.id: done[c.id] for c in tune if c.id in done})
    lr_of = {(task, variant): cfg.lr_grid[0] for task in cfg.tasks for variant in selected_variants(cfg)}
    for key in lr_of:
        trials = [_trial(seen[c.id], c) for c in tune if (c["task"], c["variant"]) == key]
        if trials:
            lr_of[key] = choose_lr(trials)
    rest = [c for c in grid_cases(cfg, lr_of) if c.id not in done and c.id not in seen]
    if rest:
        yield rest


# ---------------------------------------------------------------------------------------------------- one case

def _strip(case: Case, prefix: str) -> dict[str, Any]:
    """The case params named ``prefix + key``, as {key: value}."""
    return {k[len(prefix):]: v for k, v in case.params if k.startswith(prefix)}


def train_case(case: Case) -> tuple[TrainResult, nn.Module, ModelConfig]:
    """Train the model of one accuracy case (also what the interpretability sweep trains when no checkpoint is
    cached); NotImplementedError for a non-causal-only variant on a task posed causally."""
    spec = variants.get(case["variant"]).spec
    if case["causal"] and not spec.supports_causal:
        raise NotImplementedError(f"{spec.name} does not support causal attention, and {case['task']} is posed "
                                  f"causally here")
    task_cfg = task_config(case["task"], case["T"], _strip(case, TASK))
    model_cfg = model_config_for(task_cfg, case["variant"], causal=case["causal"],
                                 attention_params=_strip(case, ATTN),
                                 **{name: case[name] for name in MODEL_FIELDS})
    tc = TrainConfig(seed=case["seed"], lr=case["lr"], **{name: case[name] for name in TRAIN_FIELDS})
    result, model = fit_model(model_cfg, case["task"], task_cfg, tc)
    return result, model, model_cfg


def best_trivial(case: Case) -> tuple[str, float]:
    """The best trivial rule's name and accuracy on this case's test split (majority fitted on val)."""
    task_cfg = task_config(case["task"], case["T"], _strip(case, TASK))
    make = tasks.get(case["task"]).make
    scores = tasks.trivial_accuracies(case["task"], task_cfg, make(task_cfg, case["seed"], case["n_eval"], "val"),
                                      make(task_cfg, case["seed"], case["n_eval"], "test"))
    name = max(scores, key=scores.get)
    return name, scores[name]


def execute(case: Case) -> dict[str, Any]:
    """Train one model, score it and the best trivial rule on the test split, and keep the model in the checkpoint
    cache (``bench.checkpoints``)."""
    result, model, model_cfg = train_case(case)
    checkpoints.save(case.id, model, model_cfg, case.as_dict())
    rule, trivial = best_trivial(case)
    return {"trivial_accuracy": trivial, "trivial_rule": rule, "accuracy": result.accuracy, "loss": result.loss, "bits_per_byte": result.bits_per_byte,
            "val_accuracy": max(a for _, a, _ in result.curve), "steps_to_target": result.steps_to_target,
            "censored": result.censored, "stop_reason": result.stop_reason, "best_step": result.best_step,
            "curve": [[s, round(a, 4), round(l, 4)] for s, a, l in result.curve],
            "steps_run": result.steps, "train_s": result.wall_s, "n_params": result.n_params}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=no_cases, plan=plan, execute=execute,
              parallel=True, summarize=summary,
              metrics=("accuracy", "trivial_accuracy", "trivial_rule", "loss", "bits_per_byte", "val_accuracy", "steps_to_target", "censored",
                       "stop_reason", "best_step", "curve", "steps_run", "train_s", "n_params"))
