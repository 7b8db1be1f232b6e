from __future__ import annotations

import pytest
import torch

import variants
from variants.model import ModelConfig, Transformer, count_parameters, masked_mean


def config(name: str, **kw) -> ModelConfig:
    base = dict(vocab_size=20, max_seq_len=48, attention=name, d_model=16, n_heads=2, n_layers=2)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("name", variants.names())
def test_parameter_counts_differ_only_by_the_variants_own(name):
    torch.manual_seed(0)
    model = Transformer(config(name))
    own = sum(count_parameters(block.mixer.attn) for block in model.blocks)
    shared = count_parameters(Transformer(config("full_sdpa")))
    assert count_parameters(model) - own == shared


@pytest.mark.parametrize("name", variants.names())
def test_token_and_classify_heads(name):
    torch.manual_seed(0)
    tokens = torch.randint(0, 20, (3, 40))
    valid = torch.arange(40)[None, :] < torch.tensor([40, 30, 12])[:, None]
    causal = variants.get(name).spec.supports_causal
    logits = Transformer(config(name, causal=causal))(tokens, valid)
    assert logits.shape == (3, 40, 20) and torch.isfinite(logits).all()
    pooled = Transformer(config(name, head="classify", n_classes=5))(tokens, valid)
    assert pooled.shape == (3, 5) and torch.isfinite(pooled).all()


def test_classification_ignores_padding_content():
    torch.manual_seed(0)
    model = Transformer(config("full_sdpa", head="classify", n_classes=4))
    tokens = torch.randint(0, 20, (2, 24))
    valid = torch.arange(24)[None, :] < torch.tensor([24, 10])[:, None]
    other = tokens.clone()
    other[~valid] = (other[~valid] + 7) % 20
    torch.testing.assert_close(model(tokens, valid), model(other, valid))


def test_causal_model_does_not_see_the_future():
    torch.manual_seed(0)
    model = Transformer(config("full_naive", causal=True))
    tokens = torch.randint(0, 20, (1, 30))
    changed = tokens.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 20
    torch.testing.assert_close(model(tokens)[:, :20], model(changed)[:, :20])


def test_token_shift_starts_as_identity_and_mixes_the_previous_position():
    torch.manual_seed(0)
    cfg = config("full_sdpa")
    shift = Transformer(cfg).shift
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(shift(x), x)
    with torch.no_grad():
        shift.conv.weight[:, 0, 0] = 1.0
    y = shift(x)
    torch.testing.assert_close(y[:, 1:], x[:, 1:] + x[:, :-1])
    torch.testing.assert_close(y[:, 0], x[:, 0])


def test_masked_mean():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0


def test_bad_configs_raise_one_line_errors():
    with pytest.raises(variants.UnknownVariantError, match="unknown variant"):
        config("full_nope")
    with pytest.raises(ValueError, match="divisible"):
        config("full_sdpa", d_model=15)
    with pytest.raises(ValueError, match="head must be"):
        config("full_sdpa", head="pool")
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        Transformer(config("full_sdpa"))(torch.zeros(1, 49, dtype=torch.long))
