"""Sparse attention computed blockwise: each query block sees a few key blocks, never the T×T matrix.

Both variants share one engine. The sequence is cut into ``nb = ceil(T / b)`` query blocks of ``b`` tokens (the
last one zero-padded). A *layout* gives every query block the same number ``nk`` of key positions (its "tile"):
neighbouring blocks for the sliding window, then random blocks, then the global tokens. Scores are
(b, nk) per query block, and an exact mask per tile entry applies the band, causality, the sequence end,
``key_valid`` and de-duplication. Time and memory are O(T · nk) = O(T · w) for a fixed pattern, which is what
the suite is meant to measure.

The engine (``tile_attend``) works through groups of query blocks sized to stay in cache (``GROUP_BYTES``): per
group, scores = q·kᵀ/√D (scaled inside the GEMM), plus a bias that is the most negative finite value at masked
entries, softmax, probabilities @ v. A sliding window's k/v tiles are overlapping strided views of the padded
k/v (no gather); other layouts gather their group's tile rows. Its backward is written by hand from the saved
probabilities (``_TileAttend``), so no k/v tile or score buffer for the whole sequence is ever alive. A row with
no allowed key (only padding queries or ``key_valid`` can make one) is uniform over its tile, finite, as the
interface allows.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attention, AttentionSpec, Paper, check_positive, register, softmax_av

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


def memo_layout(module: torch.nn.Module, T: int, device: torch.device | None, build: Callable[[], object],
                dtype: torch.dtype | None = None) -> object:
    """The layout depends only on (T, device) for a built module: build it once, not on every forward. With
    ``dtype``, a second entry per dtype (``memo_tiles``)."""
    cache = module.__dict__.setdefault("_layouts", {})
    key = (T, str(device)) if dtype is None else (T, str(device), dtype)
    if key not in cache:
        if len(cache) >= 16:
            cache.clear()
        cache[key] = build()
    return cache[key]


def dense_pattern(kpos: Tensor, allow: Tensor, T: int) -> Tensor:
    """(T, T) bool scattered from a layout: for tests and pictures only (it is O(T²) on purpose)."""
    nb, b, nk = allow.shape
    qpos = (torch.arange(nb, device=kpos.device)[:, None] * b + torch.arange(b, device=kpos.device))
    q_idx = qpos[:, :, None].expand(nb, b, nk)[allow]
    k_idx = kpos[:, None, :].expand(nb, b, nk)[allow]
    pattern = torch.zeros(nb * b, T, dtype=torch.bool, device=kpos.device)
    pattern[q_idx, k_idx] = True
    return pattern[:T]


# ------------------------------------------------------------------------------------------------------ engine

# Bytes of tile buffers one group of query blocks works on (scores, probabilities, k/v tiles, q and output rows).
# Whole-sequence tiles (~12 MB each at T=4096, B·H=4) stream through DRAM on every pass (gather, matmul, mask,
# softmax, matmul): forward time grew as T^1.17. Groups keep the passes in cache at ~5 dispatched ops per group.
# Measured at T=4096 (2 threads, share of the GEMM peak): 0.5 MiB 0.48, 1 MiB 0.55, 4 MiB 0.62, 16 MiB 0.62.
GROUP_BYTES = 4 << 20


def _per_block(b: int, nk: int, D: int, elem_bytes: int) -> int:
    """Bytes of tile buffers per query block, by which ``_Plan`` sizes its groups (and the memory model reads them)."""
    return (2 * b * nk + 2 * nk * D + 2 * b * D) * elem_bytes


def _groups(BH: int, H: int, nb: int, per_block: int, per_batch_row: bool) -> list[tuple[int, int, int, int]]:
    """(h0, h1, s, e): heads [h0, h1) of the flattened B·H × query blocks [s, e), about ``GROUP_BYTES`` each.

    A group is a run of whole heads (when one head's tiles are small) or a block range of one head, so its q,
    output and probability slices are contiguous views. With ``per_batch_row`` (a ``key_valid`` mask per batch
    row) a run of heads divides H, so one mask row serves it; otherwise a run may span batch rows (a training
    batch of short sequences is then one or a few groups, not B·H of them).
    """
    c = max(1, GROUP_BYTES // per_block)  # query blocks per group
    if c < nb:
        return [(h, h + 1, s, min(s + c, nb)) for h in range(BH) for s in range(0, nb, c)]
    limit = H if per_batch_row else BH
    step = min(c // nb, limit)
    while limit % step:
        step -= 1
    return [(h, h + step, 0, nb) for h in range(0, BH, step)]


class TileLayout:
    """A layout from ``build_layout`` prepared for ``tile_attend``; depends only on (T, device, dtype), so a
    variant builds it once (``memo_tiles``).

    Tile columns are ``m`` whole key blocks (window, then random) and then ``g`` single global tokens. ``bias``
    (nb, b, nk) is 0 where a score is allowed and the dtype's most negative finite value where it is masked: adding
    it is exact masking (score + min rounds to min for any |score| < 2^103 in fp32) and 7× cheaper than
    ``masked_fill_`` with a broadcast boolean mask (measured: 4 vs 29 µs per 98k scores). ``banded``: the m blocks
    of query block i are blocks i + off .. i + off + m - 1 and there are no global columns (the sliding window), so
    a k/v tile is an overlapping strided view of the padded k/v: no gather at all.
    """

    def __init__(self, T: int, kpos: Tensor, allow: Tensor, m: int, dtype: torch.dtype):
        self.T, self.m, self.allow = T, m, allow
        self.nb, self.b, self.nk = allow.shape
        self.g = self.nk - m * self.b
        self.kpos = kpos.clamp(0, T - 1)  # (nb, nk): masked columns point at a valid row and are never used
        self.bias = torch.zeros(allow.shape, dtype=dtype, device=allow.device).masked_fill_(~allow, _neg(dtype))
        # key block ids of the m block columns; an unused random slot or a window block past either end is outside
        # [0, nb): its scores are masked, its gradient is zero, and a padded accumulator row takes it
        kblk = kpos[:, : m * self.b: self.b].div(self.b, rounding_mode="floor")  # (nb, m)
        self.kblk = kblk
        self.lo = min(0, int(kblk.min())) if m else 0
        self.hi = max(self.nb - 1, int(kblk.max())) if m else self.nb - 1
        self.off = int(kblk[0, 0]) if m else 0
        ideal = self.off + torch.arange(self.nb, device=kblk.device)[:, None] + torch.arange(m, device=kblk.device)
        self.banded = self.g == 0 and m > 0 and torch.equal(kblk, ideal)


def _neg(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def memo_tiles(module: torch.nn.Module, T: int, device: torch.device, dtype: torch.dtype, m: int) -> TileLayout:
    """``module.layout(T)`` prepared for ``tile_attend``, built once per (T, device, dtype) like the layout."""
    return memo_layout(module, T, device, lambda: TileLayout(T, *module.layout(T, device), m, dtype), dtype)


class _Plan:
    """One call's view of a ``TileLayout``: the B·H heads, k/v as tiles, the mask with ``key_valid`` folded in.

    ``kt(h0, h1, s, e)``/``vt(...)`` give a group's (n, nk, D) tiles: a strided view of the padded k/v when banded
    (one head per group), else rows gathered from the flattened (B·H·T, D) k/v, in cache.
    """

    def __init__(self, tiles: TileLayout, k: Tensor, v: Tensor, key_valid: Tensor | None):
        B, H, T, D = k.shape
        self.tiles, self.B, self.H, self.D = tiles, B, H, D
        nb, b, nk = tiles.nb, tiles.b, tiles.nk
        self.empty_rows = None
        if key_valid is None:
            self.bias = tiles.bias  # (nb, b, nk)
        else:
            allowed = tiles.allow & key_valid[:, tiles.kpos][:, :, None, :]  # (B, T) -> (B, nb, b, nk)
            self.bias = torch.zeros(allowed.shape, dtype=k.dtype, device=k.device).masked_fill_(~allowed, _neg(k.dtype))
            self.empty_rows = ~allowed.any(dim=-1, keepdim=True)  # (B, nb, b, 1): rows with no allowed key
        if tiles.banded:  # rows of block lo .. hi; block i's tile starts at row (i + off - lo)·b
            L = (tiles.hi - tiles.lo + 1) * b
            pad = (0, 0, -tiles.lo * b, L + tiles.lo * b - T)
            self.kp, self.vp = (F.pad(x, pad).reshape(B * H, L, D) for x in (k, v))  # (B, H, T, D) -> (B·H, L, D)
            self.start = (tiles.off - tiles.lo) * b
        else:
            self.kf, self.vf = k.reshape(B * H * T, D), v.reshape(B * H * T, D)
            heads = torch.arange(B * H, device=k.device)[:, None, None] * T
            self.kidx = heads + tiles.kpos  # (B·H, nb, nk) into the flattened rows
        self.groups = _groups(B * H, H, nb, _per_block(b, nk, D, k.element_size()), self.empty_rows is not None)

    def _tile(self, x: Tensor, h0: int, h1: int, s: int, e: int) -> Tensor:
        t, D = self.tiles, self.D
        n = (h1 - h0) * (e - s)
        if t.banded:  # overlapping windows, stride b rows: a view for one head, one in-cache copy for a run
            L = x.shape[1]
            tiles = x.as_strided((h1 - h0, e - s, t.nk, D), (L * D, t.b * D, D, 1),
                                 x.storage_offset() + h0 * L * D + (self.start + s * t.b) * D)
            return tiles.reshape(n, t.nk, D)
        idx = self.kidx[h0:h1, s:e].reshape(-1)  # (n·nk,)
        return x.index_select(0, idx).view(n, t.nk, D)

    def kt(self, h0: int, h1: int, s: int, e: int) -> Tensor:
        return self._tile(self.kp if self.tiles.banded else self.kf, h0, h1, s, e)

    def vt(self, h0: int, h1: int, s: int, e: int) -> Tensor:
        return self._tile(self.vp if self.tiles.banded else self.vf, h0, h1, s, e)

    def bias_of(self, h0: int, s: int, e: int) -> Tensor:
        """A group's mask bias, broadcastable to its (heads, e - s, b, nk) scores."""
        return self.bias[s:e] if self.empty_rows is None else self.bias[h0 // self.H, s:e]


def _blocks(x: Tensor, nb: int, b: int) -> Tensor:
    """(B, H, T, D) -> (B·H, nb, b, D), zero-padded to nb·b rows (a view when T = nb·b)."""
    B, H, T, D = x.shape
    return (x if nb * b == T else F.pad(x, (0, 0, 0, nb * b - T))).reshape(B * H, nb, b, D)


def _tile_forward(plan: _Plan, qb: Tensor, probs: Tensor | None) -> Tensor:
    """Group by group: scores = q·kᵀ/√D + bias, softmax, probabilities @ v; returns (B·H, nb, b, D).

    ``qb`` (B·H, nb, b, D). ``probs`` (B·H, nb, b, nk), when given, receives the probabilities for backward.
    """
    BH, nb, b, D = qb.shape
    nk = plan.tiles.nk
    out = qb.new_empty(BH, nb, b, D)
    for h0, h1, s, e in plan.groups:
        n = (h1 - h0) * (e - s)
        scores = qb.new_empty(n, b, nk)  # written by baddbmm itself (out=): no second group-sized buffer
        torch.baddbmm(scores, qb[h0:h1, s:e].reshape(n, b, D), plan.kt(h0, h1, s, e).transpose(1, 2), beta=0,
                      alpha=D ** -0.5, out=scores)  # -> (n, b, nk)
        scores.view(h1 - h0, e - s, b, nk).add_(plan.bias_of(h0, s, e))
        p = scores if probs is None else probs[h0:h1, s:e].view(n, b, nk)
        torch.softmax(scores, -1, out=p)
        torch.bmm(p, plan.vt(h0, h1, s, e), out=out[h0:h1, s:e].view(n, b, D))  # (n, b, nk) @ (n, nk, D)
    return out


def _tile_backward(plan: _Plan, qb: Tensor, out: Tensor, probs: Tensor, grad_out: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``_tile_forward`` from its saved probabilities, group by group, with the forward's two matmuls
    transposed (4 per group, as autograd does): returns dq (B·H, nb, b, D), dk and dv (B·H, T, D).

    dS = P ⊙ (dP − rowsum(dO ⊙ O)) is exactly zero at the masked entries of a row with an allowed key (P = 0
    there); a row with none (only with ``key_valid``) has uniform P and its dS row is zeroed, as autograd's
    backward of the masking would. Key-tile gradients are added into per-block accumulators: m shifted adds when
    banded, else one ``index_add_`` per group over (b·D)-sized block rows plus a sum for the global columns.
    """
    t = plan.tiles
    BH, nb, b, D = qb.shape
    nk, m, g, nblk = t.nk, t.m, t.g, t.hi - t.lo + 1
    dq = qb.new_empty(qb.shape)  # contiguous: qb may be a strided view of a projected (non-contiguous) q
    acc_k, acc_v = (qb.new_zeros(BH, nblk, b, D) for _ in range(2))  # key blocks lo .. hi
    glob_k, glob_v = (qb.new_zeros(BH, g, D) for _ in range(2))
    delta = (grad_out * out).sum(-1, keepdim=True)  # (B·H, nb, b, 1): rowsum(dO ⊙ O)

    def scatter(tile: Tensor, h0: int, h1: int, s: int, e: int, acc: Tensor, glob: Tensor) -> None:
        x = tile.view(h1 - h0, e - s, nk, D)
        if t.banded:  # block column j of query block i is key block i + off + j
            base = t.off - t.lo + s
            for j in range(m):
                acc[h0:h1, base + j: base + j + e - s] += x[:, :, j * b:(j + 1) * b].view(h1 - h0, e - s, b, D)
            return
        if m:
            rows = (torch.arange(h0, h1, device=acc.device)[:, None, None] * nblk + (t.kblk[s:e] - t.lo)).reshape(-1)
            acc.view(-1, b * D).index_add_(0, rows, x[:, :, : m * b].reshape(-1, b * D))
        if g:
            glob[h0:h1] += x[:, :, m * b:].sum(dim=1)

    for h0, h1, s, e in plan.groups:
        n = (h1 - h0) * (e - s)
        kt, vt = plan.kt(h0, h1, s, e), plan.vt(h0, h1, s, e)
        p = probs[h0:h1, s:e].view(n, b, nk)
        do = grad_out[h0:h1, s:e].reshape(n, b, D)
        scatter(torch.bmm(p.transpose(1, 2), do), h0, h1, s, e, acc_v, glob_v)  # dV tile = Pᵀ·dO (n, nk, D)
        ds = torch.bmm(do, vt.transpose(1, 2))  # dP = dO·Vᵀ (n, b, nk)
        ds.sub_(delta[h0:h1, s:e].reshape(n, b, 1)).mul_(p)
        if plan.empty_rows is not None:
            ds.view(h1 - h0, e - s, b, nk).masked_fill_(plan.empty_rows[h0 // plan.H, s:e], 0)
        dqg = dq[h0:h1, s:e].view(n, b, D)
        torch.baddbmm(dqg, ds, kt, beta=0, alpha=D ** -0.5, out=dqg)  # dQ = dS·K/√D
        dk = torch.baddbmm(kt.new_empty(n, nk, D), ds.transpose(1, 2), qb[h0:h1, s:e].reshape(n, b, D),
                           beta=0, alpha=D ** -0.5)  # dK tile = dSᵀ·Q/√D (n, nk, D)
        scatter(dk, h0, h1, s, e, acc_k, glob_k)
    grads = []
    for acc, glob in ((acc_k, glob_k), (acc_v, glob_v)):
        full = acc.view(BH, nblk * b, D)[:, -t.lo * b: -t.lo * b + t.T]  # key block lo is row 0
        if g:
            full[:, :g] += glob
        grads.append(full)
    return dq, grads[0], grads[1]


class _TileAttend(torch.autograd.Function):
    """``_tile_forward`` with a hand-written backward. Autograd through the plain ops would save the gathered
    (B·H, nb, nk, D) k/v tiles, the scaled q and the probabilities; here only the probabilities are saved (q, k, v
    and the output are held anyway) and k/v tiles are taken again group by group in backward."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, tiles: TileLayout, key_valid: Tensor | None) -> Tensor:
        B, H, T, D = q.shape
        nb, b, nk = tiles.nb, tiles.b, tiles.nk
        plan = _Plan(tiles, k, v, key_valid)
        qb = _blocks(q, nb, b)
        probs = q.new_empty(B * H, nb, b, nk)
        out = _tile_forward(plan, qb, probs)
        ctx.save_for_backward(qb, out, probs)
        ctx.plan = plan
        return out.view(B, H, nb * b, D)[:, :, :T]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        qb, out, probs = ctx.saved_tensors
        plan = ctx.plan
        B, H, T, D = grad.shape
        nb, b = plan.tiles.nb, plan.tiles.b
        dq, dk, dv = _tile_backward(plan, qb, out, probs, _blocks(grad.contiguous(), nb, b))
        dq = dq.view(B, H, nb * b, D)[:, :, :T]
        return dq, dk.reshape(B, H, T, D), dv.reshape(B, H, T, D), None, None


def tile_attend(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None, tiles: TileLayout) -> Tensor:
    """Softmax attention of each query block over its key tile; returns (B, H, T, D).

    Matmuls: (B·H·nb) × [b × D] @ [D × nk] and [b × nk] @ [nk × D], i.e. 4·B·H·nb·b·nk·D FLOPs. They run group
    by group (``_groups``), so no tile-sized buffer exists for the whole sequence, except, when autograd records,
    the (B·H, nb, b, nk) probabilities saved for backward.
    """
    B, H, T, D = q.shape
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        return _TileAttend.apply(q, k, v, tiles, key_valid)
    out = _tile_forward(_Plan(tiles, k, v, key_valid), _blocks(q, tiles.nb, tiles.b), None)
    return out.view(B, H, tiles.nb * tiles.b, D)[:, :, :T]


def _tile_memory(B: int, H: int, T: int, D: int, nb: int, b: int, nk: int, elem_bytes: int,
                 kv_rows: int | None) -> int:
    """Peak of a ``tile_attend`` forward without autograd (what the benchmark's forward measures), output included.

    Alive for the whole call: the (B·H, nb, b, D) output, q zero-padded to nb·b rows when b does not divide T, and
    either the zero-padded k and v of ``kv_rows`` rows each (banded: ``kv_rows`` given) or the (B·H, nb, nk) int64
    gather index (``kv_rows`` None). Then one group's buffers (``_groups``): its (n, b, nk) scores, softmaxed in
    place, plus its (n, nk, D) k and v tiles when they are gathered (not banded) or copied (a banded group that
    spans several heads). The (nb, b, nk) mask bias is built once per T with the layout (``memo_tiles``), before
    any measured call, and is not counted. Under autograd the (B·H, nb, b, nk) probabilities saved for backward
    add B·H·nb·b·nk elements; that is the forward+backward phase's memory, not this one's.
    """
    BH = B * H
    groups = _groups(BH, H, nb, _per_block(b, nk, D, elem_bytes), False)
    n = max((h1 - h0) * (e - s) for h0, h1, s, e in groups)
    multi_head = max(h1 - h0 for h0, h1, _, _ in groups) > 1
    elems = BH * nb * b * D + (BH * nb * b * D if nb * b != T else 0) + n * b * nk
    index_bytes = 0
    if kv_rows is None:
        index_bytes = BH * nb * nk * 8
        elems += 2 * n * nk * D
    else:
        elems += 2 * BH * kv_rows * D + (2 * n * nk * D if multi_head else 0)
    return elems * elem_bytes + index_bytes


# -------------------------------------------------------------------------------------------- sliding window

def window_flops(B: int, H: int, T: int, D: int, causal: bool = False, window: int = 64, **_: object) -> int:
    """Blocks of b = min(w, T); each sees r = 1 block each side (0 when one block covers T): 4·B·H·nb·b·nk·D."""
    b, nb, r = _geometry(T, window, window)
    return 4 * B * H * nb * b * (_n_offsets(r, causal) * b) * D


def window_memory(B: int, H: int, T: int, D: int, causal: bool = False, elem_bytes: int = 4,
                  window: int = 64, **_: object) -> int:
    """``_tile_memory`` of the banded engine: k and v padded by r blocks before (and, non-causal, after) the
    sequence, tiles of (b × n_off·b) scores per group: O(B·H·T·D) + one group. Live tensor bytes at T = 4096 and
    16384: 1.06× and 1.02× this (a second group-sized buffer is alive at the peak, ~0.8 MiB at 4096)."""
    b, nb, r = _geometry(T, window, window)
    kv_rows = (nb + (r if causal else 2 * r)) * b
    return _tile_memory(B, H, T, D, nb, b, _n_offsets(r, causal) * b, elem_bytes, kv_rows)


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


def bigbird_flops(B: int, H: int, T: int, D: int, causal: bool = False, block_size: int = 32, window: int = 32,
                  n_global: int = 2, n_random: int = 2, seed: int = 0, **_: object) -> int:
    """Tiles of nk = (window blocks + random slots)·b + g keys, plus g dense global query rows (non-causal)."""
    b, nb, r, slots, g = _bigbird_shape(T, causal, block_size, window, n_global, n_random)
    nk = (_n_offsets(r, causal) + slots) * b + g
    dense = 0 if causal else 4 * B * H * g * T * D
    return 4 * B * H * nb * b * nk * D + dense


def bigbird_memory(B: int, H: int, T: int, D: int, causal: bool = False, elem_bytes: int = 4,
                   block_size: int = 32, window: int = 32, n_global: int = 2, n_random: int = 2,
                   seed: int = 0, **_: object) -> int:
    """``_tile_memory`` of the gathering engine (window + random blocks + global tokens per tile). Non-causal, the
    block output and the (B, H, T, D) ``cat`` that puts the dense global rows in front of it are alive together
    after the group buffers are freed, so the peak is the larger of the two, plus the g × T scores and
    probabilities of the global rows. (The RSS peak varies with whether the cat reuses the freed group buffers:
    9.1-13.1 MiB at T = 4096 in different worker children, against 8.0 MiB live.)
    """
    b, nb, r, slots, g = _bigbird_shape(T, causal, block_size, window, n_global, n_random)
    nk = (_n_offsets(r, causal) + slots) * b + g
    tiles = _tile_memory(B, H, T, D, nb, b, nk, elem_bytes, None)
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

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        p = self.params
        check_positive(self.spec.name, block_size=p["block_size"], window=p["window"])
        for label in ("n_global", "n_random", "seed"):
            value = p[label]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{self.spec.name}: {label} must be an int >= 0, got {value!r}")

    def layout(self, T: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Key positions (nb, nk) and allow-mask (nb, b, nk) for length T, random blocks drawn from ``seed``."""
        p = self.params
        b, nb, r, slots, g = _bigbird_shape(T, self.causal, p["block_size"], p["window"], p["n_global"],
                                            p["n_random"])
        def build() -> tuple[Tensor, Tensor]:
            rand = _random_blocks(nb, r, g // b, self.causal, slots, p["seed"]) if slots else None
            return build_layout(T, b, p["window"], self.causal, g, rand, device)
        return memo_layout(self, T, device, build)

    def pattern(self, T: int) -> Tensor:
        """(T, T) bool: which keys each query may see, global query rows included. For tests only."""
        pattern = dense_pattern(*self.layout(T), T)
        if not self.causal:
            pattern[: min(self.params["n_global"], T)] = True
        return pattern

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        p, T = self.params, q.shape[-2]
        _, _, r, slots, _ = _bigbird_shape(T, self.causal, p["block_size"], p["window"], p["n_global"], p["n_random"])
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
