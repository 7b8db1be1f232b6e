"""What kind of Python source is this byte window: code, a string (docstrings included) or a comment?

A labelled real-text task that ships offline, for the self-supervision question of the data_scaling sweep: the
windows are bytes of the standard library's ``.py`` files, split BY FILE with text_bytes' own BLAKE2b path hash
(``text_bytes.list_files``), so no file feeds two splits and a byte model pretrained on text_bytes' train split
(``suffixes=(".py",)``) has read only train files. Labels come from the standard library's own lexer
(``tokenize``): every byte inside a STRING token is "string", inside a COMMENT token "comment", every other byte
(names, operators, numbers, whitespace) "code"; a window's label is the class of most of its bytes (ties: the
lower class id). Files the lexer rejects (a few deliberately broken test files) are skipped.

Sampling: each example first draws its class uniformly, then a window start uniformly among that class's
windows, so the classes are balanced in expectation (majority-class accuracy ≈ 1/3) while each class keeps its
natural variety. Examples come in seeded chunks, so ``make(cfg, seed, n)`` is a prefix of ``make(cfg, seed, m)``
(nested training sets). The label distribution of the natural (unbalanced) windows is ``label_shares``; the
trivial rules are the majority class and the nearest class centroid of byte histograms (``TRIVIAL_RULES``
needs no fit of its own: ``centroid_accuracy`` fits on a training split). docs/sweeps.md#data_scaling.
"""
from __future__ import annotations

import functools
import io
import tokenize
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from bench.config import ConfigError
from bench.tasks import TaskConfig, TaskData, check_request, chunk_rng
from bench.tasks import text_bytes

CLASSES = ("code", "string", "comment")
TOKEN_CLASS = {tokenize.STRING: 1, tokenize.COMMENT: 2}  # every other token (and the gaps between) is code
CHUNK = 256  # examples per seeded chunk


@dataclass(frozen=True)
class Config(TaskConfig):
    """Classify a byte window of a stdlib .py file as mostly code, string or comment."""

    head: ClassVar[str] = "classify"
    causal: ClassVar[bool] = False
    seq_len: int = 64  # bytes per window
    max_pool_bytes: int = 2_000_000  # most bytes read per split

    @property
    def vocab_size(self) -> int:
        return 256

    @property
    def n_classes(self) -> int:
        return len(CLASSES)

    def validate(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"text_kind: seq_len must be >= 1, got {self.seq_len}")
        if self.max_pool_bytes < 100 * self.seq_len:
            raise ConfigError(f"text_kind: max_pool_bytes={self.max_pool_bytes} must hold at least 100 windows "
                              f"of seq_len={self.seq_len}")

    def source(self) -> text_bytes.Config:
        """The text_bytes Config over the same files (.py only) and byte cap: the pretraining text of a split."""
        return text_bytes.Config(seq_len=self.seq_len, max_pool_bytes=self.max_pool_bytes, suffixes=(".py",))


def byte_classes(source: bytes) -> np.ndarray:
    """(len(source),) class id of every byte of one Python file; ValueError when the lexer rejects it."""
    text = source.decode("utf-8")
    starts = np.cumsum([0] + [len(line) for line in io.StringIO(text)])  # char offset of each row, as tokenize reads
    labels = np.zeros(len(text), dtype=np.int8)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            cls = TOKEN_CLASS.get(tok.type)
            if cls:
                labels[starts[tok.start[0] - 1] + tok.start[1]: starts[tok.end[0] - 1] + tok.end[1]] = cls
    except (tokenize.TokenError, SyntaxError, IndexError) as exc:
        raise ValueError(f"tokenize rejects the file: {exc}") from None
    if text.isascii():
        return labels
    return np.repeat(labels, [len(ch.encode("utf-8")) for ch in text])  # chars -> their utf-8 bytes


@functools.lru_cache(maxsize=6)
def labelled_pool(cfg: Config, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, class per byte) of ``split``'s lexable .py files in hash order, cut at ``max_pool_bytes``."""
    data, labels, size = [], [], 0
    for path in text_bytes.list_files(cfg.source(), split):
        if size >= cfg.max_pool_bytes:
            break
        raw = path.read_bytes()
        try:
            cls = byte_classes(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        keep = cfg.max_pool_bytes - size
        data.append(np.frombuffer(raw[:keep], dtype=np.uint8))
        labels.append(cls[:keep])
        size += min(len(raw), keep)
    return np.concatenate(data), np.concatenate(labels)


@functools.lru_cache(maxsize=6)
def window_labels(cfg: Config, split: str) -> np.ndarray:
    """(n_windows,) the majority class of the window starting at each offset of ``split``'s pool."""
    _, labels = labelled_pool(cfg, split)
    onehot = np.eye(len(CLASSES), dtype=np.int32)[labels]  # (N, K)
    counts = np.cumsum(np.vstack([np.zeros((1, len(CLASSES)), np.int32), onehot]), axis=0)  # (N + 1, K)
    return (counts[cfg.seq_len:] - counts[:-cfg.seq_len]).argmax(axis=1)  # (N - T + 1,)


def label_shares(cfg: Config, split: str) -> dict[str, float]:
    """The share of each class among all windows of ``split`` (the natural distribution, before balancing)."""
    counts = np.bincount(window_labels(cfg, split), minlength=len(CLASSES))
    return {name: float(c / counts.sum()) for name, c in zip(CLASSES, counts)}


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` class-balanced windows of ``split``: x (n, T) bytes, y (n,) class ids, valid all True."""
    index = check_request(cfg, seed, n, split)
    data, _ = labelled_pool(cfg, split)
    by_class = [np.flatnonzero(window_labels(cfg, split) == c) for c in range(len(CLASSES))]
    if any(len(s) == 0 for s in by_class):
        raise ConfigError(f"text_kind: the {split} pool has no window of some class at seq_len={cfg.seq_len}")
    xs, ys = [], []
    for c in range(-(-n // CHUNK)):
        rng = chunk_rng(seed, index, c)
        y = rng.integers(0, len(CLASSES), size=CHUNK)
        starts = np.array([by_class[k][rng.integers(len(by_class[k]))] for k in y])
        xs.append(data[starts[:, None] + np.arange(cfg.seq_len)])  # (CHUNK, T)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)[:n].astype(np.int64))
    return TaskData(x, torch.from_numpy(np.concatenate(ys)[:n]), torch.ones(n, cfg.seq_len, dtype=torch.bool))


def byte_histograms(x: np.ndarray) -> np.ndarray:
    """(N, T) bytes -> (N, 256) normalised byte histograms."""
    counts = np.stack([np.bincount(row, minlength=256) for row in x]).astype(float)
    return counts / counts.sum(axis=1, keepdims=True)


def centroid_accuracy(train: TaskData, test: TaskData) -> float:
    """Accuracy of the nearest class centroid of byte histograms, fitted on ``train``: a bag-of-bytes rule."""
    h_train, h_test = byte_histograms(train.x.numpy()), byte_histograms(test.x.numpy())
    y = train.y.numpy()
    centroids = np.stack([h_train[y == k].mean(axis=0) if (y == k).any() else np.full(256, np.inf)
                          for k in range(len(CLASSES))])  # (K, 256)
    guess = ((h_test[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    return float((guess == test.y.numpy()).mean())
