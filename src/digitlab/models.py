"""All of digitlab's networks (the presets that pair each with a recipe are in config.py).

Every network takes images (B, H, W) float32 in [0, 1] and returns logits (B, 10); softmax is
applied only when probabilities are wanted, which is the same model as the tutorials' softmax
output layer trained with cross-entropy. A network is rebuilt from its :class:`ModelConfig`
alone, which every model file carries.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import ModelConfig

__all__ = ["MLP", "DigitNet", "Dropout", "FastNet", "KerasCNN", "build_model", "predict_logits",
           "predict_proba"]


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with its mask drawn by ``torch.rand``, from the same random
    stream: the same layer, faster on CPUs where ``bernoulli_`` draws one number at a time
    (on this project's 2-core AMD machine, forward and backward over a 128x32x12x12 batch:
    1.7 ms against 4.6 ms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = (torch.rand(x.shape, device=x.device) < keep).to(x.dtype).mul_(1 / keep)
        return x * mask


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
                layers.append(Dropout(config.dropout))
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
        self.dropout = Dropout(config.dropout)
        # Unpadded 3x3 convs take 2 px off each side length, 2x2 pools halve it (rounding down).
        out_h, out_w = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
        self.fc = nn.Linear(64 * out_h * out_w, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, 28, 28)
        x = self.pool(torch.relu(self.conv1(x)))  # (B, 32, 13, 13)
        x = self.pool(torch.relu(self.conv2(x)))  # (B, 64, 5, 5)
        return self.fc(self.dropout(x.flatten(1)))  # (B, 1600) -> (B, 10)


def _conv(c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    # no bias: the batch norm right after it has one
    return [nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class DigitNet(nn.Module):
    """A compact convnet of the kind that tops MNIST without a GPU: two stages of
    3x3, 3x3, strided 5x5 convolutions with batch norm, a convolution over what is left,
    dropout, and a linear classifier (326k parameters)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, w = config.input_shape
        # 3x3 unpadded convs take 2 px each, the padded stride-2 5x5 halves (rounding up)
        side_h = -(-(-(-(h - 4) // 2) - 4) // 2)
        side_w = -(-(-(-(w - 4) // 2) - 4) // 2)
        if min(side_h, side_w) < 1:
            raise ValueError(f"digitnet needs images of at least 14x14, not {h}x{w}")
        p = config.dropout
        self.features = nn.Sequential(
            *_conv(1, 32, 3), *_conv(32, 32, 3), *_conv(32, 32, 5, 2, 2), Dropout(p),
            *_conv(32, 64, 3), *_conv(64, 64, 3), *_conv(64, 64, 5, 2, 2), Dropout(p),
            *_conv(64, 128, (side_h, side_w)))
        self.classifier = nn.Sequential(nn.Flatten(), Dropout(p),
                                        nn.Linear(128, config.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, 28, 28)
        x = self.features(x)  # (B, 128, 1, 1)
        return self.classifier(x)  # (B, 10)


class FastNet(nn.Module):
    """A small convnet for the fast recipe: two strided 5x5 convolutions with batch norm and a
    linear classifier (29k parameters). Strides instead of pooling halve the time per step on
    a CPU; it reaches 99.1% on MNIST in a few epochs and not much more."""

    keras_init = False  # trained with PyTorch's own initialisation, which suits it better

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, w = config.input_shape
        out_h, out_w = ((h + 1) // 2 + 1) // 2, ((w + 1) // 2 + 1) // 2
        self.features = nn.Sequential(*_conv(1, 16, 5, 2, 2), *_conv(16, 32, 5, 2, 2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * out_h * out_w,
                                                                config.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x.unsqueeze(1))  # (B, 32, 7, 7)
        if _channels_last_only(x):
            return _linear_channels_last(x, self.classifier[1])
        return self.classifier(x)  # (B, 10)


def _channels_last_only(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _linear_channels_last(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(flatten(x))`` for channels-last ``x`` (B, C, H, W), without copying it: x is
    read in its own (row, column, channel) order, and the weights' columns are put in that
    order instead (a copy of 16k numbers). Flatten copied x into (channel, row, column)
    order and handed back a gradient in that order, against which the channels-last ReLU
    before it took 2.2-2.4 ms a step here instead of 0.1."""
    b, c, h, w = x.shape
    weight = linear.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, h * w * c)
    return nn.functional.linear(x.permute(0, 2, 3, 1).reshape(b, -1), weight, linear.bias)


_ARCHS = {"mlp": MLP, "cnn": KerasCNN, "digitnet": DigitNet, "fastnet": FastNet}


def _keras_init_(model: nn.Module) -> None:
    """Keras's defaults, which the tutorials' numbers were reached with: Glorot-uniform weights,
    zero biases (PyTorch's own default is a scaled Kaiming-uniform)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for ``config`` (seed torch's RNG first for repeatability)."""
    if config.arch not in _ARCHS:
        raise ValueError(f"unknown architecture {config.arch!r}")
    model = _ARCHS[config.arch](config)
    if getattr(model, "keras_init", True):
        _keras_init_(model)
    return model


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Logits (N, 10) for images ``x`` (N, H, W) in eval mode, in batches to bound memory.
    A convnet runs with channels-last weights on a CPU (digitnet: 10,000 images in 3.3 s
    against 5.4 s here), then gets its own layout back."""
    was_training = model.training
    weights = [p for p in model.parameters() if p.dim() == 4]
    # (a weight with one input channel is both; one with more is contiguous in one only)
    layout = (torch.contiguous_format if all(p.is_contiguous() for p in weights)
              else torch.channels_last)
    model.eval()
    # the layout changes outside inference mode: weights made there could not train again
    if weights and x.device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            return torch.cat([model(x[i:i + batch_size])
                              for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
        if weights:
            model.to(memory_format=layout)


def predict_proba(model: nn.Module, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Softmax probabilities (N, 10) float32 for images (N, H, W) float32 in [0, 1]."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device)
    return torch.softmax(predict_logits(model, x), dim=1).cpu().numpy()
