import math

import pytest
import torch

from digitlab.config import PRESETS, ModelConfig
from digitlab.models import Dropout, build_model, predict_proba


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset, shape, expected", [
    ("seed-mlp", (28, 28), 109_386),   # 784*128+128 + 128*64+64 + 64*10+10
    ("seed-wide", (28, 28), 270_218),
    ("mlp-dropout", (28, 28), 270_218),
    ("seed-20x20", (20, 20), 10_575),  # 400*25+25 + 25*15+15 + 15*10+10
    ("cnn", (28, 28), 34_826),         # the Keras example's count
    ("best", (28, 28), 325_994),       # digitnet
])
def test_parameter_counts(preset, shape, expected):
    assert n_params(build_model(PRESETS[preset].model_config(shape))) == expected


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("shape", [(28, 28), (20, 20)])
def test_logits_shape(preset, shape):
    model = build_model(PRESETS[preset].model_config(shape))
    assert model(torch.rand(3, *shape)).shape == (3, 10)


def test_recipes_match_the_tutorials():
    r = {name: p.recipe for name, p in PRESETS.items()}
    assert (r["seed-20x20"].epochs, r["seed-wide"].epochs, r["seed-mlp"].epochs) == (40, 10, 10)
    for name in ("seed-20x20", "seed-wide", "seed-mlp", "mlp-dropout"):
        assert (r[name].batch_size, r[name].lr) == (32, 1e-3)
    assert r["seed-wide"].validation == r["seed-mlp"].validation == "test"
    assert r["seed-20x20"].validation == "none"
    assert (r["cnn"].epochs, r["cnn"].batch_size, r["cnn"].validation,
            r["cnn"].val_fraction) == (15, 128, "holdout", 0.1)
    assert r["mlp-dropout"].validation == "holdout", "non-seed presets never validate on test"
    assert PRESETS["seed-20x20"].dataset == "digits20"


def test_dropout_where_the_presets_say():
    def drops(name):
        model = build_model(PRESETS[name].model_config((28, 28)))
        return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops("mlp-dropout") == [0.2, 0.2, 0.2]
    assert drops("cnn") == [0.5]
    assert drops("seed-wide") == []


def test_keras_initialisation():
    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", (28, 28), (128, 64)))
    first = model.net[0]
    bound = math.sqrt(6 / (784 + 128))  # Glorot uniform
    assert first.weight.abs().max() <= bound
    assert first.weight.abs().max() > 0.95 * bound
    assert (first.bias == 0).all()


def test_dropout_only_in_training_mode():
    model = build_model(PRESETS["mlp-dropout"].model_config((28, 28)))
    x = torch.rand(4, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    probs = predict_proba(model, x.numpy())
    assert probs.shape == (4, 10)
    assert torch.allclose(torch.as_tensor(probs).sum(1), torch.ones(4))
    assert (predict_proba(model, x.numpy()) == probs).all()
    assert model.training, "predict_proba restores the mode"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_its_share_scaled_and_passes_gradients_through_the_mask(dtype):
    drop = Dropout(0.3)
    x = torch.full((200, 50, 10), 2.0, dtype=dtype, requires_grad=True)
    torch.manual_seed(5)
    y = drop(x)
    assert y.dtype == dtype
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 100,000 draws: 0.7 +- 0.0015
    assert torch.allclose(y[kept].float(), torch.tensor(2 / 0.7), rtol=1e-2)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    torch.manual_seed(5)
    assert torch.equal(drop(x), y), "the mask comes from torch's seeded random stream"
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0).train()(x) is x


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(ModelConfig("rnn", (28, 28)))


def test_fastnet_reads_channels_last_features_in_place():
    """A channels-last fastnet feeds its classifier the features in their own order (no
    flatten copy), so the gradient reaching its last ReLU is channels-last too (mixed layouts
    cost that ReLU's backward 20x); outputs and gradients are a channels-first copy's, in
    training and in eval mode."""
    import copy
    torch.manual_seed(0)
    plain = build_model(PRESETS["fastnet"].model_config((28, 28)))
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x, y = torch.rand(8, 28, 28), torch.randint(0, 10, (8,))
    layouts = []

    def watch(module, inputs, out):
        out.register_hook(lambda g: layouts.append(
            (g.is_contiguous(), g.is_contiguous(memory_format=torch.channels_last))))
    outputs = []
    for net in (plain, last):
        hook = net.features.register_forward_hook(watch)
        outputs.append(net(x))
        torch.nn.functional.cross_entropy(outputs[-1], y).backward()
        hook.remove()
    assert layouts == [(True, False), (False, True)]
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.parameters(), last.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    plain.eval()
    last.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), last(x), rtol=1e-5, atol=1e-6)
