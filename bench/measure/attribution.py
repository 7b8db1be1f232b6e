"""What a trained model's attention looks like and which input positions drive its answers.

Three measurements on a token model (``variants.model.Transformer``) for chosen queries (row, position, target):
the effective attention maps of every layer (``variants.model.capture_maps``), input-gradient × input, and
leave-one-out occlusion. Both importances are of the target's log-probability at the query, per key position;
the "input" is the token embedding (``model.embed``'s output; learned positions are left as they are), and
occluding position j sets that token embedding to zero (no filler id is needed, and it is the same for every
task). Small T only: occlusion runs T forward passes per query.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from variants.model import capture_maps


@torch.no_grad()
def attention_maps(model: nn.Module, x: Tensor, valid: Tensor) -> np.ndarray:
    """Every layer's effective map for the rows ``x`` (N, T): (L, N, H, T, T) float64."""
    with capture_maps(model) as maps:
        model(x, valid)
    return torch.stack(maps).double().numpy()


@contextmanager
def scaled_embeddings(model: nn.Module, keep: Tensor | None = None) -> Iterator[list[Tensor]]:
    """Within the block the token embeddings (B, T, C) are multiplied by ``keep`` (B, T) when given, and each
    forward's embedding tensor is appended to the yielded list (to take gradients against)."""
    seen: list[Tensor] = []

    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        out = out * keep[..., None].to(out.dtype) if keep is not None else out
        seen.append(out)
        return out

    handle = model.embed.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def target_logprob(logits: Tensor, positions: Tensor, targets: Tensor) -> Tensor:
    """log p(target) at each query's position: logits (Q, T, V) -> (Q,)."""
    q = torch.arange(positions.numel())
    return logits[q, positions].log_softmax(dim=-1)[q, targets]


def grad_times_input(model: nn.Module, x: Tensor, valid: Tensor, rows: Tensor, positions: Tensor,
                     targets: Tensor) -> np.ndarray:
    """|Σ_c ∂ log p(target)/∂e_jc · e_jc| per key position j, one query per copy of its row: (Q, T)."""
    with torch.enable_grad(), scaled_embeddings(model) as seen:
        logp = target_logprob(model(x[rows], valid[rows]), positions, targets)
        # each query is its own batch row, so the gradient of the sum keeps their gradients apart
        (grad,) = torch.autograd.grad(logp.sum(), seen[0])
        return (grad * seen[0]).sum(dim=-1).abs().detach().double().numpy()


@torch.no_grad()
def occlusion(model: nn.Module, x: Tensor, valid: Tensor, rows: Tensor, positions: Tensor,
              targets: Tensor) -> np.ndarray:
    """log p(target) minus log p(target) with token j's embedding zeroed, per key position j: (Q, T)."""
    T = x.shape[1]
    keep = 1.0 - torch.eye(T)  # copy j has position j occluded
    out = np.zeros((rows.numel(), T))
    for i, (r, p, t) in enumerate(zip(rows.tolist(), positions.tolist(), targets.tolist())):
        base = target_logprob(model(x[r:r + 1], valid[r:r + 1]), torch.tensor([p]), torch.tensor([t]))
        with scaled_embeddings(model, keep):
            logits = model(x[r].expand(T, T), valid[r].expand(T, T))  # (T copies, T, V)
        occluded = target_logprob(logits, torch.full((T,), p), torch.full((T,), t))
        out[i] = (base - occluded).double().numpy()
    return out
