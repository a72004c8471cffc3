"""Typed configuration: networks, training recipes, the preset registry, and the resolved
settings of a training run. Plain frozen dataclasses with no PyTorch import, so the CLI can
show and check them before any heavy import, and every run can save them as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["PRESETS", "ModelConfig", "Preset", "Recipe", "TrainConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; saved inside every model file."""

    arch: str  # "mlp" or "cnn"
    input_shape: tuple[int, int]  # (H, W) of the images it reads
    hidden: tuple[int, ...] = ()  # widths of the hidden dense layers ("mlp")
    dropout: float = 0.0  # after each hidden layer ("mlp"), before the classifier ("cnn")
    n_classes: int = 10


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


@dataclass(frozen=True)
class TrainConfig:
    """The resolved settings of one training run (a preset's recipe plus the user's flags)."""

    preset: str
    dataset: str
    epochs: int
    batch_size: int
    lr: float
    adam_eps: float
    validation: str  # "test", "holdout" or "none"; see Recipe
    val_fraction: float
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # None: PyTorch's default (one per core)

    @classmethod
    def from_preset(cls, preset: str, dataset: str | None = None, **overrides) -> TrainConfig:
        """The preset's recipe and dataset, with any non-None ``overrides`` applied."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        p = PRESETS[preset]
        r: Recipe = p.recipe
        config = cls(preset, dataset or p.dataset, r.epochs, r.batch_size, r.lr, r.adam_eps,
                     r.validation, r.val_fraction)
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        config.check()
        return config

    def check(self) -> None:
        """Raise ValueError with a one-line reason for settings that cannot train."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if self.validation not in ("test", "holdout", "none"):
            raise ValueError(f"unknown validation {self.validation!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"validation fraction must be in (0, 1), not {self.val_fraction}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
