"""Inference without PyTorch: a network's forward pass in NumPy, from a weights-only .npz.

``import torch`` alone takes about a second here, most of a `digitlab predict photo.png`.
The networks are small, so NumPy runs them in a millisecond or less: batch norm is folded into
the convolution before it, convolutions are matrix products over sliding windows of
channels-last activations (each window then copies in runs of whole pixels: twice as fast as
channels-first here), dropout is the identity at inference. The .npz holds plain arrays
(loaded with ``allow_pickle=False``: nothing in it can run) and the network config as JSON;
:func:`export_npz` writes it from a PyTorch model, and tests/test_npinfer.py checks the two
agree. The bundled model has one, and every run keeps one beside its model file, so
`digitlab predict --model RUN` starts without PyTorch too.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from pathlib import Path

import numpy as np

from ._io import file_sha256, write_atomic
from .config import ModelConfig

__all__ = ["NPZ_SUFFIX", "NumpyNet", "beside", "export_npz"]

NPZ_SUFFIX = ".npz"

_BN_EPS = 1e-5  # PyTorch's BatchNorm2d default
# Images a convolutional network takes at a time: a few keep each layer's windows in the
# processor's caches (digitnet here, 2 threads: 0.29-0.37 ms an image in eights, 0.59 in
# thousands).
_CONV_CHUNK = 8


@functools.cache
def _blas_libraries() -> list:
    """threadpoolctl's handles on the BLAS libraries loaded (NumPy's)."""
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController().select(user_api="blas").lib_controllers


class _OneBlasThread:
    """BLAS on one thread inside: a single image's products are too small to share, and
    waking a second thread for each cost more than it gave (digitnet, one image: 0.72-0.77
    ms with 2 threads, 0.48-0.51 ms with one). The setting is the process's, so threads that
    are inside at once share one: the first in saves the thread counts, the last out restores
    them (each restoring its own would leave one thread for good after two overlapped). Other
    threads' products run on one thread meanwhile too (slower, never wrong). NumPy's OpenBLAS
    (0.3.31 here) does not always take the setting from a thread other than the main one (never
    once the main thread has made it; at times after two threads overlapped): then a service's
    compute threads run on the count OpenBLAS kept (slower or faster, never wrong)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._before: list[int] = []

    def __enter__(self) -> None:
        with self._lock:
            if not self._inside:
                libraries = _blas_libraries()
                self._before = [lib.num_threads for lib in libraries]
                for lib in libraries:
                    lib.set_num_threads(1)
            self._inside += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside:
                for lib, threads in zip(_blas_libraries(), self._before, strict=True):
                    lib.set_num_threads(threads)


_one_blas_thread = _OneBlasThread()


def export_npz(loaded, path: str | Path, source: str | Path | None = None) -> None:
    """Write ``loaded`` (a checkpoint.LoadedModel) as a NumPy-only inference file. ``source``:
    the model file it was made from, whose bytes' SHA-256 the header keeps (see
    :func:`beside`)."""
    from dataclasses import asdict

    import torch
    state = {k: v.detach().cpu().numpy() for k, v in loaded.model.state_dict().items()
             if v.dtype.is_floating_point}
    header = {"model_config": asdict(loaded.config), "meta": loaded.meta,
              "torch": torch.__version__}
    if source is not None:
        header["source_sha256"] = file_sha256(source)
    buffer = io.BytesIO()
    # uncompressed: weights compress by 7% and took 40 ms to (digitnet), 1-2 ms as they are
    np.savez(buffer, __header__=np.array(json.dumps(header)), **state)
    write_atomic(path, buffer.getvalue())


def beside(model_file: str | Path) -> NumpyNet | None:
    """The NumPy file a run keeps beside its model file (model.npz beside model.pt), if it
    was written from these very bytes; None if there is none, it is unreadable, or the
    model file changed since."""
    model_file = Path(model_file)
    npz = model_file.with_suffix(NPZ_SUFFIX)
    try:
        if not (model_file.is_file() and npz.is_file()):
            return None
        net = NumpyNet(npz)
        return net if net.source_sha256 == file_sha256(model_file) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _windows(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """The k x k windows of (N, H, W, C) at ``stride``, one per row: (N * H' * W', k * k * C),
    each row in (row, column, channel) order. With one channel, the windows are copied as the
    transpose (a run of a whole output row at a time, not k pixels) and handed back
    transposed: matrix products take either order."""
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    out_h, out_w = (h - k) // stride + 1, (w - k) // stride + 1
    sn, sh, sw, sc = x.strides
    if c == 1:  # (k, k, N, H', W'): each copied run is a row of W' pixels
        view = np.ndarray((k, k, n, out_h, out_w), x.dtype, x, 0,
                          (sh, sw, sn, sh * stride, sw * stride))
        return view.reshape(k * k, -1).T
    view = np.ndarray((n, out_h, out_w, k, k, c), x.dtype, x, 0,
                      (sn, sh * stride, sw * stride, sh, sw, sc))
    return view.reshape(n * out_h * out_w, -1)


def _padded(x: np.ndarray, pad: int) -> np.ndarray:
    """(N, H, W, C) with ``pad`` zeros around each image (np.pad's checks cost as much as
    the copy here)."""
    n, h, w, c = x.shape
    out = np.zeros((n, h + 2 * pad, w + 2 * pad, c), x.dtype)
    out[:, pad:pad + h, pad:pad + w] = x
    return out


def _conv(x: np.ndarray, w: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """(N, H, W, C) convolved with ``w`` (k * k * C, O), rows in (row, column, channel)
    order -> (N, H', W', O), without a bias: one product over the sliding windows."""
    if pad:
        x = _padded(x, pad)
    n, h, w_in, _ = x.shape
    out = _windows(x, k, stride) @ w
    return out.reshape(n, (h - k) // stride + 1, (w_in - k) // stride + 1, -1)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _pool(x: np.ndarray) -> np.ndarray:
    """2x2 max pooling of (N, H, W, C)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def _flatten(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C * H * W) in PyTorch's (channel, row, column) order."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


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
        self.source_sha256 = header.get("source_sha256")
        self.path = Path(path)
        self.model = None  # no PyTorch module: this object is the model
        self.parameters = sum(v.size for k, v in self.w.items() if "running" not in k)
        self.arch = self.config.arch
        if self.arch not in ("mlp", "cnn", "digitnet", "fastnet"):
            raise ValueError(f"no NumPy forward pass for {self.arch!r}")
        self._fold()
        self._biases: dict = {}  # (layer, values an image) -> the bias tiled, and negated

    def _fold(self) -> None:
        """Fold each batch norm into the convolution before it (inference only), then lay
        every convolution's weights out for :func:`_conv`."""
        convs = sorted({k.rsplit(".", 1)[0] for k in self.w if k.endswith(".running_mean")})
        for bn in convs:
            prefix, index = bn.rsplit(".", 1)
            conv = f"{prefix}.{int(index) - 1}"
            scale = self.w[f"{bn}.weight"] / np.sqrt(self.w[f"{bn}.running_var"] + _BN_EPS)
            self.w[f"{conv}.weight"] = self.w[f"{conv}.weight"] * scale[:, None, None, None]
            self.w[f"{conv}.bias"] = self.w[f"{bn}.bias"] - self.w[f"{bn}.running_mean"] * scale
        self._convs = {name[:-len(".weight")]: (np.ascontiguousarray(
                           w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])),  # (k*k*C, O)
                           self.w[name[:-len(".weight")] + ".bias"], w.shape[2])
                       for name, w in self.w.items() if w.ndim == 4}

    def _layer(self, name: str):
        return self.w[f"{name}.weight"], self.w[f"{name}.bias"]

    def _conv_relu(self, x: np.ndarray, name: str, stride: int = 1, pad: int = 0):
        """relu(conv(x) + bias), the bias and relu as max(z, -bias) + bias (the same numbers:
        bias - bias is exactly 0) against the bias laid out over a whole image once: two
        passes over contiguous memory, where adding a bias row of a few channels to each
        pixel and comparing with a scalar 0 took 3-4 times as long here."""
        w, b, k = self._convs[name]
        z = _conv(x, w, k, stride, pad)
        flat = z.reshape(len(z), -1)
        key = (name, flat.shape[1])
        if key not in self._biases:
            tile = np.tile(b, flat.shape[1] // len(b))
            self._biases[key] = tile, -tile
        tile, negative = self._biases[key]
        np.maximum(flat, negative, out=flat)
        np.add(flat, tile, out=flat)
        return z

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if not len(x):
            return np.zeros((0, self.config.n_classes), np.float32)
        if self.arch == "mlp":
            return self._mlp(x)
        if len(x) == 1:
            with _one_blas_thread:
                return self._convnet(x)
        return np.concatenate([self._convnet(x[i:i + _CONV_CHUNK])
                               for i in range(0, len(x), _CONV_CHUNK)])

    def _mlp(self, x: np.ndarray) -> np.ndarray:
        h = x.reshape(len(x), -1)
        names = sorted({k.rsplit(".", 1)[0] for k in self.w}, key=lambda s:
                       int(s.split(".")[1]))
        for i, name in enumerate(names):
            w, b = self._layer(name)
            h = h @ w.T + b
            if i < len(names) - 1:
                _relu(h)
        return h

    def _convnet(self, x: np.ndarray) -> np.ndarray:
        x = x[..., None]  # (N, H, W, 1): channels last
        if self.arch == "cnn":
            x = _pool(self._conv_relu(x, "conv1"))
            x = _pool(self._conv_relu(x, "conv2"))
            w, b = self._layer("fc")
            return _flatten(x) @ w.T + b
        steps = {"digitnet": [(0, 1, 0), (3, 1, 0), (6, 2, 2), (10, 1, 0), (13, 1, 0),
                              (16, 2, 2), (20, 1, 0)],
                 "fastnet": [(0, 2, 2), (3, 2, 2)]}[self.arch]
        for index, stride, pad in steps:  # conv (batch norm folded in), then relu
            x = self._conv_relu(x, f"features.{index}", stride, pad)
        w, b = self._layer("classifier.2" if self.arch == "digitnet" else "classifier.1")
        return _flatten(x) @ w.T + b

    def __call__(self, images: np.ndarray) -> np.ndarray:
        z = self.logits(images)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
