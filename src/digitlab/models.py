"""All of digitlab's networks, and the presets that pair each with its training recipe.

Every network takes images (B, H, W) float32 in [0, 1] and returns logits (B, 10); softmax is
applied only when probabilities are wanted, which is the same model as the tutorials' softmax
output layer trained with cross-entropy. A network is rebuilt from its :class:`ModelConfig`
alone, which every model file carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["MLP", "PRESETS", "KerasCNN", "ModelConfig", "Preset", "Recipe", "build_model",
           "predict_logits", "predict_proba"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; saved inside every model file."""

    arch: str  # "mlp" or "cnn"
    input_shape: tuple[int, int]  # (H, W) of the images it reads
    hidden: tuple[int, ...] = ()  # widths of the hidden dense layers ("mlp")
    dropout: float = 0.0  # after each hidden layer ("mlp"), before the classifier ("cnn")
    n_classes: int = 10


class MLP(nn.Module):
    """Dense layers with ReLU (and optional dropout) between them; the last layer gives logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, w = config.input_shape
        layers: list[nn.Module] = []
        width = h * w
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = size
        layers.append(nn.Linear(width, config.n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, H, W) -> (B, H*W) -> (B, 10)


class KerasCNN(nn.Module):
    """The Keras example convnet: conv 3x3 32 -> max-pool 2 -> conv 3x3 64 -> max-pool 2 ->
    dropout -> dense to logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, w = config.input_shape
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(config.dropout)
        # Unpadded 3x3 convs take 2 px off each side length, 2x2 pools halve it (rounding down).
        out_h, out_w = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
        self.fc = nn.Linear(64 * out_h * out_w, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, 28, 28)
        x = self.pool(torch.relu(self.conv1(x)))  # (B, 32, 13, 13)
        x = self.pool(torch.relu(self.conv2(x)))  # (B, 64, 5, 5)
        return self.fc(self.dropout(x.flatten(1)))  # (B, 1600) -> (B, 10)


_ARCHS = {"mlp": MLP, "cnn": KerasCNN}


def _keras_init_(model: nn.Module) -> None:
    """Keras's defaults, which the tutorials' numbers were reached with: Glorot-uniform weights,
    zero biases (PyTorch's own default is a scaled Kaiming-uniform)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for ``config`` (seed torch's RNG first for repeatability)."""
    if config.arch not in _ARCHS:
        raise ValueError(f"unknown architecture {config.arch!r}")
    model = _ARCHS[config.arch](config)
    _keras_init_(model)
    return model


@dataclass(frozen=True)
class Recipe:
    """How a preset trains: Adam with these settings and cross-entropy on the logits."""

    epochs: int
    batch_size: int
    lr: float = 1e-3
    adam_eps: float = 1e-7  # Keras's Adam default; PyTorch's is 1e-8
    # "test": validate on the test set, as the seed tutorials do; "holdout": on a seeded random
    # val_fraction of the training set; "none": no validation (the 20x20 tutorial has none).
    validation: str = "holdout"
    val_fraction: float = 0.1


@dataclass(frozen=True)
class Preset:
    """A named network with its default dataset and training recipe."""

    name: str
    description: str
    dataset: str
    arch: str
    recipe: Recipe
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0

    def model_config(self, input_shape: tuple[int, int]) -> ModelConfig:
        return ModelConfig(self.arch, tuple(input_shape), self.hidden, self.dropout)


PRESETS = {p.name: p for p in (
    Preset("seed-20x20", "tutorial 1: dense 400-25-15-10 on 20x20 digits",
           "digits20", "mlp", Recipe(epochs=40, batch_size=32, validation="none"),
           hidden=(25, 15)),
    Preset("seed-wide", "tutorial 2: dense 784-128-256-512-10, validated on the test set",
           "mnist", "mlp", Recipe(epochs=10, batch_size=32, validation="test"),
           hidden=(128, 256, 512)),
    Preset("seed-mlp", "tutorial 3: dense 784-128-64-10, validated on the test set",
           "mnist", "mlp", Recipe(epochs=10, batch_size=32, validation="test"),
           hidden=(128, 64)),
    Preset("mlp-dropout", "seed-wide with dropout 0.2 after each hidden layer",
           "mnist", "mlp", Recipe(epochs=10, batch_size=32), hidden=(128, 256, 512),
           dropout=0.2),
    Preset("cnn", "the Keras example convnet: conv32-pool-conv64-pool-dropout0.5-dense",
           "mnist", "cnn", Recipe(epochs=15, batch_size=128), dropout=0.5),
)}


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Logits (N, 10) for images ``x`` (N, H, W) in eval mode, in batches to bound memory."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def predict_proba(model: nn.Module, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, 10) float32 for images (N, H, W) float32 in [0, 1]."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device)
    return torch.softmax(predict_logits(model, x), dim=1).cpu().numpy()
