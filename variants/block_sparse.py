"""The block-sparse tile engine: softmax attention of each query block over its own tile of key positions.

A *layout* (built by the variants in ``variants.sparse``) cuts the sequence into ``nb = ceil(T / b)`` query blocks
of ``b`` tokens (the last one zero-padded) and gives each the same number ``nk`` of key positions, with an exact
allow-mask per tile entry. ``tile_attend`` computes scores = q·kᵀ/√D + mask bias, softmax and probabilities @ v
group by group of query blocks (``GROUP_BYTES`` of buffers each), so no tile-sized buffer exists for the whole
sequence: time and memory are O(T · nk). A banded layout (the sliding window) reads its k/v tiles as overlapping
strided views (no gather); other layouts gather their group's rows. The backward (``_TileAttend``) is written by
hand from the saved probabilities. A row with no allowed key is uniform over its tile, finite, as the interface
allows. Measurements behind the group size and the bias: docs/variants.md.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


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


# Bytes of tile buffers one group of query blocks works on (scores, probabilities, k/v tiles, q and output rows):
# small enough that a group's passes stay in cache, large enough to keep the dispatched ops per group few.
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
    it is exact masking (score + min rounds to min for any |score| < 2^103 in fp32) and much cheaper than
    ``masked_fill_`` with a broadcast boolean mask. ``banded``: the m blocks
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


def tile_memory(B: int, H: int, T: int, D: int, nb: int, b: int, nk: int, elem_bytes: int,
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
