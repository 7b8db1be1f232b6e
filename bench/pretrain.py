"""Self-supervised pretraining for the data_scaling sweep: a Transformer body that has read unlabelled text.

The body is the fine-tuned model's own Transformer (same width, depth, attention, length) trained for a fixed
budget of ``steps`` on next-byte prediction (causal, a token head) over windows of the labelled task's train-split
files only (``text_kind.Config.source()``: text_bytes' file split, so no val or test file is ever read). It is
cached once per (seed, every knob) in the checkpoint cache (``bench.checkpoints``, keyed by a hash of
``PretrainSpec``), so every labelled size n of a seed fine-tunes the same body, and the rows carry what it cost
(steps, seconds of the run that trained it) and its held-out bits per byte. ``load_body`` copies every weight but
the head into a fresh classifier: a new head is learned on the labels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench import checkpoints
from bench.tasks import text_bytes
from bench.train import TrainConfig, deterministic, fit
from variants.model import ModelConfig, Transformer

HEAD = "head."  # the state-dict prefix of the output layer, the one part not transferred


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that defines one pretrained body: the text, the model and the budget."""

    text: text_bytes.Config  # the train-split text read (its files, cap and window length)
    model: ModelConfig  # the fine-tuned model's config; pretraining swaps in a causal next-byte head
    steps: int  # optimiser steps, the fixed budget
    windows: int  # distinct training windows drawn from the train split
    batch_size: int
    lr: float
    seed: int
    threads: int
    n_eval: int = 256  # val windows for the recorded bits per byte

    @property
    def id(self) -> str:
        """A hash of every field: a cached body is only reused for the exact spec that made it."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return "pretrain-" + hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()

    def lm_config(self) -> ModelConfig:
        """The pretraining model: the same body with a causal next-byte head."""
        return dataclasses.replace(self.model, head="token", n_classes=None, causal=True)


def pretrain(spec: PretrainSpec) -> tuple[nn.Module, dict[str, Any]]:
    """Train the body from scratch for ``spec.steps``; (the LM, its cost and held-out bits per byte)."""
    tc = TrainConfig(steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr, eval_every=spec.steps,
                     target_accuracy=1.0, n_train=spec.windows, n_eval=spec.n_eval, seed=spec.seed,
                     threads=spec.threads)
    train = text_bytes.make(spec.text, spec.seed, spec.windows, "train")
    val = text_bytes.make(spec.text, spec.seed, spec.n_eval, "val")
    with deterministic(spec.threads):
        torch.manual_seed(spec.seed)
        model = Transformer(spec.lm_config())
        start = time.perf_counter()
        curve, _, _ = fit(model, train, val, tc)  # its last point is the val loss at the final step
        seconds = time.perf_counter() - start
    loss = curve[-1][2]
    return model, {"pretrain_steps": spec.steps, "pretrain_s": seconds, "pretrain_windows": spec.windows,
                   "pretrain_bpb": float(text_bytes.bits_per_byte(loss))}


def pretrained_body(spec: PretrainSpec) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the body's state dict, its cost) from the cache, pretraining and caching it first when absent."""
    cached = checkpoints.load(spec.id)
    if cached is not None:
        model, meta = cached
        return model.state_dict(), {**meta, "pretrain_cached": True}
    model, meta = pretrain(spec)
    checkpoints.save(spec.id, model, spec.lm_config(), meta)
    return model.state_dict(), {**meta, "pretrain_cached": False}


def load_body(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy every pretrained weight but the head into ``model`` (whose own head stays freshly initialised)."""
    body = {k: v for k, v in state.items() if not k.startswith(HEAD)}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith(HEAD) for k in missing):
        raise ValueError(f"pretrained body does not fit the model: missing {missing}, unexpected {unexpected}")
    return model
