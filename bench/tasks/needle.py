"""Needle at a controlled distance: the answer is a token exactly ``distance`` positions before the question.

Source: a controlled-distance variant of the passkey / needle-in-a-haystack retrieval tests (Mohtashami &
Jaggi 2023, "Landmark Attention", arXiv 2305.16300, passkey retrieval; Kamradt 2023, "Needle in a Haystack").
Unlike those, the gap between needle and question is a knob, not a by-product of document length, so the task
separates mechanisms by reach: a stack whose receptive field (layers x window for sliding-window attention) is
smaller than ``distance`` has no path from the needle to the question, while full attention has one.

Vocabulary: ``0`` is the QUERY token, ``1 .. n_values`` are needle values, the next ``n_filler`` ids are filler.
One row: uniform filler; the needle value at a uniform position ``p`` in ``[0, T - 1 - distance]``; QUERY at
``p + distance``. Head: a token head with ONE scored position: ``y[p + distance]`` is the needle's value (the
token a causal LM should emit after QUERY); every other target is ``IGNORE``. Filler never uses value or QUERY
ids, so the needle and the question are unique in each row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import ConfigError
from bench.tasks import TaskConfig, IGNORE, TaskData, check_request, fill_split

QUERY = 0


@dataclass(frozen=True)
class Config(TaskConfig):
    """One value to retrieve from a fixed distance back through filler tokens."""

    seq_len: int = 256  # tokens per example
    distance: int = 64  # positions between the needle and the query
    n_values: int = 16  # distinct needle values (the classes)
    n_filler: int = 32  # distinct filler tokens

    @property
    def vocab_size(self) -> int:
        return 1 + self.n_values + self.n_filler

    def validate(self) -> None:
        if not 1 <= self.distance < self.seq_len:
            raise ConfigError(f"needle: distance must be in [1, seq_len - 1] = [1, {self.seq_len - 1}], "
                              f"got {self.distance}")
        if self.n_values < 2:
            raise ConfigError(f"needle: n_values must be >= 2, got {self.n_values}")
        if self.n_filler < 1:
            raise ConfigError(f"needle: n_filler must be >= 1, got {self.n_filler}")


def _draw(cfg: Config, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T, first_filler = cfg.seq_len, 1 + cfg.n_values
    x = rng.integers(first_filler, first_filler + cfg.n_filler, size=(m, T))
    value = rng.integers(1, 1 + cfg.n_values, size=m)  # (m,)
    p = rng.integers(0, T - cfg.distance, size=m)  # needle position, so that p + distance <= T - 1
    rows = np.arange(m)
    x[rows, p] = value
    x[rows, p + cfg.distance] = QUERY
    y = np.full((m, T), IGNORE, dtype=np.int64)
    y[rows, p + cfg.distance] = value
    return x, y, np.ones((m, T), dtype=bool)


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` rows for ``split``: x (n, T), y (n, T) scored only at the QUERY position, valid all True."""
    check_request(cfg, seed, n, split)
    return fill_split(lambda rng, m: _draw(cfg, rng, m), n, seed, split)
