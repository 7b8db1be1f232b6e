"""Attention-free baselines with more inductive bias: a 1-D CNN and a GRU, for the data-dependence sweep.

Both keep the Transformer's skeleton (``variants.model``): embed → N × pre-LN block (norm, token mixer, norm, MLP)
→ norm → head, with the same ``d_model``, ``n_layers`` and ``d_ff``, so parameter counts match the Transformer's
by construction (the mixer is the only difference) and ``bench.train`` trains them unchanged: the forward is
``(tokens (B, T) long, valid (B, T) bool | None) -> logits`` (B, T, n_out) for a token head, (B, n_out) for a
classify head.

- ``ConvNet``: the mixer is a width-``kernel`` 1-D convolution (causal: padded on the left only), no position
  embedding: locality and translation equivariance are built in. A classify head max-pools over time, the
  "convolution + max-over-time" text classifier of Kim 2014 (arXiv 1408.5882) and DeepBind (Alipanahi et al.
  2015): "does a motif occur anywhere" is then one filter away.
- ``GRUNet``: the mixer is a GRU (Cho et al. 2014, arXiv 1406.1078); causal → unidirectional, else bidirectional
  with d_model/2 units per direction. Recurrence gives order and recency for free; no position embedding.
  Its classify head max-pools over time too.

Deviation from the Transformer: the baselines pool by max, the Transformer by mean (``masked_mean``); max-pool is
part of the CNN prior being tested, and both are documented in the sweep's rows (``pool``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Paper
from .model import ModelConfig, ModelSpec, readout, register_model

KIM = Paper("Convolutional Neural Networks for Sentence Classification", 2014, "1408.5882")
CHO = Paper("Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation", 2014,
            "1406.1078")


class ConvMixer(nn.Module):
    """A 1-D convolution over time, d_model → d_model; causal convolutions see only the current and past tokens."""

    def __init__(self, d_model: int, kernel: int, causal: bool):
        super().__init__()
        self.pad = (kernel - 1, 0) if causal else ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=kernel)

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        if valid is not None:
            x = x * valid.unsqueeze(-1).to(x.dtype)  # padding contributes nothing to its neighbours
        y = F.pad(x.transpose(1, 2), self.pad)  # (B, T, C) -> (B, C, T + kernel - 1)
        return self.conv(y).transpose(1, 2)  # (B, C, T) -> (B, T, C)


class GRUMixer(nn.Module):
    """A GRU over time; bidirectional (d_model/2 per direction) unless causal. Padding is zeroed, not packed."""

    def __init__(self, d_model: int, causal: bool):
        super().__init__()
        if not causal and d_model % 2:
            raise ValueError(f"a bidirectional GRU needs an even d_model, got {d_model}")
        hidden = d_model if causal else d_model // 2
        self.gru = nn.GRU(d_model, hidden, batch_first=True, bidirectional=not causal)

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        if valid is not None:
            x = x * valid.unsqueeze(-1).to(x.dtype)
        return self.gru(x)[0]  # (B, T, C) -> (B, T, C)


class MixerBlock(nn.Module):
    """The Transformer's pre-LN block with attention replaced by ``mixer``."""

    def __init__(self, cfg: ModelConfig, mixer: nn.Module):
        super().__init__()
        d_ff = cfg.d_ff or 4 * cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.mixer = mixer
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_ff), nn.GELU(), nn.Linear(d_ff, cfg.d_model))

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        x = x + self.mixer(self.norm1(x), valid)
        return x + self.mlp(self.norm2(x))


def masked_max(x: Tensor, valid: Tensor | None) -> Tensor:
    """Max over real tokens: (B, T, C) -> (B, C)."""
    if valid is None:
        return x.amax(dim=1)
    return x.masked_fill(~valid.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


class MixerNet(nn.Module):
    """embed → blocks → norm → head, the shared body of the baselines (``attention`` in the config is unused)."""

    def __init__(self, cfg: ModelConfig, mixers: list[nn.Module]):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(MixerBlock(cfg, m) for m in mixers)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes or cfg.vocab_size)

    def forward(self, tokens: Tensor, valid: Tensor | None = None) -> Tensor:
        return readout(self, self.embed(tokens), valid, masked_max)  # (B, T) -> (B, T, C) -> logits


class ConvNet(MixerNet):
    """The CNN baseline (see the module docstring); ``kernel`` is the convolution width of every layer."""

    def __init__(self, cfg: ModelConfig, *, kernel: int):
        if kernel < 1:
            raise ValueError(f"kernel must be >= 1, got {kernel}")
        super().__init__(cfg, [ConvMixer(cfg.d_model, kernel, cfg.causal) for _ in range(cfg.n_layers)])


class GRUNet(MixerNet):
    """The GRU baseline (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, [GRUMixer(cfg.d_model, cfg.causal) for _ in range(cfg.n_layers)])


register_model(ModelSpec(
    name="cnn_baseline", kind="baseline", paper=KIM, build=ConvNet, default_params={"kernel": 3},
    description="1-D convolution mixer (width kernel), max-over-time pooling: a locality prior"))
register_model(ModelSpec(
    name="gru_baseline", kind="baseline", paper=CHO, build=GRUNet,
    description="GRU mixer (bidirectional unless causal), max-over-time pooling: a recurrence prior"))
