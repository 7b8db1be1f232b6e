"""One small Transformer that takes any registered attention variant by name.

embed (+ learned positions, + optional token shift) → N × pre-LN block (norm, attention, norm, MLP) → norm → head.
Projections, MLP, norms and heads are shared code: two models built with different variants differ only in
token mixing, and their parameter counts differ only by the variant's own parameters (Linformer's E and F).

The token shift is a kernel-2 causal depthwise convolution on the embeddings (as in H3, Fu et al. 2023,
arXiv 2212.14052, and Zoology's models): each position also sees its predecessor's embedding. Full attention
learns MQAR far sooner with it (docs/variants.md), so it is an option, applied to every variant alike.

Model-level variants (the attention-free baselines, the distilled students) are ``ModelSpec``s in a registry of
their own, with the same list/get interface as the attention variants: ``model_names``, ``get_model``,
``create_model``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Attention, Paper, Registry, create, frozen_params, get, resolve_params

MODEL_KINDS = ("baseline", "student")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model; ``attention`` is a registry name, ``attention_params`` its params."""

    vocab_size: int
    max_seq_len: int
    attention: str = "full_sdpa"
    attention_params: dict[str, Any] = field(default_factory=dict)
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int | None = None  # default 4·d_model
    causal: bool = False
    head: str = "token"  # "token": logits per position | "classify": pooled logits per sequence
    n_classes: int | None = None  # head size; default vocab_size
    token_shift: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        get(self.attention)  # unknown variant -> one-line UnknownVariantError listing known names
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.head not in ("token", "classify"):
            raise ValueError(f"head must be 'token' or 'classify', got {self.head!r}")
        for label in ("vocab_size", "max_seq_len", "d_model", "n_heads", "n_layers"):
            if getattr(self, label) < 1:
                raise ValueError(f"{label} must be >= 1, got {getattr(self, label)}")


class TokenShift(nn.Module):
    """x_t + W ⊙ x_{t-1}: a kernel-2 causal depthwise convolution, initialised to the identity."""

    def __init__(self, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=2, groups=d_model, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 1] = 1.0  # tap on x_t = 1, tap on x_{t-1} = 0 at init

    def forward(self, x: Tensor) -> Tensor:
        y = F.pad(x.transpose(1, 2), (1, 0))  # (B, T, C) -> (B, C, T + 1), zero before the first token
        return self.conv(y).transpose(1, 2)  # (B, C, T) -> (B, T, C)


class MultiHeadMixer(nn.Module):
    """Q/K/V/out projections around one attention variant; the variant does token mixing only."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn = create(cfg.attention, d_head=self.d_head, n_heads=cfg.n_heads, causal=cfg.causal,
                           max_seq_len=cfg.max_seq_len, **cfg.attention_params)

    def forward(self, x: Tensor, key_valid: Tensor | None) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.d_head)  # (B, T, 3C) -> (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # -> 3 × (B, H, T, D)
        y = self.attn(q, k, v, key_valid)  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))  # (B, H, T, D) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d_ff = cfg.d_ff or 4 * cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.mixer = MultiHeadMixer(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_ff), nn.GELU(), nn.Linear(d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, key_valid: Tensor | None) -> Tensor:
        x = x + self.drop(self.mixer(self.norm1(x), key_valid))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """``forward(tokens (B, T) long, valid (B, T) bool | None) -> logits``: (B, T, n_out) or (B, n_out)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        n_out = cfg.n_classes or cfg.vocab_size
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.shift = TokenShift(cfg.d_model) if cfg.token_shift else nn.Identity()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_out)

    def forward(self, tokens: Tensor, valid: Tensor | None = None) -> Tensor:
        B, T = tokens.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds the model's max_seq_len={self.cfg.max_seq_len}")
        x = self.embed(tokens) + self.pos(torch.arange(T, device=tokens.device))  # (B, T) -> (B, T, C)
        return readout(self, self.shift(x), valid, masked_mean)


def readout(model: nn.Module, x: Tensor, valid: Tensor | None, pool: Callable[[Tensor, Tensor | None], Tensor]
            ) -> Tensor:
    """``model``'s blocks, final norm and head on the embedded x (B, T, C): (B, T, n_out) logits for a token head,
    (B, n_out) from ``pool``-ed features for a classify head. Shared by the Transformer and the baselines."""
    for block in model.blocks:
        x = block(x, valid)
    x = model.norm(x)
    if model.cfg.head == "token":
        return model.head(x)  # (B, T, n_out)
    return model.head(pool(x, valid))  # (B, T, C) -> (B, C) -> (B, n_out)


def masked_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    """Mean over real tokens: (B, T, C) -> (B, C)."""
    if valid is None:
        return x.mean(dim=1)
    w = valid.to(x.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


@contextmanager
def capture_maps(model: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every forward of ``model`` appends each attention layer's effective map (B, H, T, T),
    in layer order, to the yielded list, from the q, k, v and key_valid that layer's variant receives. Forward
    hooks only read them: the model's outputs do not change. For small T (the maps are T×T)."""
    maps: list[Tensor] = []

    def record(module: nn.Module, args: tuple, output: Tensor) -> None:
        q, k, _, key_valid = args
        maps.append(module.effective_map(q.detach(), k.detach(), key_valid))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, Attention)]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------- model-level variants

@dataclass(frozen=True)
class ModelSpec:
    """What a model-level variant declares; used by the sweeps and the tests like ``AttentionSpec``.

    ``kind``: "baseline" (a model that replaces attention; ``build(cfg, **params)`` on the model's own config,
    whose attention fields it ignores) or "student" (a smaller Transformer; ``build(teacher_cfg, **params)``
    shrinks the teacher's config). ``params`` are checked against ``default_params`` as for attention variants.
    """

    name: str
    kind: str
    description: str
    build: Callable[..., nn.Module]
    paper: Paper | None = None
    default_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model {self.name!r}: kind {self.kind!r} not in {MODEL_KINDS}")
        object.__setattr__(self, "default_params", frozen_params(self.default_params))

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown keys raise a one-line TypeError."""
        return resolve_params(self.name, self.default_params, params)

    def create(self, cfg: ModelConfig, **params: Any) -> nn.Module:
        return self.build(cfg, **self.resolve_params(params))


_MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model-level variant under ``spec.name``. Duplicate names raise."""
    return _MODELS.add(spec.name, spec)


def unregister_model(name: str) -> None:
    _MODELS.remove(name)


def get_model(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name raises a one-line ``UnknownVariantError``."""
    return _MODELS.get(name)


def model_names(kind: str | None = None) -> list[str]:
    """Registered models (of one ``kind``), in registration order."""
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    return _MODELS.names(None if kind is None else lambda s: s.kind == kind)


def model_specs(kind: str | None = None) -> list[ModelSpec]:
    return [get_model(n) for n in model_names(kind)]


def create_model(name: str, cfg: ModelConfig, **params: Any) -> nn.Module:
    """``get_model(name).create(cfg, **params)``: build a registered model by name."""
    return get_model(name).create(cfg, **params)
