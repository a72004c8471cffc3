"""Inference without PyTorch: a network's forward pass in NumPy, from a weights-only .npz.

``import torch`` alone takes about a second here, most of a `digitlab predict photo.png`.
The networks are small, so NumPy runs them in a millisecond or two: batch norm is folded into
the convolution before it, convolutions are matrix products over sliding windows, dropout is
the identity at inference. The .npz holds plain arrays (loaded with ``allow_pickle=False``:
nothing in it can run) and the network config as JSON; :func:`export_npz` writes it from a
PyTorch model, and tests/test_npinfer.py checks the two agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .config import ModelConfig

__all__ = ["NumpyNet", "export_npz"]

_BN_EPS = 1e-5  # PyTorch's BatchNorm2d default


def export_npz(loaded, path: str | Path) -> None:
    """Write ``loaded`` (a checkpoint.LoadedModel) as a NumPy-only inference file."""
    from dataclasses import asdict

    import torch
    state = {k: v.detach().cpu().numpy() for k, v in loaded.model.state_dict().items()
             if v.dtype.is_floating_point}
    header = json.dumps({"model_config": asdict(loaded.config), "meta": loaded.meta,
                         "torch": torch.__version__})
    np.savez_compressed(path, __header__=np.array(header), **state)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1,
          pad: int = 0) -> np.ndarray:
    """(N, C, H, W) * (O, C, k, k) -> (N, O, H', W'), by a product over sliding windows."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, H', W', O)
    return np.ascontiguousarray((out + b).transpose(0, 3, 1, 2))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _pool(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


class NumpyNet:
    """A network from an .npz written by :func:`export_npz`; call it on images (N, H, W)
    float32 in [0, 1] for softmax probabilities (N, 10)."""

    def __init__(self, path: str | Path):
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(str(npz["__header__"]))
            self.w = {k: npz[k].astype(np.float32) for k in npz.files if k != "__header__"}
        raw = header["model_config"]
        self.config = ModelConfig(**{**raw, "input_shape": tuple(raw["input_shape"]),
                                     "hidden": tuple(raw["hidden"])})
        self.meta = header["meta"]
        self.path = Path(path)
        self.model = None  # no PyTorch module: this object is the model
        self.parameters = sum(v.size for k, v in self.w.items() if "running" not in k)
        self.arch = self.config.arch
        if self.arch not in ("mlp", "cnn", "digitnet", "fastnet"):
            raise ValueError(f"no NumPy forward pass for {self.arch!r}")
        self._fold()

    def _fold(self) -> None:
        """Fold each batch norm into the convolution before it (inference only)."""
        convs = sorted({k.rsplit(".", 1)[0] for k in self.w if k.endswith(".running_mean")})
        for bn in convs:
            prefix, index = bn.rsplit(".", 1)
            conv = f"{prefix}.{int(index) - 1}"
            scale = self.w[f"{bn}.weight"] / np.sqrt(self.w[f"{bn}.running_var"] + _BN_EPS)
            self.w[f"{conv}.weight"] = self.w[f"{conv}.weight"] * scale[:, None, None, None]
            self.w[f"{conv}.bias"] = self.w[f"{bn}.bias"] - self.w[f"{bn}.running_mean"] * scale

    def _layer(self, name: str):
        return self.w[f"{name}.weight"], self.w[f"{name}.bias"]

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if self.arch == "mlp":
            h = x.reshape(len(x), -1)
            names = sorted({k.rsplit(".", 1)[0] for k in self.w}, key=lambda s:
                           int(s.split(".")[1]))
            for i, name in enumerate(names):
                w, b = self._layer(name)
                h = h @ w.T + b
                if i < len(names) - 1:
                    _relu(h)
            return h
        x = x[:, None]  # (N, 1, H, W)
        if self.arch == "cnn":
            x = _pool(_relu(_conv(x, *self._layer("conv1"))))
            x = _pool(_relu(_conv(x, *self._layer("conv2"))))
            w, b = self._layer("fc")
            return x.reshape(len(x), -1) @ w.T + b
        steps = {"digitnet": [(0, 1, 0), (3, 1, 0), (6, 2, 2), (10, 1, 0), (13, 1, 0),
                              (16, 2, 2), (20, 1, 0)],
                 "fastnet": [(0, 2, 2), (3, 2, 2)]}[self.arch]
        for index, stride, pad in steps:  # conv (batch norm folded in), then relu
            x = _relu(_conv(x, *self._layer(f"features.{index}"), stride, pad))
        w, b = self._layer("classifier.2" if self.arch == "digitnet" else "classifier.1")
        return x.reshape(len(x), -1) @ w.T + b

    def __call__(self, images: np.ndarray) -> np.ndarray:
        z = self.logits(images)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
