"""Byte-level language modelling on text that ships with Python: the interpreter's own standard library.

Sources: byte-level LM as in enwik8 / text8 character modelling (Al-Rfou et al. 2018, "Character-Level
Language Modeling with Deeper Self-Attention", arXiv 1808.04444) and the LRA byte-level text task (Tay et al.
2020, arXiv 2011.04006); bits per byte as their metric. The corpus is local, so nothing is downloaded: the
``.py`` sources and ``.txt`` / ``.rst`` files under ``sysconfig.get_paths()["stdlib"]``, skipping
``site-packages``, ``dist-packages`` and ``__pycache__`` (installed third-party code is not the stdlib).

Splits are BY FILE: a file's split is a BLAKE2b hash of its path relative to the stdlib root (80% train, 10% val,
10% test), so no file feeds two splits. Within a split files are read in hash order (a deterministic shuffle, so
a cap does not keep only the alphabetically first modules) and concatenated until ``max_pool_bytes``; the last
file is truncated at the cap. Windows of ``seq_len + 1`` bytes start at seeded uniform offsets; ``x`` is the
first ``seq_len`` bytes and ``y`` the next byte at every position. The data depends on the Python version that
runs it (its stdlib is the corpus); record ``sys.version`` with results.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from bench.config import ConfigError
from bench.tasks import TaskConfig, SPLITS, TaskData, check_request, chunk_rng

SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
SPLIT_OF_BUCKET = ("train",) * 8 + ("val", "test")  # path hash % 10 -> split


@dataclass(frozen=True)
class Config(TaskConfig):
    """Next-byte prediction on text shipped with Python, split by file."""

    seq_len: int = 256  # bytes per window
    max_pool_bytes: int = 2_000_000  # most bytes read per split
    suffixes: tuple[str, ...] = (".py", ".txt", ".rst")  # file kinds read

    @property
    def vocab_size(self) -> int:
        return 256

    def validate(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"text_bytes: seq_len must be >= 1, got {self.seq_len}")
        if self.max_pool_bytes < self.seq_len + 1:
            raise ConfigError(f"text_bytes: max_pool_bytes={self.max_pool_bytes} cannot hold one window of "
                              f"seq_len + 1 = {self.seq_len + 1} bytes")
        if not self.suffixes or not all(s.startswith(".") for s in self.suffixes):
            raise ConfigError(f"text_bytes: suffixes must be non-empty and start with '.', got {self.suffixes}")


def stdlib_root() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def _digest(rel: str) -> int:
    return int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "little")


def _all_files(root: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Relative POSIX paths of regular (non-link) text files under ``root``, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            path = Path(dirpath, name)
            if path.suffix in suffixes and path.is_file() and not path.is_symlink():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def list_files(cfg: Config, split: str) -> list[Path]:
    """Absolute paths of ``split``'s files, in the (hash) order the pool reads them."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    root = stdlib_root()
    rels = [r for r in _all_files(root, cfg.suffixes) if SPLIT_OF_BUCKET[_digest(r) % 10] == split]
    return [root / r for r in sorted(rels, key=lambda r: (_digest(r), r))]


@functools.lru_cache(maxsize=8)
def pool(cfg: Config, split: str) -> bytes:
    """``split``'s files concatenated in hash order, cut at ``cfg.max_pool_bytes``."""
    parts, size = [], 0
    for path in list_files(cfg, split):
        if size >= cfg.max_pool_bytes:
            break
        data = path.read_bytes()[: cfg.max_pool_bytes - size]
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def bits_per_byte(loss_nats: Union[float, torch.Tensor]) -> Union[float, torch.Tensor]:
    """Mean next-byte cross-entropy in nats -> bits per byte."""
    return loss_nats / math.log(2)


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` windows from ``split``'s pool: x (n, T) bytes, y (n, T) the next byte, valid all True."""
    index = check_request(cfg, seed, n, split)
    data = np.frombuffer(pool(cfg, split), dtype=np.uint8)
    T = cfg.seq_len
    if len(data) < T + 1:
        raise ConfigError(f"text_bytes: the {split} pool has {len(data)} bytes, fewer than seq_len + 1 = {T + 1}")
    starts = chunk_rng(seed, index).integers(0, len(data) - T, size=n)  # (n,)
    windows = torch.from_numpy(data[starts[:, None] + np.arange(T + 1)].astype(np.int64))  # (n, T + 1)
    return TaskData(windows[:, :-1].contiguous(), windows[:, 1:].contiguous(), torch.ones(n, T, dtype=torch.bool))
