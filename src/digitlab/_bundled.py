"""Where the pretrained model shipped inside the package lives (no heavy imports here)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["bundled_path"]

BUNDLED = ("_models", "digitnet")


def bundled_path(suffix: str = ".pt") -> Path:
    """The bundled model: ``.pt`` (PyTorch), ``.npz`` (NumPy inference), ``.json`` (record)."""
    folder, stem = BUNDLED
    return Path(str(resources.files("digitlab").joinpath(folder, stem + suffix)))
