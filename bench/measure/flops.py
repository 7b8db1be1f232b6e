"""Matmul FLOPs of one forward, counted by ``FlopCounterMode`` on the math path (it counts 0 for the fused CPU
SDPA kernel), to set beside the spec's analytic count."""
from __future__ import annotations

from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench.measure.workload import Shape, build_attention, make_qkv


def counted_flops(name: str, shape: Shape, params: dict[str, Any] | None = None) -> int:
    """Matmul FLOPs of one forward on the math path (B as given).

    Counted on the meta device (shapes only, no memory: the math path of full attention at T = 32768 would
    materialise 17 GiB of scores); a variant whose forward needs real values (a data-dependent layout, say)
    is counted on its own device instead.
    """
    attn = build_attention(name, shape, params)
    try:
        q, k, v = (torch.empty(shape.B, shape.H, shape.T, shape.D, dtype=shape.torch_dtype, device="meta")
                   for _ in range(3))
        return _count_flops(attn.to("meta"), q, k, v)
    except (RuntimeError, NotImplementedError):
        attn = build_attention(name, shape, params)
        return _count_flops(attn, *make_qkv(shape))


def _count_flops(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        attn(q, k, v)
    return int(counter.get_total_flops())
