"""Trained models kept between sweeps: the accuracy sweep saves each model it trains, keyed by its case id, and
the interpretability sweep loads them instead of training twice.

A checkpoint holds the model's ``ModelConfig`` (as a dict), its weights and the case it came from; it lives in
the cache folder (``$ATTENTION_LIMITS_CACHE``, else ``$XDG_CACHE_HOME/attention-limits``, else
``~/.cache/attention-limits``), under ``models/<case id>.pt``. The case id hashes every parameter of the
training run, so a checkpoint is only ever reused for the exact configuration that produced it.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from variants.model import ModelConfig, Transformer


def cache_dir() -> Path:
    """The folder that holds ``models/``."""
    if os.environ.get("ATTENTION_LIMITS_CACHE"):
        return Path(os.environ["ATTENTION_LIMITS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attention-limits"


def path_of(case_id: str) -> Path:
    return cache_dir() / "models" / f"{case_id}.pt"


def save(case_id: str, model: nn.Module, model_cfg: ModelConfig, case: dict[str, Any]) -> Path:
    """Write the checkpoint atomically (a reader never sees half a file); returns its path."""
    path = path_of(case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"model_config": asdict(model_cfg), "state_dict": model.state_dict(), "case": case}, tmp)
    os.replace(tmp, path)
    return path


def load(case_id: str) -> tuple[nn.Module, dict[str, Any]] | None:
    """(the Transformer in eval mode, the case it was trained for), or None when there is no readable checkpoint."""
    path = path_of(case_id)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    model = Transformer(ModelConfig(**blob["model_config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob["case"]
