"""Model files: weights plus the config that rebuilds the network, loadable without running code.

A model file is a ``torch.save`` of plain tensors, numbers, strings, lists and dicts, so
``torch.load(..., weights_only=True)`` reads it and no pickled code is ever executed.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ._bundled import bundled_path
from ._io import write_atomic
from .config import ENSEMBLE_FILE, ModelConfig
from .models import build_model

__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedModel", "ModelFileError", "bundled_path",
           "load_model", "save_model", "weights_digest"]

FORMAT = "digitlab-model"
# 1: weights, network config, meta. 2: adds "digest", a SHA-256 of the weights, so damage
# inside a tensor (which the zip container would not notice) is caught on load.
FORMAT_VERSION = 2
class ModelFileError(ValueError):
    """The file is missing, not a digitlab model, of an unknown format version, or damaged."""


@dataclass
class LoadedModel:
    """A network rebuilt from a model file, in eval mode, with the file's metadata."""

    model: nn.Module
    config: ModelConfig
    meta: dict  # preset, dataset, test accuracy... as recorded at training time
    path: Path


def weights_digest(state_dict: dict) -> str:
    """SHA-256 over the tensors' names, shapes, dtypes and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_model(path: str | Path, model: nn.Module, config: ModelConfig, meta: dict) -> None:
    """Write the model file atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": asdict(config),
        "state_dict": state,
        "digest": weights_digest(state),
        "meta": meta,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def _config_from(raw: dict) -> ModelConfig:
    try:
        raw = dict(raw)
        raw["input_shape"] = tuple(raw["input_shape"])
        raw["hidden"] = tuple(raw.get("hidden", ()))
        return ModelConfig(**raw)
    except (TypeError, KeyError) as exc:
        raise ModelFileError(f"model config is malformed ({exc})") from None


def _why_unreadable(path: Path, exc: Exception) -> str:
    """A short reason torch.load failed, without its advice to load unsafely."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither a zip nor a pickle
        return "not a PyTorch file"
    text = str(exc).strip()
    if text.startswith("Weights only load failed"):
        return "it holds Python objects a model file does not; not loaded, as that could run code"
    first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
    return f"damaged: {first[:160]}"


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the network saved at ``path``; :class:`ModelFileError` with a one-line reason
    for anything that is not a readable model file of a supported format version."""
    path = Path(path)
    if not path.is_file():
        if (path.parent / ENSEMBLE_FILE).is_file():
            raise ModelFileError(f"{path.parent} is an ensemble: give one of its members "
                                 f"({path.parent / 'member-0'}, ...), or evaluate them together "
                                 f"with: digitlab evaluate {path.parent}")
        raise ModelFileError(f"no model file at {path}")
    try:
        with warnings.catch_warnings():  # a damaged file makes torch warn, then fail; we explain
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # on damaged bytes torch raises all kinds (IndexError too)
        raise ModelFileError(f"{path.name} is not a readable model file "
                             f"({_why_unreadable(path, exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path.name} is not a digitlab model file")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(f"{path.name} has model format version {version!r}; this digitlab "
                             f"reads versions 1 to {FORMAT_VERSION} (upgrade digitlab?)")
    config = _config_from(payload.get("model_config", {}))
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelFileError(f"{path.name} holds no weights")
    if version >= 2 and payload.get("digest") != weights_digest(state):
        raise ModelFileError(f"{path.name} is damaged or was altered: its weights do not match "
                             "the digest recorded when it was saved")
    try:
        model = build_model(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(f"{path.name}: weights do not fit the network ({first[:200]})") \
            from None
    model.to(device).eval()
    return LoadedModel(model, config, dict(payload.get("meta", {})), path)
