"""digitlab: handwritten digit recognition, from the classic Keras tutorials to a service.

    >>> from digitlab import load_digits20
    >>> X, y = load_digits20()
    >>> X.shape, y.shape, int(y[1015])
    ((5000, 400), (5000,), 2)

The names below are imported on first use, so ``import digitlab`` (and the CLI's help and
data commands) stay quick and do not load PyTorch until it is needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "data", "load_dataset": "data", "load_digits20": "data", "load_mnist": "data",
    "FetchError": "fetch", "fetch": "fetch",
    "PRESETS": "config", "ModelConfig": "config", "TrainConfig": "config",
    "build_model": "models", "predict_proba": "models",
    "fit": "train",
    "Metrics": "evaluate", "evaluate": "evaluate",
    "load_model": "checkpoint", "save_model": "checkpoint",
    "RunResult": "runs", "train_and_evaluate": "runs",
    "Recognizer": "recognize", "Answer": "recognize", "Reading": "recognize",
    "ImageRejected": "images", "BlankImage": "preprocess", "ReadConfig": "preprocess",
    "prepare_digit": "preprocess",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
