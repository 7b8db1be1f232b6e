"""A small fit / evaluate loop for the accuracy sweeps: AdamW on a budget of STEPS, seeded and deterministic on CPU.

Splits (disjoint by construction, see ``bench.tasks``): the model trains on ``train``; every ``eval_every`` steps
(and at step 0 and at the last step) it is evaluated on ``val``, which gives the learning curve, ``steps_to_target``
and early stopping; the final number is measured once, after training, on ``test``, which nothing during training
has looked at. So the early-stopping decision is a tuning decision made on val, and test stays an unbiased
estimate of the model that was kept.

Stopping: at ``target_accuracy`` on val ("target"); with ``patience > 0``, after ``patience`` evaluations in a
row in which the val loss did not fall below its best so far by ``min_delta`` of that best and at least
``min_delta_abs`` nats ("plateau"; the absolute floor keeps eval noise at a small loss from counting), and then the
best-val-loss weights are the ones kept and tested; otherwise at the ``steps`` cap ("cap"). The loss, not the
accuracy, decides the plateau: recall tasks sit at chance accuracy for hundreds of steps while the loss keeps
falling, then jump. A run stopped by the cap is ``censored``: still improving by that rule when the budget ended.
With ``select_accuracy`` (learning curves of classifiers), a val-accuracy gain of ``min_delta_acc`` is progress
too, and the highest-val-accuracy weights are kept whatever stopped the run: a classifier trained on a few dozen
examples grows overconfident, so its val loss rises from the first steps while its accuracy still climbs, and
the lowest-loss weights would be the untrained ones.

Metrics: token tasks score only positions whose target is not ``IGNORE`` (accuracy and loss are per scored
position, pooled over the whole eval split); classify tasks score one label per sequence. The loss is the mean
cross-entropy in nats; for ``text_bytes`` it is also reported as bits per byte (loss / ln 2 per scored byte).
``steps_to_target`` is the first eval step whose val accuracy reaches ``target_accuracy``; ``None`` means the run
was censored at the step budget (the target was not reached within it), never "infinitely slow".

Determinism: one ``seed`` seeds the task data (``make(cfg, seed, n, split)``), the model's initialisation
(``torch.manual_seed`` just before the model is built) and the batch order (its own ``torch.Generator``);
``torch.use_deterministic_algorithms`` is on and the thread count fixed while a run trains, so the same seed on
the same machine and thread count gives bit-identical curves. Any module with the Transformer's forward signature
``(tokens (B, T), valid (B, T)) -> logits`` can be trained: pass ``model=`` a factory ``ModelConfig -> nn.Module``.
"""
from __future__ import annotations

import contextlib
import copy
import os
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import tasks
from bench.config import ConfigError
from bench.tasks import IGNORE, TaskData
from bench.tasks.text_bytes import bits_per_byte
from variants.model import ModelConfig, Transformer, count_parameters

ModelFactory = Callable[[ModelConfig], nn.Module]
BITS_PER_BYTE_TASKS = frozenset({"text_bytes"})  # tasks whose tokens are bytes: report loss as bits per byte
CurvePoint = tuple[int, float, float]  # (step, val accuracy, val loss)


@dataclass(frozen=True)
class TrainConfig:
    """How to fit one model. The budget is ``steps`` optimiser steps, never seconds (times vary by 25% here)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50  # linear warm-up steps
    final_lr_frac: float = 1.0  # after warm-up, cosine from lr to final_lr_frac * lr at ``steps``; 1 = constant
    eval_every: int = 100
    target_accuracy: float = 0.99  # early stop once val accuracy >= this
    n_train: int = 8192  # training examples (cycled in reshuffled epochs when steps * batch_size exceeds it)
    n_eval: int = 512  # examples in each of val and test
    seed: int = 0
    threads: int = 2
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off
    eval_batch_size: int = 256
    device: str = "cpu"  # cpu | cuda: where the model trains (data moves there once)
    patience: int = 0  # evaluations without val-loss progress before a plateau stop (0: no plateau stop)
    min_delta: float = 0.0  # relative val-loss drop that counts as progress for ``patience``
    min_delta_abs: float = 0.0  # and the least absolute drop (nats) that counts, whatever the relative one
    # classifiers judged by accuracy: keep the best-val-accuracy weights whatever ends the run, and count an
    # accuracy gain of min_delta_acc as progress too (an overfitting classifier's val loss rises while it learns)
    select_accuracy: bool = False
    min_delta_acc: float = 0.01

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first bad field."""
        for label in ("steps", "batch_size", "eval_every", "n_train", "n_eval", "threads", "eval_batch_size"):
            if getattr(self, label) < 1:
                raise ConfigError(f"train: {label} must be >= 1, got {getattr(self, label)}")
        if not 0.0 <= self.final_lr_frac <= 1.0:
            raise ConfigError(f"train: final_lr_frac must be in [0, 1], got {self.final_lr_frac}")
        for label in ("warmup", "seed", "weight_decay", "grad_clip", "patience", "min_delta", "min_delta_abs",
                      "min_delta_acc"):
            if getattr(self, label) < 0:
                raise ConfigError(f"train: {label} must be >= 0, got {getattr(self, label)}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"train: device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train: device cuda asked for, but torch sees no CUDA device (use --device cpu)")
        if not self.lr > 0:
            raise ConfigError(f"train: lr must be > 0, got {self.lr}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise ConfigError(f"train: target_accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.n_train < self.batch_size:
            raise ConfigError(f"train: n_train={self.n_train} is smaller than one batch ({self.batch_size})")


@dataclass(frozen=True)
class TrainResult:
    """What one fit measured. ``accuracy`` / ``loss`` / ``bits_per_byte`` are on the test split after training;
    ``curve`` holds (step, val accuracy, val loss) at every evaluation; ``steps_to_target`` is None when the target
    was not reached; ``stop_reason`` is "target", "plateau" or "cap"; ``best_step`` the eval step of the weights
    kept: the lowest val loss (kept when a plateau stopped the run), or with ``select_accuracy`` the highest val
    accuracy (kept whatever stopped it)."""

    accuracy: float
    loss: float
    bits_per_byte: float | None
    steps_to_target: int | None
    curve: tuple[CurvePoint, ...]
    steps: int
    wall_s: float
    n_params: int
    stop_reason: str = "cap"
    best_step: int = 0

    @property
    def censored(self) -> bool:
        """True when the step cap, not the target or a plateau, ended the run."""
        return self.stop_reason == "cap"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields plus ``censored``; the curve as a list of [step, acc, loss] lists."""
        out = asdict(self)
        out["curve"] = [list(point) for point in self.curve]
        out["censored"] = self.censored
        return out


def model_config_for(task_cfg: Any, attention: str = "full_sdpa", *, causal: bool | None = None,
                     **kwargs: Any) -> ModelConfig:
    """A ModelConfig sized for ``task_cfg``: its vocabulary, length, head and classes; ``causal`` defaults to the
    task's own posing. ``kwargs`` go to ModelConfig (d_model, n_layers, attention_params, token_shift, ...)."""
    return ModelConfig(vocab_size=task_cfg.vocab_size, max_seq_len=task_cfg.seq_len, attention=attention,
                       causal=task_cfg.causal if causal is None else causal, head=task_cfg.head,
                       n_classes=task_cfg.n_classes, **kwargs)


def check_compatible(model_cfg: ModelConfig, task_cfg: Any) -> None:
    """ConfigError when the model cannot read the task's tokens or emit its targets. Causality is the caller's
    choice (a recall task may be posed non-causally for every variant alike), so it is not checked here."""
    n_out = model_cfg.n_classes or model_cfg.vocab_size
    problems = [
        (model_cfg.head != task_cfg.head, f"head {model_cfg.head!r} != task head {task_cfg.head!r}"),
        (model_cfg.vocab_size < task_cfg.vocab_size,
         f"vocab_size {model_cfg.vocab_size} < task's {task_cfg.vocab_size}"),
        (model_cfg.max_seq_len < task_cfg.seq_len,
         f"max_seq_len {model_cfg.max_seq_len} < task's {task_cfg.seq_len}"),
        (n_out < task_cfg.n_classes, f"{n_out} outputs < task's {task_cfg.n_classes} classes"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"train: model does not fit the task: {message}")


def load_splits(task_name: str, task_cfg: Any, train_cfg: TrainConfig) -> tuple[TaskData, TaskData, TaskData]:
    """(train, val, test) of one task, all from ``train_cfg.seed``, on ``train_cfg.device``; val and test hold
    ``n_eval`` each."""
    make = tasks.get(task_name).make
    splits = (make(task_cfg, train_cfg.seed, train_cfg.n_train, "train"),
              make(task_cfg, train_cfg.seed, train_cfg.n_eval, "val"),
              make(task_cfg, train_cfg.seed, train_cfg.n_eval, "test"))
    if train_cfg.device == "cpu":
        return splits
    return tuple(TaskData(*(t.to(train_cfg.device) for t in (d.x, d.y, d.valid))) for d in splits)  # type: ignore


def score(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
    """(summed cross-entropy, correct count, scored count) of one batch, for either head.

    Token head: logits (B, T, V), y (B, T) with IGNORE at unscored positions. Classify: logits (B, C), y (B,)."""
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (B, T, V) -> (B·T, V); (B, C) stays
    flat_y = y.reshape(-1)
    scored = flat_y != IGNORE
    loss_sum = F.cross_entropy(flat_logits, flat_y, ignore_index=IGNORE, reduction="sum")
    correct = (flat_logits.argmax(dim=-1) == flat_y) & scored
    return loss_sum, correct.sum(), int(scored.sum())


@torch.no_grad()
def evaluate(model: nn.Module, data: TaskData, batch_size: int) -> tuple[float, float]:
    """(accuracy, mean loss in nats) over every scored position (token head) or sequence (classify) of ``data``."""
    was_training = model.training
    model.eval()
    loss_total, correct_total, count = 0.0, 0, 0
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        loss_sum, correct, n = score(model(data.x[sl], data.valid[sl]), data.y[sl])
        loss_total, correct_total, count = loss_total + float(loss_sum), correct_total + int(correct), count + n
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the split has no scored position")
    return correct_total / count, loss_total / count


def batch_order(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless index batches: a fresh seeded permutation of range(n) per epoch, the ragged tail dropped."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start:start + batch_size]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with decay on matrices only (not biases, norms or 1-d params); linear warm-up, then cosine down to
    ``final_lr_frac`` · lr at ``steps`` (1.0, the default: constant, so a shorter budget's curve is a prefix of a
    longer one's and steps_to_target does not depend on the budget)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))

    def factor(step: int) -> float:
        """Multiplier of lr after ``step`` optimiser steps."""
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        floor = cfg.final_lr_frac
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, valid: Tensor,
               grad_clip: float) -> float:
    """One optimiser step on the mean loss over the batch's scored positions; returns that loss."""
    logits = model(x, valid)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.item()


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic algorithms while the block runs; the previous settings restored.
    (cuBLAS is deterministic only with a fixed workspace, set here before CUDA starts if the user has not.)"""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


@dataclass
class _Watch:
    """The stopping rule's state over the val curve: the lowest loss, its step and weights, and why to stop."""

    cfg: TrainConfig
    best: float = math.inf
    best_step: int = 0
    best_state: dict | None = None
    stale: int = 0
    best_acc: float = -math.inf  # select_accuracy: the kept weights' val accuracy
    progress_acc: float = -math.inf  # select_accuracy: the val accuracy at the last accuracy progress

    def see(self, model: nn.Module, step: int, acc: float, loss: float) -> str | None:
        """Record one evaluation; return "target" or "plateau" when training should stop there."""
        loss_progress = self.best == math.inf or loss < self.best - max(self.best * self.cfg.min_delta,
                                                                        self.cfg.min_delta_abs)
        if loss_progress:
            self.best = loss
        if self.cfg.select_accuracy:
            acc_progress = acc >= self.progress_acc + self.cfg.min_delta_acc
            progress = loss_progress or acc_progress
            if acc_progress:
                self.progress_acc = acc
            if acc > self.best_acc:
                self.best_acc, self.best_step = acc, step
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            progress = loss_progress
            if loss_progress:
                self.best_step = step
                if self.cfg.patience:
                    self.best_state = copy.deepcopy(model.state_dict())
        self.stale = 0 if progress else self.stale + 1
        if acc >= self.cfg.target_accuracy:
            return "target"
        if self.cfg.patience and self.stale >= self.cfg.patience:
            return "plateau"
        return None


def fit(model: nn.Module, train_data: TaskData, val: TaskData, cfg: TrainConfig) -> tuple[tuple[CurvePoint, ...],
                                                                                         str, _Watch]:
    """Train ``model`` in place until the target, a plateau or the cap (see the module docstring); on a plateau
    the best-val weights are loaded back (with ``select_accuracy``, whatever stopped the run). Returns (val curve,
    stop reason, the watch with the best step)."""
    opt, schedule = make_optimizer(model, cfg)
    order = batch_order(len(train_data), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
    curve: list[CurvePoint] = []
    watch, reason = _Watch(cfg), "cap"
    model.train()
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc, loss = evaluate(model, val, cfg.eval_batch_size)
            curve.append((step, acc, loss))
            stop = watch.see(model, step, acc, loss)
            if stop is not None:
                reason = stop
                break
        if step == cfg.steps:
            break
        idx = next(order)
        train_step(model, opt, train_data.x[idx], train_data.y[idx], train_data.valid[idx], cfg.grad_clip)
        schedule.step()
    if watch.best_state is not None and (reason == "plateau" or cfg.select_accuracy):
        model.load_state_dict(watch.best_state)
    return tuple(curve), reason, watch


def fit_model(model_cfg: ModelConfig, task_name: str, task_cfg: Any, train_cfg: TrainConfig,
              model: ModelFactory | None = None) -> tuple[TrainResult, nn.Module]:
    """Fit a model on ``task_name`` and measure it on the held-out test split (see the module docstring); return
    the result and the trained model (the weights that were tested).

    ``model``: a factory ``ModelConfig -> nn.Module`` with the forward ``(tokens, valid) -> logits``; the default
    builds ``variants.model.Transformer(model_cfg)``. It is called right after ``torch.manual_seed(seed)``."""
    train_cfg.validate()
    task_cfg.validate()
    check_compatible(model_cfg, task_cfg)
    train_data, val, test = load_splits(task_name, task_cfg, train_cfg)
    with deterministic(train_cfg.threads):
        torch.manual_seed(train_cfg.seed)
        net = (model or Transformer)(model_cfg).to(train_cfg.device)
        start = time.perf_counter()
        curve, reason, watch = fit(net, train_data, val, train_cfg)
        wall_s = time.perf_counter() - start
        accuracy, loss = evaluate(net, test, train_cfg.eval_batch_size)
    bpb = bits_per_byte(loss) if task_name in BITS_PER_BYTE_TASKS else None
    reached = curve[-1][0] if reason == "target" else None
    result = TrainResult(accuracy=accuracy, loss=loss, bits_per_byte=bpb, steps_to_target=reached, curve=curve,
                         steps=curve[-1][0], wall_s=wall_s, n_params=count_parameters(net), stop_reason=reason,
                         best_step=watch.best_step)
    return result, net


def train(model_cfg: ModelConfig, task_name: str, task_cfg: Any, train_cfg: TrainConfig,
          model: ModelFactory | None = None) -> TrainResult:
    """``fit_model`` without the model: what one fit measured."""
    return fit_model(model_cfg, task_name, task_cfg, train_cfg, model)[0]
