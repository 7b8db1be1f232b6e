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
from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Paper
from .model import ModelConfig, ModelSpec, Transformer, get_model, register_model

IGNORE_INDEX = -100  # torch's cross_entropy default; bench.tasks.IGNORE has the same value
HINTON = Paper("Distilling the Knowledge in a Neural Network", 2015, "1503.02531")


def teacher_config(base: ModelConfig, d_model: int = 64, n_layers: int = 2, n_heads: int = 4) -> ModelConfig:
    """The teacher preset: full attention at the larger size, on ``base``'s vocabulary, length and head."""
    return dataclasses.replace(base, attention="full_sdpa", attention_params={}, d_model=d_model,
                               n_layers=n_layers, n_heads=n_heads, d_ff=None)


def shrink(teacher: ModelConfig, *, width_div: int, heads_div: int, n_layers: int | None, attention: str | None,
           attention_params: Mapping[str, Any]) -> ModelConfig:
    """``teacher`` with d_model and d_ff divided by ``width_div``, n_heads by ``heads_div`` (at least 1), and
    ``n_layers`` / ``attention`` (with its params) replaced where given (None: the teacher's)."""
    if width_div < 1 or heads_div < 1 or (n_layers is not None and n_layers < 1):
        raise ValueError("width_div, heads_div and n_layers must be >= 1")
    d_model, n_heads = teacher.d_model // width_div, max(1, teacher.n_heads // heads_div)
    d_ff = (teacher.d_ff or 4 * teacher.d_model) // width_div
    return dataclasses.replace(teacher, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                               n_layers=n_layers or teacher.n_layers, attention=attention or teacher.attention,
                               attention_params=dict(attention_params) if attention else teacher.attention_params)


def student_config(teacher: ModelConfig, name: str, **params: Any) -> ModelConfig:
    """The config of the registered student ``name`` of ``teacher``; ``params`` override the student's."""
    spec = get_model(name)
    if spec.kind != "student":
        raise ValueError(f"{name!r} is a {spec.kind}, not a student")
    try:
        return shrink(teacher, **spec.resolve_params(params))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def build_student(teacher: ModelConfig, **params: Any) -> nn.Module:
    """The student Transformer: ``teacher`` shrunk by the student's params."""
    return Transformer(shrink(teacher, **params))


def _register_student(name: str, description: str, *, n_layers: int | None = None, attention: str | None = None,
                      attention_params: Mapping[str, Any] | None = None) -> ModelSpec:
    """Every student halves the teacher's width and heads; they differ in depth and attention."""
    params = {"width_div": 2, "heads_div": 2, "n_layers": n_layers, "attention": attention,
              "attention_params": dict(attention_params or {})}
    return register_model(ModelSpec(name=name, kind="student", description=description, build=build_student,
                                    paper=HINTON, default_params=params))


_register_student("student_narrow", "half width, half heads, same depth")
_register_student("student_shallow", "half width, half heads, one layer (DistilBERT halves the depth)", n_layers=1)
_register_student("student_window", "half width, sliding-window attention (reach 8)", attention="sparse_window",
                  attention_params={"window": 8})
_register_student("student_linear", "half width, linear attention (Katharopoulos et al. 2020)",
                  attention="linear_elu")


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
