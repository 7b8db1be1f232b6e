"""variants.baselines: the CNN and GRU share the Transformer's forward signature, respect causality, train in
bench.train's harness, and match its parameter count at the sizes the data_scaling sweep uses; the model registry
(baselines and students) behaves like the attention registry."""
from __future__ import annotations

import pytest
import torch

from bench.sweeps import data_scaling
from bench.tasks import local_motif
from bench.train import TrainConfig, model_config_for, train
import variants
from variants.model import ModelConfig, ModelSpec, Transformer, count_parameters

BASELINES = variants.model_names("baseline")


def _cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=11, max_seq_len=16, d_model=16, n_heads=2, n_layers=2)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("net", BASELINES)
def test_forward_shapes_match_the_transformer(net):
    x = torch.randint(0, 11, (3, 16))
    valid = torch.ones(3, 16, dtype=torch.bool)
    for kw, shape in ((dict(head="token"), (3, 16, 11)), (dict(head="classify", n_classes=4), (3, 4))):
        torch.manual_seed(0)
        out = variants.create_model(net, _cfg(**kw))(x, valid)
        assert out.shape == Transformer(_cfg(**kw))(x, valid).shape == shape
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("net", BASELINES)
def test_causal_outputs_do_not_see_the_future(net):
    torch.manual_seed(0)
    model = variants.create_model(net, _cfg(causal=True)).eval()
    x = torch.randint(0, 11, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 11  # change only positions >= 9
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


@pytest.mark.parametrize("net", BASELINES)
def test_classify_ignores_padding(net):
    torch.manual_seed(0)
    model = variants.create_model(net, _cfg(head="classify", n_classes=3)).eval()
    x = torch.randint(0, 11, (2, 16))
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[:, 12:] = False
    y = x.clone()
    y[:, 12:] = 0
    with torch.no_grad():
        assert torch.allclose(model(x, valid), model(y, valid), atol=1e-6)


@pytest.mark.parametrize("profile", sorted(data_scaling.PROFILES))
def test_parameter_counts_are_within_30_percent_of_the_transformer(profile):
    cfg = data_scaling.PROFILES[profile]
    for task in cfg.tasks:
        task_cfg = data_scaling.task_config(cfg, task)
        model_cfg = model_config_for(task_cfg, "full_sdpa", d_model=cfg.d_model, n_layers=cfg.n_layers,
                                     n_heads=cfg.n_heads)
        reference = count_parameters(Transformer(model_cfg))
        for name in ("cnn_baseline", "gru_baseline"):
            n = count_parameters(data_scaling.build_model(name, model_cfg, cfg.kernel))
            assert 0.7 <= n / reference <= 1.3, (profile, task, name, n, reference)


@pytest.mark.parametrize("net", BASELINES)
def test_baselines_train_on_a_trivial_motif_task_in_the_shared_harness(net):
    task = local_motif.Config(seq_len=12, vocab_size=8, motif_len=2, n_classes=2)
    tc = TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup=10, eval_every=25, target_accuracy=0.95,
                     n_train=512, n_eval=128, seed=0, threads=1)
    result = train(model_config_for(task, d_model=16, n_heads=2, n_layers=1), "local_motif", task, tc,
                   model=lambda cfg: variants.create_model(net, cfg))
    assert result.accuracy >= 0.9, result.curve
    assert result.curve[0][1] < 0.75  # it started near chance (1/2)


# ---------------------------------------------------------------------------------------------- model registry

def test_registry_lists_the_baselines_and_students_with_complete_specs():
    assert set(variants.model_names("baseline")) == {"cnn_baseline", "gru_baseline"}
    assert set(variants.model_names("student")) >= {"student_narrow", "student_shallow", "student_window",
                                                     "student_linear"}
    assert variants.model_names() == variants.model_names("baseline") + variants.model_names("student")
    for spec in variants.model_specs():
        assert spec.kind in variants.MODEL_KINDS and spec.description and spec.paper is not None
        assert variants.get_model(spec.name) is spec


def test_model_params_are_checked_against_the_declared_defaults():
    cfg = _cfg()
    conv = variants.create_model("cnn_baseline", cfg, kernel=5)
    assert conv.blocks[0].mixer.conv.kernel_size == (5,)
    assert variants.create_model("cnn_baseline", cfg).blocks[0].mixer.conv.kernel_size == (3,)
    with pytest.raises(TypeError, match="unknown parameter"):
        variants.create_model("gru_baseline", cfg, kernel=5)


def test_unknown_model_is_a_one_line_error_and_duplicates_raise():
    with pytest.raises(variants.UnknownVariantError, match="unknown model 'cnn'.*cnn_baseline") as info:
        variants.get_model("cnn")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="already registered"):
        variants.register_model(ModelSpec(name="cnn_baseline", kind="baseline", description="again",
                                          build=lambda cfg: None))
    with pytest.raises(ValueError, match="kind"):
        ModelSpec(name="x", kind="teacher", description="", build=lambda cfg: None)
