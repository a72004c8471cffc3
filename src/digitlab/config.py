"""Typed configuration: networks, training recipes, the preset registry, and the resolved
settings of a training run. Plain frozen dataclasses with no PyTorch import, so the CLI can
show and check them before any heavy import, and every run can save them as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["AUGMENT_NAMES", "MIN_CONFIDENCE", "MODEL_FILE", "PRESETS", "RECIPES", "ModelConfig",
           "Preset", "Recipe", "TrainConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; saved inside every model file."""

    arch: str  # "mlp", "cnn", "digitnet" or "fastnet"
    input_shape: tuple[int, int]  # (H, W) of the images it reads
    hidden: tuple[int, ...] = ()  # widths of the hidden dense layers ("mlp")
    dropout: float = 0.0  # after each hidden layer ("mlp"), before the classifier ("cnn"),
    # after each conv stage and before the classifier ("digitnet")
    n_classes: int = 10


@dataclass(frozen=True)
class Recipe:
    """How a preset trains: Adam with these settings and cross-entropy on the logits. The
    defaults after ``val_fraction`` leave the tutorials' plain recipe unchanged."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # the peak rate under the one-cycle schedule
    adam_eps: float = 1e-7  # Keras's Adam default; PyTorch's is 1e-8
    # "test": validate on the test set, as the seed tutorials do; "holdout": on a seeded random
    # val_fraction of the training set; "none": no validation (the 20x20 tutorial has none).
    validation: str = "holdout"
    val_fraction: float = 0.1
    optimizer: str = "adam"  # or "adamw" (decoupled weight decay)
    weight_decay: float = 0.0
    schedule: str = "constant"  # or "onecycle": warm up to lr, then anneal to near zero
    label_smoothing: float = 0.0
    augment: str = "none"  # one of AUGMENT_NAMES (digitlab.augment)
    ema: float = 0.0  # decay of a moving average of the weights, used for eval (0: off)
    bf16: bool = False  # bfloat16 autocast where the hardware does it natively
    channels_last: bool = False  # NHWC activations: 2x faster for small convnets on a CPU


AUGMENT_NAMES = ("none", "mild", "affine", "standard", "robust")
# Answers below this confidence are flagged, not hidden: the bundled model gives most real
# digits more and most scribbles and letters less (bench/reading.py measures both).
MIN_CONFIDENCE = 0.7
# A run directory's model file. Named here, where nothing imports PyTorch, so the CLI can refuse
# to train over a finished run before PyTorch loads or any data is fetched.
MODEL_FILE = "model.pt"
# An ensemble's record, beside its members' run directories (digitlab.ensemble); named here so
# that listing runs needs no PyTorch either.
ENSEMBLE_FILE = "ensemble.json"


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
    Preset("best", "digitnet for the highest MNIST accuracy: augmentation, one-cycle AdamW, "
           "label smoothing, weight averaging",
           "mnist", "digitnet", Recipe(
               epochs=45, batch_size=128, lr=2e-3, adam_eps=1e-8, optimizer="adamw",
               weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1,
               augment="mild", ema=0.999, bf16=True, channels_last=True), dropout=0.3),
    Preset("fastnet", "a small convnet trained by the fast recipe (99% in seconds)",
           "mnist", "fastnet", Recipe(
               epochs=5, batch_size=256, lr=6e-3, adam_eps=1e-8, schedule="onecycle",
               label_smoothing=0.05, bf16=True, channels_last=True)),
    Preset("robust", "digitnet trained to read people's digits (the bundled model's recipe)",
           "mnist", "digitnet", Recipe(
               epochs=40, batch_size=128, lr=2e-3, adam_eps=1e-8, optimizer="adamw",
               weight_decay=5e-4, schedule="onecycle", label_smoothing=0.1, augment="robust",
               ema=0.999), dropout=0.3),  # float32, as the bundled model was trained
)}

# Named recipes, each with the preset whose network it trains when --model is not given.
RECIPES = {"fast": "fastnet"}


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """The resolved settings of one training run: a preset's recipe with the user's flags
    applied, and what the recipe does not say (which preset and data, seed, device)."""

    preset: str = ""
    dataset: str = ""
    recipe: str = ""  # a named recipe (RECIPES) applied to the preset's network, or ""
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # None: PyTorch's default (one per core)

    @classmethod
    def from_preset(cls, preset: str | None, dataset: str | None = None,
                    recipe: str | None = None, **overrides) -> TrainConfig:
        """The preset's network, dataset and recipe, or a named ``recipe`` (which brings its
        own network unless ``preset`` is given), with any non-None ``overrides`` applied.
        ``holdout=f`` validates on a fraction f of the training set held out of training
        instead of the recipe's rule; ``holdout=0`` trains on all of it and validates on none
        (for a final model, once the recipe is chosen)."""
        if recipe is not None and recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
        preset = preset or (RECIPES[recipe] if recipe else None)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        p = PRESETS[preset]
        steps = PRESETS[RECIPES[recipe]].recipe if recipe else p.recipe
        config = cls(**asdict(steps), preset=preset, dataset=dataset or p.dataset,
                     recipe=recipe or "")
        holdout = overrides.pop("holdout", None)
        if holdout == 0:  # train on all of it
            overrides["validation"] = "none"
        elif holdout is not None:  # check() refuses fractions outside (0, 1)
            overrides.update(validation="holdout", val_fraction=holdout)
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        config.check()
        return config

    def held_out(self, n: int) -> int:
        """How many of ``n`` training digits the recipe holds out to validate on; ValueError
        when that would leave none to train on."""
        if self.validation != "holdout":
            return 0
        held = max(1, round(self.val_fraction * n))
        if held >= n:
            raise ValueError(f"holding out {self.val_fraction:g} of {n} training digits "
                             "leaves none to train on")
        return held

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
        for name, value, allowed in (("optimizer", self.optimizer, ("adam", "adamw")),
                                     ("schedule", self.schedule, ("constant", "onecycle")),
                                     ("augment", self.augment, AUGMENT_NAMES)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
