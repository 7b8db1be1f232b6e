"""bench.pretrain: the body is pretrained once per spec and cached; fine-tuning really starts from it (after the
same few steps on the same batches its loss is below scratch's) and only the head is new."""
from __future__ import annotations

import torch

from bench import checkpoints
from bench.pretrain import PretrainSpec, load_body, pretrained_body
from bench.tasks import text_kind as tk
from bench.train import TrainConfig, evaluate, fit, model_config_for
from variants.model import Transformer

TASK = tk.Config(seq_len=32, max_pool_bytes=200_000)


def spec(steps: int = 300) -> PretrainSpec:
    model = model_config_for(TASK, "full_sdpa", d_model=32, n_layers=2, n_heads=2)
    return PretrainSpec(text=TASK.source(), model=model, steps=steps, windows=4096, batch_size=32, lr=3e-3,
                        seed=0, threads=1, n_eval=64)


def test_fine_tuning_starts_from_the_pretrained_body():
    s = spec()
    state, cost = pretrained_body(s)
    assert not cost["pretrain_cached"] and cost["pretrain_steps"] == 300 and cost["pretrain_s"] > 0
    assert cost["pretrain_bpb"] < 5.0  # it learnt something: 8 bits per byte is uniform over bytes
    again, cost2 = pretrained_body(s)
    assert cost2["pretrain_cached"] and cost2["pretrain_s"] == cost["pretrain_s"]
    assert checkpoints.path_of(s.id).exists()
    train, batch = tk.make(TASK, 0, 256, "train"), tk.make(TASK, 0, 128, "val")
    tc = TrainConfig(steps=40, eval_every=40, target_accuracy=1.0, n_train=256, n_eval=128, lr=3e-3, threads=1)
    losses = {}
    for name in ("scratch", "pretrained"):
        torch.manual_seed(0)
        net = Transformer(s.model)
        if name == "pretrained":
            load_body(net, state)
            assert torch.equal(net.embed.weight, state["embed.weight"])
            assert net.head.weight.shape != state["head.weight"].shape  # a new classification head
        fit(net, train, batch, tc)  # the same short fine-tuning, the same batches
        losses[name] = evaluate(net, batch, 128)[1]
    assert losses["pretrained"] < losses["scratch"]


def test_a_different_budget_is_a_different_body():
    assert spec(300).id != spec(301).id and spec(300).id == spec(300).id
