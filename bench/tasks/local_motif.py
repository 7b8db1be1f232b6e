"""Local motif detection: the label says which short motif, if any, occurs in a random token string.

Source: the motif-finding setting that motivates convolutional sequence models, e.g. DeepBind (Alipanahi et al.
2015, Nature Biotechnology 33:831) and the CNN-vs-Transformer inductive-bias comparisons of d'Ascoli et al.
2021, "ConViT", arXiv 2103.10697. The label depends only on a window of ``motif_len`` adjacent tokens, which a
width-``motif_len`` convolution plus global max-pool represents exactly; attention has to learn locality from
data. It is built to show where that bias wins at small training sets.

Classes: ``n_classes - 1`` distinct motifs of ``motif_len`` tokens, fixed by ``motif_seed`` (the same motifs for
every data seed and split). Label 0: no motif occurs anywhere. Label c >= 1: motif ``c - 1`` is planted wholly
inside the row (start uniform in ``[0, T - motif_len]``) and no other motif occurs anywhere (the planted one may
recur by chance). Rows start uniform over the vocabulary and are scrubbed: a token inside each forbidden
occurrence, never one of the planted span, is resampled until none is left. Classes are exactly balanced per
block of ``n_classes`` rows. Rows are unpadded (valid all True).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from bench.config import ConfigError
from bench.tasks import TaskConfig, TaskData, check_request, chunk_rng, fill_split

MAX_SCRUB_ROUNDS = 1000
LABEL_STREAM = 2**31 - 1  # seed stream id of the label sequence (class streams are 0 .. n_classes - 1)


@dataclass(frozen=True)
class Config(TaskConfig):
    """Which short motif (if any) occurs in a random sequence: a task local convolutions suit."""

    head: ClassVar[str] = "classify"
    causal: ClassVar[bool] = False
    seq_len: int = 128  # tokens per example
    vocab_size: int = 16  # distinct tokens
    motif_len: int = 3  # tokens per motif
    n_classes: int = 2  # motifs + 1 (no motif)
    motif_seed: int = 0  # seed that draws the motifs

    @property
    def n_motifs(self) -> int:
        return self.n_classes - 1

    def validate(self) -> None:
        if self.n_classes < 2:
            raise ConfigError(f"local_motif: n_classes must be >= 2, got {self.n_classes}")
        if not 2 <= self.motif_len <= min(8, self.seq_len):
            raise ConfigError(f"local_motif: motif_len must be in [2, min(8, seq_len)], got {self.motif_len} "
                              f"with seq_len={self.seq_len}")
        if self.vocab_size < 2:
            raise ConfigError(f"local_motif: vocab_size must be >= 2, got {self.vocab_size}")
        if 4 * self.n_motifs > self.vocab_size ** self.motif_len:
            raise ConfigError(f"local_motif: {self.n_motifs} motifs would cover over a quarter of the "
                              f"{self.vocab_size}^{self.motif_len} possible windows; raise vocab_size or motif_len")


def motifs(cfg: Config) -> np.ndarray:
    """(n_motifs, motif_len) distinct motifs, a function of ``motif_seed`` only."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.motif_seed, cfg.vocab_size, cfg.motif_len]))
    chosen: list[tuple[int, ...]] = []
    while len(chosen) < cfg.n_motifs:
        m = tuple(int(t) for t in rng.integers(0, cfg.vocab_size, size=cfg.motif_len))
        if m not in chosen:
            chosen.append(m)
    return np.array(chosen, dtype=np.int64).reshape(cfg.n_motifs, cfg.motif_len)


def occurrences(x: np.ndarray, motif_set: np.ndarray) -> np.ndarray:
    """(N, T) tokens, (k, m) motifs -> (N, T - m + 1, k) bool: motif j starts at position t."""
    windows = sliding_window_view(x, motif_set.shape[1], axis=1)  # (N, T - m + 1, m)
    return (windows[:, :, None, :] == motif_set[None, None, :, :]).all(axis=-1)


def _scrub(rng: np.random.Generator, x: np.ndarray, motif_set: np.ndarray, forbidden: np.ndarray,
           protected: np.ndarray, vocab: int) -> None:
    """In place: resample one unprotected token of every occurrence of a motif forbidden for its row."""
    m = motif_set.shape[1]
    for _ in range(MAX_SCRUB_ROUNDS):
        rows, starts = np.nonzero(occurrences(x, motif_set)[:, :, forbidden].any(axis=-1))
        if rows.size == 0:
            return
        pos = starts + rng.integers(0, m, size=rows.size)
        free = ~protected[rows, pos]
        x[rows[free], pos[free]] = rng.integers(0, vocab, size=int(free.sum()))
    raise ConfigError(f"local_motif: could not clear stray motifs in {MAX_SCRUB_ROUNDS} rounds; "
                      f"raise vocab_size or motif_len")


def _draw_class(cfg: Config, label: int, rng: np.random.Generator, count: int):
    """``count`` rows of class ``label``: (x, y, valid) numpy arrays."""
    T, m, motif_set = cfg.seq_len, cfg.motif_len, motifs(cfg)
    x = rng.integers(0, cfg.vocab_size, size=(count, T))
    protected = np.zeros((count, T), dtype=bool)
    forbidden = np.ones(cfg.n_motifs, dtype=bool)
    if label > 0:
        forbidden[label - 1] = False
        span = rng.integers(0, T - m + 1, size=count)[:, None] + np.arange(m)  # (count, m)
        np.put_along_axis(x, span, motif_set[label - 1][None, :].repeat(count, 0), axis=1)
        np.put_along_axis(protected, span, True, axis=1)
    _scrub(rng, x, motif_set, forbidden, protected, cfg.vocab_size)
    return x, np.full(count, label, dtype=np.int64), np.ones((count, T), dtype=bool)


def balanced_labels(cfg: Config, seed: int, split_idx: int, n: int) -> np.ndarray:
    """(n,) labels: each block of ``n_classes`` is a seeded permutation of all classes (prefix-stable in n)."""
    k = cfg.n_classes
    blocks = -(-n // k)
    keys = chunk_rng(seed, split_idx, LABEL_STREAM).random((blocks, k))
    return keys.argsort(axis=1).reshape(-1)[:n]


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` rows for ``split``: x (n, T), y (n,) labels in [0, n_classes), valid all True."""
    split_idx = check_request(cfg, seed, n, split)
    labels = balanced_labels(cfg, seed, split_idx, n)
    x = torch.empty(n, cfg.seq_len, dtype=torch.long)
    for c in range(cfg.n_classes):
        where = torch.from_numpy(np.nonzero(labels == c)[0])
        if where.numel():
            part = fill_split(lambda rng, m, c=c: _draw_class(cfg, c, rng, m), where.numel(), seed, split, c)
            x[where] = part.x
    return TaskData(x, torch.from_numpy(labels).long(), torch.ones(n, cfg.seq_len, dtype=torch.bool))
