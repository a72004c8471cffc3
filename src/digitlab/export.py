"""ONNX: export a model, check it with ONNX Runtime against PyTorch, and serve through it.

``torch.onnx`` writes the graph (batch size left free); ONNX Runtime then runs the same test
digits as PyTorch and the largest difference in probabilities is reported. Needs the
``[export]`` extra (onnx, onnxscript, onnxruntime), imported only here.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._io import file_sha256
from .checkpoint import LoadedModel

__all__ = ["ExportReport", "OnnxBackend", "export_onnx"]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    images_checked: int
    max_abs_difference: float  # softmax probabilities, ONNX Runtime against PyTorch
    same_answers: int  # images where both give the same digit


def _write(loaded: LoadedModel, path: Path) -> None:
    model = loaded.model.eval()
    example = torch.zeros(2, *loaded.config.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        torch.onnx.export(model, (example,), str(path), input_names=["images"],
                          output_names=["logits"], dynamo=False, opset_version=17,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})


class OnnxBackend:
    """Softmax probabilities from an ONNX file through ONNX Runtime; a Recognizer backend."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # requests run in parallel threads already
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> OnnxBackend:
        """Export ``loaded`` to a temporary ONNX file (named by the weights' digest) and
        open it."""
        digest = file_sha256(loaded.path)[:16]
        path = Path(tempfile.gettempdir()) / f"digitlab-{digest}.onnx"
        if not path.exists():
            part = path.with_suffix(f".{id(loaded)}.part")
            _write(loaded, part)
            part.replace(path)
        return cls(path)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {"images": np.asarray(images, np.float32)})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def export_onnx(loaded: LoadedModel, path: str | Path, images: np.ndarray) -> ExportReport:
    """Write ``loaded`` as ONNX at ``path`` and compare ONNX Runtime with PyTorch on
    ``images`` (N, H, W) float32 (real test digits)."""
    path = Path(path)
    _write(loaded, path)
    ours = OnnxBackend(path, threads=2)(images)
    with torch.inference_mode():
        reference = torch.softmax(loaded.model(torch.as_tensor(images)), 1).numpy()
    return ExportReport(path, len(images), float(np.abs(ours - reference).max()),
                        int((ours.argmax(1) == reference.argmax(1)).sum()))
