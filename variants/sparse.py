"""Sparse attention computed blockwise: each query block sees a few key blocks, never the T×T matrix.

Both variants describe their pattern as a *layout* and share one engine, ``variants.block_sparse``. The sequence is
cut into ``nb = ceil(T / b)`` query blocks of ``b`` tokens (the last one zero-padded); a layout gives every query
block the same number ``nk`` of key positions (its "tile"): neighbouring blocks for the sliding window, then random
blocks, then the global tokens, with an exact mask per tile entry for the band, causality, the sequence end and
de-duplication. Time and memory are O(T · nk) = O(T · w) for a fixed pattern, which is what the suite measures.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, check_positive, register, softmax_av, softmax_map
from .block_sparse import memo_layout, memo_tiles, tile_attend, tile_memory

LONGFORMER = Paper("Longformer: The Long-Document Transformer", 2020, "2004.05150")
BIGBIRD = Paper("Big Bird: Transformers for Longer Sequences", 2020, "2007.14062")


# ------------------------------------------------------------------------------------------------ block geometry

def _geometry(T: int, b: int, window: int) -> tuple[int, int, int]:
    """(b, nb, r): block size clipped to T, number of blocks, neighbour blocks reached on each side.

    ``r = ceil(window / b)`` blocks cover a one-sided reach of ``window`` tokens; it is clipped to ``nb - 1``
    so a window covering T costs one dense pass and no padding blocks.
    """
    b = min(b, T)
    nb = -(-T // b)
    r = min(-(-window // b), nb - 1)
    return b, nb, r


def _n_offsets(r: int, causal: bool) -> int:
    """Window blocks per query block: r before, itself and (non-causal) r after."""
    return r + 1 if causal else 2 * r + 1


def _candidate_counts(nb: int, r: int, n_gb: int, causal: bool) -> Tensor:
    """(nb,) how many key blocks each query block may draw at random.

    Candidates are blocks outside the window blocks [i-r, i+r] and outside the ``n_gb`` blocks made only of
    global tokens; causal keeps only blocks wholly before the window (the past).
    """
    i = torch.arange(nb)
    lo = (i - r).clamp(min=n_gb)
    if causal:
        return (lo - n_gb).clamp(min=0)
    hi = (i + r).clamp(max=nb - 1)
    return (nb - n_gb) - (hi - lo + 1).clamp(min=0)


def _random_slots(nb: int, r: int, n_gb: int, causal: bool, n_random: int) -> int:
    """Random key blocks actually gathered per query block: no more than any query block can use."""
    if n_random == 0 or nb == 0:
        return 0
    return min(n_random, int(_candidate_counts(nb, r, n_gb, causal).max()))


def _draw_without_replacement(counts: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """(nb, n) long: per row, ``min(n, counts[row])`` distinct uniform draws from ``range(counts[row])``; -1 pads.

    Robert Floyd's algorithm, vectorised over rows: step j in N-n .. N-1 draws t in [0, j] and keeps t, or j if
    t was kept already. Rows with N < n are inactive for their first n - N steps, so their draws sit at the end.
    Every row consumes the generator identically, so the layout depends only on (seed, nb, counts).
    """
    nb = counts.shape[0]
    sel = torch.full((nb, n), -1, dtype=torch.long)
    for s in range(n):
        j = counts - n + s  # (nb,)
        u = torch.rand(nb, generator=gen, dtype=torch.float64)
        t = torch.minimum((u * (j + 1).clamp(min=1)).long(), j.clamp(min=0))
        dup = (sel[:, :s] == t[:, None]).any(dim=1)
        sel[:, s] = torch.where(j >= 0, torch.where(dup, j, t), torch.full_like(t, -1))
    return sel


def _random_blocks(nb: int, r: int, n_gb: int, causal: bool, slots: int, seed: int) -> Tensor:
    """(nb, slots) long: block ids drawn at random per query block, -1 for an unused slot; seeded, CPU."""
    counts = _candidate_counts(nb, r, n_gb, causal)
    gen = torch.Generator().manual_seed(seed)
    cand = _draw_without_replacement(counts, slots, gen)  # (nb, slots) candidate index, -1 unused
    i = torch.arange(nb)[:, None]
    lo = (i - r).clamp(min=n_gb)
    hi = (i + r).clamp(max=nb - 1)
    block = cand + n_gb
    if not causal:  # skip the window blocks [lo, hi] inside the candidate range
        block = torch.where(block >= lo, block + (hi - lo + 1).clamp(min=0), block)
    return torch.where(cand >= 0, block, torch.full_like(block, -1))


# ------------------------------------------------------------------------------------------------------ layout

def _block_positions(blocks: Tensor, b: int) -> Tensor:
    """(nb, m) block ids -> (nb, m·b) absolute key positions, block by block."""
    t = torch.arange(b, device=blocks.device)
    return (blocks[:, :, None] * b + t).reshape(blocks.shape[0], -1)  # (nb, m, b) -> (nb, m·b)


def build_layout(T: int, b: int, window: int, causal: bool, n_global: int = 0,
                 rand_blocks: Tensor | None = None, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Key positions (nb, nk) long and the allow-mask (nb, b, nk) bool for every query block.

    Tile columns: window blocks, then random blocks, then the ``n_global`` global tokens. A key below
    ``n_global`` is allowed only in the global columns, so a key reached twice is counted once. Positions outside
    [0, T) and unused random slots are masked. ``b`` is clipped to T as in ``_geometry``.
    """
    b, nb, r = _geometry(T, b, window)
    g = min(n_global, T)
    blk = torch.arange(nb, device=device)
    offs = torch.arange(-r, 1 if causal else r + 1, device=device)
    win = _block_positions(blk[:, None] + offs, b)  # (nb, n_off·b)
    # an unused random slot (block -1) gives positions -b .. -1, which the `rnd >= g` test masks
    rnd = win[:, :0] if rand_blocks is None else _block_positions(rand_blocks.to(device), b)  # (nb, slots·b)
    glob = torch.arange(g, device=device).expand(nb, g)  # (g,) -> (nb, g)
    qpos = (blk[:, None] * b + torch.arange(b, device=device))[:, :, None]  # (nb, b, 1)
    d = qpos - win[:, None, :]  # (nb, b, n_off·b): query minus key
    band = (d <= window) & (d >= 0 if causal else d >= -window)
    win_ok = band & (win >= g)[:, None, :] & (win < T)[:, None, :]
    rnd_ok = ((rnd >= g) & (rnd < T))[:, None, :].expand(nb, b, -1)
    glob_ok = torch.ones(nb, b, g, dtype=torch.bool, device=device)
    if causal:
        rnd_ok = rnd_ok & (qpos >= rnd[:, None, :])
        glob_ok = qpos >= glob[:, None, :]
    kpos = torch.cat([win, rnd, glob], dim=1)  # (nb, nk)
    allow = torch.cat([win_ok, rnd_ok, glob_ok], dim=2)  # (nb, b, nk)
    return kpos, allow


def dense_pattern(kpos: Tensor, allow: Tensor, T: int) -> Tensor:
    """(T, T) bool scattered from a layout: for tests and pictures only (it is O(T²) on purpose)."""
    nb, b, nk = allow.shape
    qpos = (torch.arange(nb, device=kpos.device)[:, None] * b + torch.arange(b, device=kpos.device))
    q_idx = qpos[:, :, None].expand(nb, b, nk)[allow]
    k_idx = kpos[:, None, :].expand(nb, b, nk)[allow]
    pattern = torch.zeros(nb * b, T, dtype=torch.bool, device=kpos.device)
    pattern[q_idx, k_idx] = True
    return pattern[:T]


# -------------------------------------------------------------------------------------------- sliding window

def pattern_map(attn: Attention, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
    """The softmax weights over the keys the variant's pattern lets each query see, padding masked: (B, H, T, T)
    (``Attention.effective_map``; the pattern is what the tile engine computes, checked in tests)."""
    allow = attn.pattern(q.shape[-2]).to(q.device)  # (T, T)
    if key_valid is not None:
        allow = allow & key_valid[:, None, None, :]  # (B, T) -> (B, 1, T, T)
    return softmax_map(q, k, allow)


def window_flops(B: int, H: int, T: int, D: int, *, causal: bool, window: int) -> int:
    """Blocks of b = min(w, T); each sees r = 1 block each side (0 when one block covers T): 4·B·H·nb·b·nk·D."""
    b, nb, r = _geometry(T, window, window)
    return 4 * B * H * nb * b * (_n_offsets(r, causal) * b) * D


def window_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, window: int) -> int:
    """``tile_memory`` of the banded engine: k and v padded by r blocks before (and, non-causal, after) the
    sequence, tiles of (b × n_off·b) scores per group: O(B·H·T·D) + one group."""
    b, nb, r = _geometry(T, window, window)
    kv_rows = (nb + (r if causal else 2 * r)) * b
    return tile_memory(B, H, T, D, nb, b, _n_offsets(r, causal) * b, elem_bytes, kv_rows)


@register
class WindowAttention(Attention):
    """Sliding-window (local) attention: query i sees keys j with |i - j| <= w (causal: 0 <= i - j <= w).

    Beltagy, Peters & Cohan, "Longformer" (2020, arXiv:2004.05150), the sliding-window part without Longformer's
    global tokens or dilation (Child et al. 2019, arXiv:1904.10509, use fixed/strided patterns instead, so
    Longformer is the paper for a pure sliding band). O(T·w) time and memory.

    Deviations: ``window`` is the one-sided reach w (Longformer's window is the two-sided width, 2w here + 1).
    Computed on blocks of b = min(w, T): each query block sees its own and the r = 1 neighbouring key blocks
    (a b × 3b tile, two-thirds useful), with the exact band masked inside; Longformer's custom CUDA kernel
    computes only the band diagonals. With w >= T this is one dense tile and equals full attention.
    """

    spec = AttentionSpec(
        name="sparse_window", family="sparse", time_complexity="O(T·w·D)", memory_complexity="O(T·w)",
        exact=False, supports_causal=True, supports_key_valid=True, paper=LONGFORMER,
        flops=window_flops, memory_bytes=window_memory, default_params={"window": 64},
        time_exponent=1.0, memory_exponent=1.0,
    )

    effective_map = torch.no_grad()(pattern_map)

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        check_positive(self.spec.name, window=self.params["window"])

    def layout(self, T: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Key positions (nb, nk) and allow-mask (nb, b, nk) for length T."""
        w = self.params["window"]
        b, _, _ = _geometry(T, w, w)
        return memo_layout(self, T, device, lambda: build_layout(T, b, w, self.causal, device=device))

    def pattern(self, T: int) -> Tensor:
        """(T, T) bool: which keys each query may see. For tests only."""
        return dense_pattern(*self.layout(T), T)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        T, w = q.shape[-2], self.params["window"]
        m = _n_offsets(_geometry(T, w, w)[2], self.causal)  # key blocks per tile
        return tile_attend(q, k, v, key_valid, memo_tiles(self, T, q.device, q.dtype, m))


# ---------------------------------------------------------------------------------------------------- BigBird

def _bigbird_shape(T: int, causal: bool, block_size: int, window: int, n_global: int,
                   n_random: int) -> tuple[int, int, int, int, int]:
    """(b, nb, r, slots, g): block size, blocks, window reach in blocks, random slots, global tokens."""
    b, nb, r = _geometry(T, block_size, window)
    g = min(n_global, T)
    return b, nb, r, _random_slots(nb, r, g // b, causal, n_random), g


def bigbird_flops(B: int, H: int, T: int, D: int, *, causal: bool, block_size: int, window: int, n_global: int,
                  n_random: int, seed: int) -> int:
    """Tiles of nk = (window blocks + random slots)·b + g keys, plus g dense global query rows (non-causal)."""
    b, nb, r, slots, g = _bigbird_shape(T, causal, block_size, window, n_global, n_random)
    nk = (_n_offsets(r, causal) + slots) * b + g
    dense = 0 if causal else 4 * B * H * g * T * D
    return 4 * B * H * nb * b * nk * D + dense


def bigbird_memory(B: int, H: int, T: int, D: int, *, causal: bool, elem_bytes: int, block_size: int, window: int,
                   n_global: int, n_random: int, seed: int) -> int:
    """``tile_memory`` of the gathering engine (window + random blocks + global tokens per tile). Non-causal, the
    block output and the (B, H, T, D) ``cat`` that puts the dense global rows in front of it are alive together
    after the group buffers are freed, so the peak is the larger of the two, plus the g × T scores and
    probabilities of the global rows.
    """
    b, nb, r, slots, g = _bigbird_shape(T, causal, block_size, window, n_global, n_random)
    nk = (_n_offsets(r, causal) + slots) * b + g
    tiles = tile_memory(B, H, T, D, nb, b, nk, elem_bytes, None)
    if causal:
        return tiles
    block_out = B * H * T * D * elem_bytes
    return max(tiles, 2 * block_out) + 2 * B * H * g * T * elem_bytes


@register
class BigBirdAttention(Attention):
    """Block-sparse window + global + random attention (BigBird-ITC pattern). O(T) for fixed params.

    Zaheer et al., "Big Bird: Transformers for Longer Sequences" (2020, arXiv:2007.14062). Every query block of
    ``block_size`` tokens sees: the keys within ``window`` tokens (|i - j| <= w, realised on ceil(w/b) neighbour
    blocks and masked exactly), ``n_random`` key blocks drawn without replacement from the blocks outside its
    window (seeded, fixed per T), and the first ``n_global`` tokens; those global tokens attend to every key.
    Each key is counted once per query even when several parts reach it.

    Deviations: global tokens are the first ``n_global`` tokens, not whole global blocks; the window is in tokens
    (the paper's is 3 blocks); random blocks are re-drawn per T from ``seed`` rather than per layer/step.
    Causal (an extension; the paper's decoder is not specified this way): the window looks back only, random
    blocks are drawn from wholly-past blocks, and global queries see only their past, which the block path
    already gives (so no dense global rows are computed). With window >= T it equals full attention.
    """

    spec = AttentionSpec(
        name="sparse_bigbird", family="sparse", time_complexity="O(T·(w + r·b + g)·D)",
        memory_complexity="O(T·(w + r·b + g))", exact=False, supports_causal=True, supports_key_valid=True,
        paper=BIGBIRD, flops=bigbird_flops, memory_bytes=bigbird_memory,
        default_params={"block_size": 32, "window": 32, "n_global": 2, "n_random": 2, "seed": 0},
        time_exponent=1.0, memory_exponent=1.0,
    )

    effective_map = torch.no_grad()(pattern_map)

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        p = self.params
        check_positive(self.spec.name, block_size=p["block_size"], window=p["window"])
        for label in ("n_global", "n_random", "seed"):
            value = p[label]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{self.spec.name}: {label} must be an int >= 0, got {value!r}")

    def _shape(self, T: int) -> tuple[int, int, int, int, int]:
        p = self.params
        return _bigbird_shape(T, self.causal, p["block_size"], p["window"], p["n_global"], p["n_random"])

    def random_blocks(self, T: int) -> Tensor | None:
        """(nb, slots) long: the key blocks each query block drew at random from ``seed`` (-1: an unused slot);
        None when no query block has a block to draw."""
        b, nb, r, slots, g = self._shape(T)
        return _random_blocks(nb, r, g // b, self.causal, slots, self.params["seed"]) if slots else None

    def layout(self, T: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Key positions (nb, nk) and allow-mask (nb, b, nk) for length T, random blocks drawn from ``seed``."""
        b, _, _, _, g = self._shape(T)

        def build() -> tuple[Tensor, Tensor]:
            return build_layout(T, b, self.params["window"], self.causal, g, self.random_blocks(T), device)
        return memo_layout(self, T, device, build)

    def pattern(self, T: int) -> Tensor:
        """(T, T) bool: which keys each query may see, global query rows included. For tests only."""
        pattern = dense_pattern(*self.layout(T), T)
        if not self.causal:
            pattern[: min(self.params["n_global"], T)] = True
        return pattern

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        T = q.shape[-2]
        _, _, r, slots, _ = self._shape(T)
        m = _n_offsets(r, self.causal) + slots  # key blocks per tile, before the global tokens
        out = tile_attend(q, k, v, key_valid, memo_tiles(self, T, q.device, q.dtype, m))
        g = min(self.params["n_global"], q.shape[-2])
        if self.causal or g == 0:
            return out
        return torch.cat([self._global_rows(q[:, :, :g], k, v, key_valid), out[:, :, g:]], dim=2)

    @staticmethod
    def _global_rows(qg: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        """The g global queries attend densely to all T keys: (B, H, g, D), O(g·T)."""
        scores = (qg * (1.0 / math.sqrt(qg.shape[-1]))) @ k.transpose(-2, -1)  # -> (B, H, g, T)
        mask = None if key_valid is None else key_valid[:, None, None, :]  # (B, T) -> (B, 1, 1, T)
        return softmax_av(scores, v, mask)
