"""Synthetic and text tasks for the accuracy sweeps: one module per task, one common shape.

Each task module defines a frozen ``Config`` (typed knobs with defaults, ``validate()`` raising a one-line
``ConfigError``; metadata ``vocab_size``, ``n_classes``, ``head``, ``causal`` and ``seq_len`` readable on every
Config) and ``make(cfg, seed, n, split="train") -> TaskData``.

Splits are disjoint by construction: every synthetic example is kept only by the split that a hash of its
tokens assigns it to (``row_split``), so the same token row can never appear in two splits, and each split
draws from its own seed stream. ``text_bytes`` splits by file instead. Examples are drawn in fixed-size chunks,
each from its own derived seed, so ``make(cfg, seed, n)`` is a prefix of ``make(cfg, seed, m)`` for ``n < m``
(nested training sets for learning curves).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, ClassVar

import numpy as np
import torch

from bench.config import ConfigError

SPLITS = ("train", "val", "test")
IGNORE = -100  # target at positions that are not scored (torch's cross_entropy default ignore_index)


@dataclass(frozen=True)
class TaskConfig:
    """What every task's Config shares: ``head`` ("token": a target per position, "classify": one label per row)
    and ``causal`` (how the task is posed) as class attributes, and ``n_classes`` (the vocabulary unless the task
    says otherwise). Subclasses add their knobs, ``vocab_size``, ``seq_len`` and ``validate()``."""

    head: ClassVar[str] = "token"
    causal: ClassVar[bool] = True

    @property
    def n_classes(self) -> int:
        return self.vocab_size  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TaskData:
    """One split of a task. ``x``: (N, T) int64 token ids; ``y``: (N, T) int64 per-token targets with
    ``IGNORE`` where unscored ("token" head) or (N,) int64 labels ("classify" head); ``valid``: (N, T) bool,
    True for real tokens, False for padding."""

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.valid.shape != self.x.shape or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"inconsistent shapes x={tuple(self.x.shape)} y={tuple(self.y.shape)} "
                             f"valid={tuple(self.valid.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]


def split_index(split: str) -> int:
    """Position of ``split`` in ``SPLITS``; an unknown split is a ConfigError."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return SPLITS.index(split)


def check_request(cfg: object, seed: int, n: int, split: str) -> int:
    """Validate ``cfg`` and the request; return the split's index."""
    cfg.validate()  # type: ignore[attr-defined]
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    return split_index(split)


def chunk_rng(seed: int, *stream: int) -> np.random.Generator:
    """A numpy Generator for one chunk, derived from ``seed`` and non-negative stream ids (split, class, chunk).

    The stream's length is mixed in because SeedSequence ignores trailing zeros ([s, 0] seeds like [s])."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), len(stream), *map(int, stream)]))


def row_split(x: np.ndarray) -> np.ndarray:
    """(N, T) token rows -> (N,) split index in 0..2, a hash of each row's tokens (BLAKE2b, not Python's
    salted ``hash``), so equal rows always land in the same split."""
    rows = np.ascontiguousarray(x, dtype=np.int32)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows]
    return np.array([int.from_bytes(d, "little") % len(SPLITS) for d in digests], dtype=np.int64)


def distinct(rng: np.random.Generator, m: int, low: int, high: int, k: int) -> np.ndarray:
    """(m, k) ints, each row k distinct values from [low, high) in random order."""
    return rng.random((m, high - low)).argsort(axis=1)[:, :k] + low


Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def fill_split(draw: Draw, n: int, seed: int, split: str, *stream: int, chunk: int = 256) -> TaskData:
    """Draw chunks of ``chunk`` examples with ``draw(rng, chunk) -> (x, y, valid)`` (numpy arrays) and keep the
    rows whose token hash belongs to ``split`` until ``n`` are kept. Raises ConfigError when the example space
    is too small to supply them (a split that keeps almost nothing)."""
    index = split_index(split)
    budget = 4 * math.ceil(len(SPLITS) * n / chunk) + 20
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    have = 0
    for c in range(budget):
        x, y, valid = draw(chunk_rng(seed, index, *stream, c), chunk)
        keep = row_split(x) == index
        kept.append((x[keep], y[keep], valid[keep]))
        have += int(keep.sum())
        if have >= n:
            xs, ys, vs = (np.concatenate(parts)[:n] for parts in zip(*kept))
            return TaskData(torch.from_numpy(xs).long(), torch.from_numpy(ys).long(), torch.from_numpy(vs).bool())
    raise ConfigError(f"could draw only {have} of {n} {split} examples in {budget} chunks; the task's example "
                      f"space is too small for this n (enlarge seq_len/vocab)")


# Imported after the shared helpers above: task modules import them from this package.
from bench.tasks import listops, local_motif, mqar, needle, text_bytes, text_kind  # noqa: E402

TASKS: dict[str, ModuleType] = {
    "mqar": mqar,
    "needle": needle,
    "listops": listops,
    "text_bytes": text_bytes,
    "local_motif": local_motif,
    "text_kind": text_kind,
}


def names() -> list[str]:
    """Registered task names, in registry order."""
    return list(TASKS)


def get(name: str) -> ModuleType:
    """The task module registered as ``name`` (has ``Config`` and ``make``); unknown names are a ConfigError."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


# ------------------------------------------------------------------------------------------------ trivial rules

Rule = Callable[[object, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def majority(train_y: np.ndarray) -> int:
    """The most frequent scored target of a training split (ties: the smallest id)."""
    scored = train_y[train_y != IGNORE]
    return int(np.bincount(scored).argmax())


def trivial_accuracies(name: str, cfg: object, train: TaskData, test: TaskData) -> dict[str, float]:
    """Accuracy on ``test``'s scored targets of every trivial rule for task ``name``: the training majority, and
    the task's own ``TRIVIAL_RULES`` (rules that read the row but not the ability the task measures, each a
    function ``(cfg, x (N, T), rows, positions) -> predictions`` for the scored (row, position) pairs)."""
    x, y = test.x.numpy(), test.y.numpy()
    if y.ndim == 1:  # classify head: one label per row
        return {"majority": float((y == majority(train.y.numpy())).mean())}
    rows, positions = np.nonzero(y != IGNORE)
    truth = y[rows, positions]
    out = {"majority": float((truth == majority(train.y.numpy())).mean())}
    for rule_name, rule in getattr(get(name), "TRIVIAL_RULES", {}).items():
        out[rule_name] = float((rule(cfg, x, rows, positions) == truth).mean())
    return out
