"""One attention case as something to call: its shape, its inputs, and a zero-argument function per phase.

The timing, probe and FLOP helpers of ``bench.measure`` all take such a function, so the CLI sweeps, the gate and
asv measure the same thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

import variants
from variants.model import ModelConfig, Transformer

PHASES = ("forward", "forward_backward", "train_step")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


@dataclass(frozen=True)
class Shape:
    """One attention problem: batch, heads, length, head dim, dtype name, device, causal."""

    B: int
    H: int
    T: int
    D: int
    dtype: str = "float32"
    device: str = "cpu"
    causal: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def resolve_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N'; asking for CUDA without a GPU is a one-line error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch.cuda.is_available() is False")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use cpu or cuda")
    return torch.device(name)


def build_attention(name: str, shape: Shape, params: dict[str, Any] | None = None) -> variants.Attention:
    """The registered variant ``name`` for ``shape``, seeded (``torch.manual_seed(0)``: the same in every process)."""
    torch.manual_seed(0)
    attn = variants.create(name, d_head=shape.D, n_heads=shape.H, causal=shape.causal,
                           max_seq_len=shape.T, **(params or {}))
    return attn.to(device=resolve_device(shape.device), dtype=shape.torch_dtype)


def make_qkv(shape: Shape, seed: int = 0, requires_grad: bool = False) -> list[torch.Tensor]:
    """Seeded q, k, v, each (B, H, T, D), on the shape's device and dtype."""
    g = torch.Generator().manual_seed(seed)
    dev = resolve_device(shape.device)
    return [torch.randn(shape.B, shape.H, shape.T, shape.D, generator=g).to(dev, shape.torch_dtype)
            .requires_grad_(requires_grad) for _ in range(3)]


def phase_callable(name: str, shape: Shape, phase: str, params: dict[str, Any] | None = None,
                   seed: int = 0) -> Callable[[], Any]:
    """A zero-argument function that runs one phase of one case; inputs are built here, outside the timing."""
    if phase == "forward":
        attn = build_attention(name, shape, params)
        q, k, v = make_qkv(shape, seed)

        def forward() -> Any:
            with torch.inference_mode():
                return attn(q, k, v)
        return forward
    if phase == "forward_backward":
        attn = build_attention(name, shape, params)
        q, k, v = make_qkv(shape, seed, requires_grad=True)

        def forward_backward() -> None:
            attn(q, k, v).sum().backward()
            for t in (q, k, v):
                t.grad = None
        return forward_backward
    if phase == "train_step":
        return train_step_callable(name, shape, params, seed)
    raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")


def train_step_callable(name: str, shape: Shape, params: dict[str, Any] | None, seed: int,
                        vocab: int = 256) -> Callable[[], None]:
    """One AdamW step of the small model (d_model = H·D, 2 layers) on random tokens of length T."""
    torch.manual_seed(seed)
    dev = resolve_device(shape.device)
    cfg = ModelConfig(vocab_size=vocab, max_seq_len=shape.T, attention=name, attention_params=dict(params or {}),
                      d_model=shape.H * shape.D, n_heads=shape.H, n_layers=2, causal=shape.causal)
    model = Transformer(cfg).to(dev, shape.torch_dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, vocab, (shape.B, shape.T), device=dev)
    targets = torch.randint(0, vocab, (shape.B, shape.T), device=dev)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        # logits (B, T, V) -> (B·T, V) against targets (B, T) -> (B·T,)
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1).float(), targets.flatten())
        loss.backward()
        opt.step()
    return train_step


def log2_grid(lo: int, hi: int) -> tuple[int, ...]:
    """Powers of two from lo to hi inclusive (lo, hi themselves powers of two)."""
    return tuple(2 ** e for e in range(int(math.log2(lo)), int(math.log2(hi)) + 1))
