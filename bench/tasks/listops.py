"""ListOps: 10-way classification of the value of a nested prefix expression over digits.

Sources: Nangia & Bowman 2018, "ListOps: A Diagnostic Dataset for Latent Tree Learning", arXiv 1804.06028;
the Long Range Arena generator, Tay et al. 2020, arXiv 2011.04006, ``lra_benchmarks/data/listops.py``
(operators MIN, MAX, MED, SM = sum mod 10; VALUE_P = 0.25; defaults max_depth 10, max_args 10, lengths
500-2000). Example: ``[MAX 2 9 [MIN 4 7 ] 0 ]`` has value 9.

Generation follows LRA's ``generate_tree``: at depth < max_depth a node is an operator with probability
VALUE_P (else a digit); an operator takes ``randint(2, max_args)`` sub-trees, then picks its operator; trees are
drawn until their token count lies in ``[min_len, max_len]``. Deviations: bounds are inclusive (LRA's are
strict); a tree is abandoned as soon as it exceeds max_len (same accepted distribution, less work); the LRA
parentheses are not emitted (its input pipeline strips them); duplicates are removed across splits by the
split hash (LRA de-duplicates the whole set) but not within a split. MED is ``int(numpy.median)``, i.e. the
mean of the two middle values truncated for even counts, as LRA. Labels are not balanced (as LRA).

Tokens: 0 pad, 1..10 the digits 0..9, then ``[MIN [MAX [MED [SM ]``. Rows are padded to ``max_len``.
"""
from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass
from typing import ClassVar, Sequence, Union

import numpy as np

from bench.config import ConfigError
from bench.tasks import TaskConfig, TaskData, check_request, fill_split

VALUE_P = 0.25
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
PAD = "<pad>"
TOKENS = (PAD, *"0123456789", *OPERATORS, END)
TOKEN_ID = {tok: i for i, tok in enumerate(TOKENS)}
MAX_ATTEMPTS = 100_000  # trees drawn per example before the length window is declared unreachable

Tree = Union[int, tuple[str, list["Tree"]]]


@dataclass(frozen=True)
class Config(TaskConfig):
    """ListOps (Nangia & Bowman 2018): the value of a nested MIN/MAX/MED/SM expression."""

    head: ClassVar[str] = "classify"
    causal: ClassVar[bool] = False
    max_depth: int = 10  # deepest nesting of operators
    max_args: int = 10  # most arguments of one operator
    min_len: int = 64  # shortest expression in tokens
    max_len: int = 256  # longest expression in tokens (T)

    @property
    def seq_len(self) -> int:
        return self.max_len

    @property
    def vocab_size(self) -> int:
        return len(TOKENS)

    @property
    def n_classes(self) -> int:
        return 10

    def validate(self) -> None:
        if not 1 <= self.max_depth <= 50:
            raise ConfigError(f"listops: max_depth must be in [1, 50], got {self.max_depth}")
        if self.max_args < 2:
            raise ConfigError(f"listops: max_args must be >= 2, got {self.max_args}")
        if not 1 <= self.min_len <= self.max_len:
            raise ConfigError(f"listops: need 1 <= min_len <= max_len, got min_len={self.min_len} "
                              f"max_len={self.max_len}")
        if self.min_len > longest(self.max_depth, self.max_args):
            raise ConfigError(f"listops: min_len={self.min_len} exceeds the longest expression "
                              f"({longest(self.max_depth, self.max_args)} tokens) at max_depth={self.max_depth}, "
                              f"max_args={self.max_args}")


def longest(max_depth: int, max_args: int) -> int:
    """Token count of the largest tree the generator can produce (every node a full operator)."""
    length = 1
    for _ in range(max_depth - 1):
        length = 2 + max_args * length
    return length


def apply(op: str, args: Sequence[int]) -> int:
    """Value of one operator over digit arguments."""
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return int(statistics.median(args))
    if op == "[SM":
        return sum(args) % 10
    raise ValueError(f"unknown operator {op!r}")


def value(tree: Tree) -> int:
    """Value of a generated tree, by recursion on the tree."""
    if isinstance(tree, int):
        return tree
    op, children = tree
    return apply(op, [value(c) for c in children])


def to_tokens(tree: Tree) -> list[str]:
    """Token strings of a tree, e.g. ``['[SM', '5', '6', ']']``."""
    if isinstance(tree, int):
        return [str(tree)]
    op, children = tree
    return [op, *(tok for c in children for tok in to_tokens(c)), END]


def tokenize(expr: str) -> list[str]:
    """``"[MED 1 2 3]"`` -> ``['[MED', '1', '2', '3', ']']``; parentheses (LRA's tsv) are dropped."""
    return re.findall(r"\[[A-Z]+|\]|\d", expr)


def evaluate(expr: Union[str, Sequence[str]]) -> int:
    """Value of an expression given as text or token strings, by a stack parse independent of the tree."""
    tokens = tokenize(expr) if isinstance(expr, str) else [t for t in expr if t != PAD]
    stack: list[list] = [[None, []]]  # frames of [operator, argument values]; the bottom frame holds the result
    for tok in tokens:
        if tok in OPERATORS:
            stack.append([tok, []])
        elif tok == END:
            op, args = stack.pop()
            stack[-1][1].append(apply(op, args))
        else:
            stack[-1][1].append(int(tok))
    if len(stack) != 1 or len(stack[0][1]) != 1:
        raise ValueError(f"malformed expression: {' '.join(tokens)!r}")
    return stack[0][1][0]


def decode(ids: Sequence[int]) -> list[str]:
    """Token ids -> token strings, padding dropped."""
    return [TOKENS[int(i)] for i in ids if int(i) != TOKEN_ID[PAD]]


class _TooLong(Exception):
    pass


def _grow(rnd: random.Random, depth: int, cfg: Config, used: list[int]) -> Tree:
    """LRA's ``generate_tree``; ``used[0]`` counts tokens and aborts past ``max_len``."""
    if depth < cfg.max_depth and rnd.random() <= VALUE_P:
        used[0] += 2
        children = [_grow(rnd, depth + 1, cfg, used) for _ in range(rnd.randint(2, cfg.max_args))]
        return rnd.choice(OPERATORS), children
    used[0] += 1
    if used[0] > cfg.max_len:
        raise _TooLong
    return rnd.randrange(10)


def sample_tree(rnd: random.Random, cfg: Config) -> Tree:
    """One tree whose token count is in ``[min_len, max_len]`` (rejection sampling, as LRA)."""
    for _ in range(MAX_ATTEMPTS):
        used = [0]
        try:
            tree = _grow(rnd, 1, cfg, used)
        except _TooLong:
            continue
        if used[0] >= cfg.min_len:
            return tree
    raise ConfigError(f"listops: no expression of {cfg.min_len}..{cfg.max_len} tokens in {MAX_ATTEMPTS} draws "
                      f"at max_depth={cfg.max_depth}, max_args={cfg.max_args}; widen the length window")


def _draw(cfg: Config, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rnd = random.Random(int(rng.integers(2**63)))
    x = np.zeros((m, cfg.max_len), dtype=np.int64)  # PAD = 0
    y = np.zeros(m, dtype=np.int64)
    for i in range(m):
        tree = sample_tree(rnd, cfg)
        ids = [TOKEN_ID[t] for t in to_tokens(tree)]
        x[i, :len(ids)] = ids
        y[i] = value(tree)
    return x, y, x != TOKEN_ID[PAD]


def make(cfg: Config, seed: int, n: int, split: str = "train") -> TaskData:
    """``n`` expressions for ``split``: x (n, max_len) padded with 0, y (n,) values 0..9, valid = not padding."""
    check_request(cfg, seed, n, split)
    return fill_split(lambda rng, m: _draw(cfg, rng, m), n, seed, split, chunk=64)
