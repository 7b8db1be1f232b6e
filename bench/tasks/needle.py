"""Needles with distractors: key–value needles scattered in filler, then questions naming some of them.

Source: the multi-key / multi-query needle-in-a-haystack tasks of RULER (Hsieh et al. 2024, "RULER: What's the
Real Context Size of Your Long-Context Language Models?", arXiv 2404.06654, MK-NIAH and MQ-NIAH), themselves
extensions of passkey retrieval (Mohtashami & Jaggi 2023, arXiv 2305.16300). Here needles are token pairs, not
sentences, and how far back they may sit is a knob.

Vocabulary: ``0`` is QUERY; then ``n_keys`` key ids, ``n_values`` value ids and ``n_filler`` filler ids.
One row of length T with Q = ``n_queries`` and a haystack of H = ``max_distance`` positions::

    f f f f f | f k2 v2 f f k1 v1 f k3 v3 f f k4 v4 | QUERY k3 QUERY k1 ... | f f f f
    <- filler -><------------ haystack (H) ---------><---- 2Q questions ----><- filler ->

``n_needles`` pairs (key, value) sit at non-overlapping random places in the haystack; their keys are distinct,
and so are their values, within a row. The haystack and its questions sit at a uniformly random offset in the row
(``max_distance = 0``: the haystack is the whole row before the questions, at its end). The questions name Q
distinct needles in random order; the target at each question's key is that needle's value (the token a causal LM
emits next), every other target is ``IGNORE``. So every answer lies within H + 2Q positions before its question
whatever T is, and T sets how much context surrounds it. Answers never appear after their question (filler
never uses value ids). No rule that ignores which key is asked beats 1 / ``n_needles`` (tests/test_tasks.py holds
``TRIVIAL_RULES`` to that), and answers sit anywhere in the haystack, so no fixed offset finds them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import ConfigError
from bench.tasks import TaskConfig, IGNORE, TaskData, check_request, distinct, fill_split

QUERY = 0


@dataclass(frozen=True)
class Config(TaskConfig):
    """Key–value needles in filler and questions naming some; the answer to each: that needle's value."""

    seq_len: int = 256  # tokens per example
    n_needles: int = 4  # key-value pairs per row
    n_queries: int = 0  # questions per row, each naming a distinct needle (0: one per needle)
    n_keys: int = 16  # distinct key ids
    n_values: int = 16  # distinct value ids (the classes)
    n_filler: int = 16  # distinct filler ids
    max_distance: int = 0  # haystack length H: needles sit within H positions before the questions (0: all)

    @property
    def vocab_size(self) -> int:
        return 1 + self.n_keys + self.n_values + self.n_filler

    @property
    def first_value(self) -> int:
        return 1 + self.n_keys

    @property
    def queries(self) -> int:
        return self.n_queries or self.n_needles

    @property
    def haystack_len(self) -> int:
        return min(self.max_distance, self.seq_len - 2 * self.queries) if self.max_distance else \
            self.seq_len - 2 * self.queries

    def validate(self) -> None:
        if self.n_needles < 1 or self.n_needles > min(self.n_keys, self.n_values):
            raise ConfigError(f"needle: n_needles must be in [1, min(n_keys, n_values)] = "
                              f"[1, {min(self.n_keys, self.n_values)}], got {self.n_needles}")
        if not 0 <= self.n_queries <= self.n_needles:
            raise ConfigError(f"needle: n_queries must be in [0, n_needles = {self.n_needles}], got {self.n_queries}")
        if self.max_distance < 0:
            raise ConfigError(f"needle: max_distance must be >= 0, got {self.max_distance}")
        if self.haystack_len < 2 * self.n_needles:
            raise ConfigError(f"needle: a haystack of {max(self.haystack_len, 0)} positions (seq_len={self.seq_len}, "
                              f"max_distance={self.max_distance}, {self.queries} questions) cannot hold "
                              f"{self.n_needles} needles (needs {2 * self.n_needles})")
        if self.n_filler < 1:
            raise ConfigError(f"needle: n_filler must be >= 1, got {self.n_filler}")


def _draw(cfg: Config, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T, Q, H, N = cfg.seq_len, cfg.queries, cfg.haystack_len, cfg.n_needles
    first_filler = cfg.first_value + cfg.n_values
    x = rng.integers(first_filler, first_filler + cfg.n_filler, size=(m, T))
    start = rng.integers(0, T - H - 2 * Q + 1, size=(m, 1))  # where each row's haystack block begins
    # N non-overlapping pairs in H positions: stars and bars (N pairs among the H - 2N free positions)
    cuts = np.sort(distinct(rng, m, 0, H - N, N), axis=1)
    pair = start + cuts + np.arange(N)  # (m, N) key positions, in order; keys and values are random below
    keys = distinct(rng, m, 1, 1 + cfg.n_keys, N)
    values = distinct(rng, m, cfg.first_value, cfg.first_value + cfg.n_values, N)
    np.put_along_axis(x, pair, keys, axis=1)
    np.put_along_axis(x, pair + 1, values, axis=1)
    asked = distinct(rng, m, 0, N, Q)  # which needle each question names
    question = start + H + 2 * np.arange(Q)  # (m, Q) QUERY positions; each key follows its QUERY
    np.put_along_axis(x, question, 0 * question + QUERY, axis=1)
    np.put_along_axis(x, question + 1, np.take_along_axis(keys, asked, axis=1), axis=1)
    y = np.full((m, T), IGNORE, dtype=np.int64)
    np.put_along_axis(y, question + 1, np.take_along_axis(values, asked, axis=1), axis=1)
    return x, y, np.ones((m, T), dtype=bool)


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` rows for ``split``: x (n, T), y (n, T) scored at the questions' keys, valid all True."""
    check_request(cfg, seed, n, split)
    return fill_split(lambda rng, m: _draw(cfg, rng, m), n, seed, split)


# ----------------------------------------------------------------------------------- rules that do not retrieve

def _values(cfg: Config, x: np.ndarray) -> np.ndarray:
    return (x >= cfg.first_value) & (x < cfg.first_value + cfg.n_values)


def _nth_value(cfg: Config, x: np.ndarray, rows: np.ndarray, pick: int) -> np.ndarray:
    """The ``pick``-th value (0 first, -1 last) in each row, ignoring which key is asked."""
    is_value = _values(cfg, x)
    return np.array([x[r][is_value[r]][pick] for r in rows])


def _fixed_offset(cfg: Config, x: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The token half a haystack back from each question (a fixed-offset copy)."""
    return x[rows, np.maximum(positions - cfg.haystack_len // 2 - 1, 0)]


def _bag(cfg: Config, x: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A bag-of-tokens guess: the value whose id is closest to the asked key's, ignoring positions."""
    is_value = _values(cfg, x)
    keys = x[rows, positions]
    out = []
    for r, k in zip(rows, keys):
        vals = x[r][is_value[r]]
        out.append(vals[np.argmin(np.abs(vals - cfg.first_value - (k - 1)))])
    return np.array(out)


TRIVIAL_RULES = {
    "first value in the row": lambda cfg, x, rows, pos: _nth_value(cfg, x, rows, 0),
    "last value in the row": lambda cfg, x, rows, pos: _nth_value(cfg, x, rows, -1),
    "token at a fixed offset": _fixed_offset,
    "bag of tokens (nearest id)": _bag,
}
