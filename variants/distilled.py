"""Distilled small models: student presets relative to a teacher, and the knowledge-distillation loss.

Students are model-level variants (DESIGN.md): the same ``variants.model.Transformer`` with fewer layers, a
narrower width, fewer heads and/or a lightweight attention variant, derived from the teacher's ``ModelConfig`` so
that "smaller than the teacher" holds by construction for any teacher.

Loss: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531:

    L = α · τ² · KL(softmax(t/τ) ‖ softmax(s/τ)) + (1 − α) · CE(s, y)

with teacher logits t, student logits s, temperature τ; the τ² keeps the soft term's gradients on the scale of the
hard term's as τ changes (their section 2). Both terms are means over the scored positions only (targets
``!= IGNORE_INDEX``) for token heads, over sequences for classify heads. DistilBERT (Sanh et al. 2019,
arXiv 1910.01108) is the model-level recipe this mirrors: half the layers, a cosine term we leave out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .model import ModelConfig

IGNORE_INDEX = -100  # torch's cross_entropy default; bench.tasks.IGNORE has the same value


@dataclass(frozen=True)
class StudentPreset:
    """How a student shrinks its teacher: width and heads divided, layers set, optionally another attention."""

    name: str
    width_div: int = 2  # d_model (and d_ff) divided by this
    heads_div: int = 1  # n_heads divided by this (at least 1)
    n_layers: int | None = None  # None: the teacher's
    attention: str | None = None  # None: the teacher's
    attention_params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


STUDENTS: dict[str, StudentPreset] = {p.name: p for p in (
    StudentPreset("student_narrow", width_div=2, heads_div=2, note="half width, half heads, same depth"),
    StudentPreset("student_shallow", width_div=2, heads_div=2, n_layers=1,
                  note="half width, half heads, one layer (DistilBERT halves the depth)"),
    StudentPreset("student_window", width_div=2, heads_div=2, attention="sparse_window",
                  attention_params={"window": 8}, note="half width, sliding-window attention (reach 8)"),
    StudentPreset("student_linear", width_div=2, heads_div=2, attention="linear_elu",
                  note="half width, linear attention (Katharopoulos et al. 2020)"),
)}


def teacher_config(base: ModelConfig, d_model: int = 64, n_layers: int = 2, n_heads: int = 4) -> ModelConfig:
    """The teacher preset: full attention at the larger size, on ``base``'s vocabulary, length and head."""
    return dataclasses.replace(base, attention="full_sdpa", attention_params={}, d_model=d_model,
                               n_layers=n_layers, n_heads=n_heads, d_ff=None)


def student_config(teacher: ModelConfig, preset: StudentPreset | str) -> ModelConfig:
    """The student of ``teacher`` described by ``preset`` (a preset or a name in ``STUDENTS``)."""
    p = STUDENTS[preset] if isinstance(preset, str) else preset
    if p.width_div < 1 or p.heads_div < 1 or (p.n_layers is not None and p.n_layers < 1):
        raise ValueError(f"{p.name}: width_div, heads_div and n_layers must be >= 1")
    d_model, n_heads = teacher.d_model // p.width_div, max(1, teacher.n_heads // p.heads_div)
    d_ff = (teacher.d_ff or 4 * teacher.d_model) // p.width_div
    return dataclasses.replace(teacher, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                               n_layers=p.n_layers or teacher.n_layers,
                               attention=p.attention or teacher.attention,
                               attention_params=dict(p.attention_params) if p.attention else teacher.attention_params)


def _scored(student: Tensor, teacher: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten to (N, V) / (N,) and keep the scored rows: token heads drop ``IGNORE_INDEX`` targets."""
    s, t, flat_y = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1]), y.reshape(-1)
    keep = flat_y != IGNORE_INDEX
    return s[keep], t[keep], flat_y[keep]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, y: Tensor, alpha: float = 0.5,
            temperature: float = 2.0) -> Tensor:
    """Hinton et al. 2015: α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1 − α)·CE(s, y), mean over scored positions.

    Logits (B, T, V) with y (B, T) for token heads, or (B, C) with y (B,) for classify heads; the teacher's logits
    are treated as constants (detached). α = 0 is plain cross-entropy."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"kd_loss: alpha must be in [0, 1] and temperature > 0, got {alpha}, {temperature}")
    s, t, target = _scored(student_logits, teacher_logits.detach(), y)
    if target.numel() == 0:
        raise ValueError("kd_loss: no scored position in the batch")
    hard = F.cross_entropy(s, target)
    if alpha == 0.0:
        return hard
    log_p_s = F.log_softmax(s / temperature, dim=-1)
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    soft = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")  # Σ p_t (log p_t − log p_s) / N
    return alpha * temperature ** 2 * soft + (1.0 - alpha) * hard
