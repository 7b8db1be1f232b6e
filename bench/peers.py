"""Widely used public PyTorch implementations ("peers") of our variants' methods, configured to compute the same
thing, so the ``peers`` sweep can time both on identical inputs and report ours/peer ratios.

Every adapter takes the peer's token-mixing core only: non-causal, no dropout, no Q/K/V/output projections, on
(B, H, T, D) q, k, v, with our variant's default parameters (window, features, k, landmarks). Where a peer module
owns projections its constructor cannot leave out, the adapter swaps them for ``nn.Identity`` or a slice of a
packed input, and packs q, k, v into the one (B, T, 3·H·D) tensor that module's ``forward`` takes. That packing
(one copy of q, k, v; and its gradient) is part of the peer's timed call: it is cheap (O(T·D) against the core's
O(T·r·D)), it is the honest cost of using that module on (B, H, T, D) inputs, and the row's notes say so.

Learned or random parameters (Linformer's E/F, Performer's ω) are copied from our variant as
``bench.measure.build_attention`` builds it (``torch.manual_seed(0)``, so the same in every process), which makes
the outputs comparable; ``agreement`` measures how close they are.

A peer whose package does not import raises ``NotImplementedError`` with the install hint, so a sweep records
status ``unsupported``. No BigBird peer: there is no maintained pure-PyTorch block-sparse BigBird package (the
reference code is JAX/TensorFlow; Hugging Face's BigBird layer is inside ``transformers`` with its projections
and ITC/ETC specifics). No peer for ``linear_elu``: ``pytorch-fast-transformers`` (the paper authors' code) does
not build without a CUDA toolkit (its setup.py builds CUDA extensions unconditionally), and
``linear-attention-transformer`` implements a different feature map (softmax over features, Shen et al.'s
"Efficient Attention"), not elu + 1.
"""
from __future__ import annotations

import importlib
import inspect
import importlib.metadata
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

import variants
from bench.measure import Shape, build_attention, make_qkv

INSTALL_HINT = "pip install 'attention-limits[peers]'"


@dataclass(frozen=True)
class PeerSpec:
    """One public implementation: its PyPI distribution, the version we compared against, its import name, the
    variant of ours it is compared with, and an adapter ``build(shape, params) -> module(q, k, v) -> out`` whose
    docstring is the pair's notes (how the peer is configured, where the two differ).

    ``tolerance``: the relative error (Frobenius, ours vs peer, same inputs) at which we call the two the same
    computation on the tests' small inputs; ``None`` where no equivalence is claimed.
    """

    name: str
    package: str
    version: str
    module: str
    ours: str
    build: Callable[[Shape, Mapping[str, Any]], nn.Module]
    tolerance: float | None = None

    @property
    def notes(self) -> str:
        return inspect.cleandoc(self.build.__doc__ or "")

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def require(spec: PeerSpec) -> Any:
    """Import the peer's module, or raise ``NotImplementedError`` with the install hint."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # performer-pytorch imports distutils and torch.cuda.amp
            return importlib.import_module(spec.module)
    except ImportError as exc:
        raise NotImplementedError(
            f"peer package {spec.package} not installed ({exc.__class__.__name__}: {exc}); {INSTALL_HINT}"
        ) from None


def installed_version(spec: PeerSpec) -> str | None:
    try:
        return importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        return None


def our_params(spec: PeerSpec, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our variant's default parameters overlaid with ``params`` (unknown keys raise)."""
    return variants.get(spec.ours).spec.resolve_params(dict(params or {}))


def build_ours(spec: PeerSpec, shape: Shape, params: Mapping[str, Any] | None = None) -> nn.Module:
    """Our variant exactly as the efficiency sweep builds it (seeded), non-causal."""
    if shape.causal:
        raise NotImplementedError("peer comparisons are non-causal only")
    return build_attention(spec.ours, shape, our_params(spec, params))


def build_peer(spec: PeerSpec, shape: Shape, params: Mapping[str, Any] | None = None) -> nn.Module:
    """The peer's core configured like our variant with ``params``, on the shape's device and dtype, eval mode."""
    if shape.causal:
        raise NotImplementedError("peer comparisons are non-causal only")
    require(spec)
    module = spec.build(shape, our_params(spec, params))
    return module.to(device=torch.device(shape.device), dtype=shape.torch_dtype).eval()


# ------------------------------------------------------------------------------------------------ adapters

def pack_qkv(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(B, H, T, D) × 3 -> (B, T, 3·H·D): the layout a fused ``to_qkv`` output has before ``chunk(3)``."""
    B, H, T, D = q.shape
    return torch.stack([q, k, v], dim=1).permute(0, 3, 1, 2, 4).reshape(B, T, 3 * H * D)  # (B, 3, H, T, D) ->


def unpack_heads(x: Tensor, H: int) -> Tensor:
    """(B, T, H·D) -> (B, H, T, D), a view."""
    B, T, HD = x.shape
    return x.view(B, T, H, HD // H).transpose(1, 2)


class Take(nn.Module):
    """Stands in for a ``to_q`` / ``to_k`` / ``to_v`` projection: slice ``part`` of a packed (…, 3·width) input."""

    def __init__(self, part: int, width: int):
        super().__init__()
        self.part, self.width = part, width

    def forward(self, x: Tensor) -> Tensor:
        return x[..., self.part * self.width:(self.part + 1) * self.width]


class PackedCore(nn.Module):
    """Calls a peer module whose forward takes one packed (B, T, 3·H·D) tensor; returns (B, H, T, D)."""

    def __init__(self, inner: nn.Module, heads: int):
        super().__init__()
        self.inner, self.heads = inner, heads

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return unpack_heads(self.inner(pack_qkv(q, k, v)), self.heads)


class HeadsAsBatch(nn.Module):
    """Calls a per-head core on (B·H, T, D) and reshapes back to (B, H, T, D)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        B, H, T, D = q.shape
        out = self.inner(*(x.reshape(B * H, T, D) for x in (q, k, v)))  # (B, H, T, D) -> (B·H, T, D)
        return out.view(B, H, T, D)


def _divisible(peer: str, T: int, by: int, what: str) -> None:
    if T % by:
        raise NotImplementedError(f"{peer}: T={T} must be a multiple of {what}={by} for the peer to compute the "
                                  f"same thing (it zero-pads otherwise and attends to the padding)")


def build_local(shape: Shape, params: Mapping[str, Any]) -> nn.Module:
    """lucidrains ``LocalAttention``: blocks of w with look-back and look-ahead 1 and ``exact_windowsize``, so
    query i sees exactly |i − j| <= w; no rotary embedding (``dim=None``)."""
    from local_attention import LocalAttention

    w = params["window"]
    _divisible("local_window", shape.T, w, "window")
    return LocalAttention(window_size=w, causal=False, look_backward=1, look_forward=1, dropout=0.0,
                          exact_windowsize=True, autopad=False, dim=None)


def build_performer(shape: Shape, params: Mapping[str, Any]) -> nn.Module:
    """lucidrains ``FastAttention`` (softmax kernel, non-causal) with our ω copied into its projection matrix.
    Not bit-identical: the peer adds eps=1e-4 to every max-shifted feature (a bias not settable from
    FastAttention) and divides without eps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from performer_pytorch import FastAttention

    ours = build_attention("linear_performer", shape, dict(params))
    peer = FastAttention(dim_heads=shape.D, nb_features=params["n_features"], causal=False)
    with torch.no_grad():
        peer.projection_matrix.copy_(ours.omega.float())  # (r, D)
    return peer


def linformer_projections(shape: Shape, params: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """Our E, F (k, T) as built for this shape, transposed to the (T, k) layout both Linformer peers use."""
    ours = build_attention("low_rank_linformer", shape, dict(params))
    return ours.E.detach()[:, : shape.T].T.float().contiguous(), ours.F.detach()[:, : shape.T].T.float().contiguous()


def build_linformer_pytorch(shape: Shape, params: Mapping[str, Any]) -> nn.Module:
    """tatp22 ``LinearAttentionHead``, the per-head core (no projections), with our E, F as learnable tensors;
    heads folded into the batch (a view)."""
    from linformer_pytorch import LinearAttentionHead

    E, F = linformer_projections(shape, params)
    head = LinearAttentionHead(dim=shape.D, dropout=0.0, E_proj=nn.Parameter(E), F_proj=nn.Parameter(F),
                               causal_mask=None, full_attention=False)
    return HeadsAsBatch(head)


def build_linformer(shape: Shape, params: Mapping[str, Any]) -> nn.Module:
    """lucidrains ``LinformerSelfAttention`` with to_q/to_k/to_v replaced by slices of a packed input and to_out
    by the identity; proj_k, proj_v are our E, F. The packing copy of the input is inside the peer's timed call."""
    from linformer import LinformerSelfAttention

    HD = shape.H * shape.D
    layer = LinformerSelfAttention(dim=HD, seq_len=shape.T, k=params["k"], heads=shape.H, dim_head=shape.D,
                                   one_kv_head=False, share_kv=False, dropout=0.0)
    layer.to_q, layer.to_k, layer.to_v, layer.to_out = Take(0, HD), Take(1, HD), Take(2, HD), nn.Identity()
    E, F = linformer_projections(shape, params)
    with torch.no_grad():
        layer.proj_k.copy_(E)
        layer.proj_v.copy_(F)
    return PackedCore(layer, shape.H)


def build_nystrom(shape: Shape, params: Mapping[str, Any]) -> nn.Module:
    """lucidrains ``NystromAttention`` with ``residual=False`` (no depthwise-conv skip), to_qkv and to_out the
    identity, on a packed input (the copy is timed with the peer); same landmark count and pseudo-inverse
    iterations. Its pseudo-inverse starts from one norm over the whole batch (ours: per matrix), so outputs are
    identical only when B·H = 1; needs T % landmarks == 0."""
    from nystrom_attention import NystromAttention

    m = params["landmarks"]
    _divisible("nystrom", shape.T, m, "landmarks")
    layer = NystromAttention(dim=shape.H * shape.D, dim_head=shape.D, heads=shape.H, num_landmarks=m,
                             pinv_iterations=params["pinv_iters"], residual=False, dropout=0.0)
    layer.to_qkv, layer.to_out = nn.Identity(), nn.Identity()
    return PackedCore(layer, shape.H)


_SPECS = (  # name, PyPI package, version, import name, our variant, adapter, tolerance
    PeerSpec("local_window", "local-attention", "1.11.2", "local_attention", "sparse_window", build_local, 1e-5),
    PeerSpec("performer", "performer-pytorch", "1.1.4", "performer_pytorch", "linear_performer", build_performer, 2e-2),
    PeerSpec("linformer_pytorch", "linformer-pytorch", "0.19.3", "linformer_pytorch", "low_rank_linformer",
             build_linformer_pytorch, 1e-5),
    PeerSpec("linformer", "linformer", "0.2.3", "linformer", "low_rank_linformer", build_linformer, 1e-5),
    PeerSpec("nystrom", "nystrom-attention", "0.0.14", "nystrom_attention", "low_rank_nystrom", build_nystrom, 1e-4),
)
PEERS: dict[str, PeerSpec] = {spec.name: spec for spec in _SPECS}


def get(name: str) -> PeerSpec:
    try:
        return PEERS[name]
    except KeyError:
        raise LookupError(f"unknown peer {name!r}; known: {', '.join(sorted(PEERS))}") from None


def names() -> list[str]:
    return sorted(PEERS)


def available() -> list[str]:
    """Peers whose package imports here."""
    found = []
    for name in names():
        try:
            require(PEERS[name])
        except NotImplementedError:
            continue
        found.append(name)
    return found


def requirements() -> list[str]:
    """Pinned requirement strings for the ``peers`` extra."""
    return sorted({spec.requirement for spec in PEERS.values()})


# ----------------------------------------------------------------------------------------------- agreement

def _rel(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / a.norm().clamp_min(1e-300))


def full_softmax_rows(q: Tensor, k: Tensor, v: Tensor, rows: int) -> Tensor:
    """Exact softmax attention of the first ``rows`` queries, in float64: (B, H, rows, D)."""
    qd, kd, vd = (x.detach().double() for x in (q[..., :rows, :], k, v))
    return torch.softmax(qd @ kd.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ vd  # (B, H, rows, T) @ V


def agreement(spec: PeerSpec, shape: Shape, params: Mapping[str, Any] | None = None, seed: int = 0,
              grads: bool = False, qk_scale: float = 1.0, exact_rows: int = 256) -> dict[str, float]:
    """Ours vs the peer on the same q, k, v (``make_qkv(shape, seed)``, q and k multiplied by ``qk_scale``).

    ``rel_err`` / ``max_abs_err``: relative (Frobenius) and max-abs difference of the outputs; with ``grads``,
    ``grad_rel_err``: the worst relative difference of dq, dk, dv under the upstream gradient of ``out.sum()``.
    ``ours_vs_full`` / ``peer_vs_full``: each one's relative error against exact full softmax attention on the
    first ``exact_rows`` queries, so a reader can tell which side an approximation error comes from;
    ``mean_v_vs_full`` / ``peer_vs_mean_v``: how far uniform attention (every output mean(v)) is from exact, and
    the peer from it, which shows a peer whose output collapses to mean(v).
    """
    ours, peer = build_ours(spec, shape, params), build_peer(spec, shape, params)
    outs, grad_sets = [], []
    for module in (ours, peer):
        q, k, v = make_qkv(shape, seed)
        q, k = q * qk_scale, k * qk_scale
        for x in (q, k, v):
            x.requires_grad_(grads)
        with torch.set_grad_enabled(grads):
            out = module(q, k, v)
        if grads:
            grad_sets.append(torch.autograd.grad(out.sum(), (q, k, v)))
        outs.append(out.detach())
    rows = min(exact_rows, shape.T)
    full = full_softmax_rows(q, k, v, rows)
    mean_v = v.detach().double().mean(dim=-2, keepdim=True).expand_as(full)  # the output of uniform attention
    result = {"rel_err": _rel(outs[0], outs[1]),
              "max_abs_err": float((outs[0].double() - outs[1].double()).abs().max()),
              "ours_vs_full": _rel(full, outs[0][..., :rows, :]), "peer_vs_full": _rel(full, outs[1][..., :rows, :]),
              "mean_v_vs_full": _rel(full, mean_v), "peer_vs_mean_v": _rel(mean_v, outs[1][..., :rows, :])}
    if grads:
        result["grad_rel_err"] = max(_rel(g0, g1) for g0, g1 in zip(*grad_sets))
    return result
