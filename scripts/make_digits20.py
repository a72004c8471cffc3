"""Build the embedded digits20 set from MNIST (see DESIGN.md, "Data").

5000 training digits (the first 500 of each class in MNIST's training order) and 1000 test
digits (the first 100 of each class in MNIST's test order), each 28x28 image reduced to 20x20
by exact area (box) resampling, sorted by class, stored as 8-bit grey levels in a compressed .npz
inside the package, with the MNIST indices they came from. Run from the project root:

    python scripts/make_digits20.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from digitlab.data import load_mnist
from digitlab.preprocess import area_resize

OUT = Path(__file__).resolve().parents[1] / "src" / "digitlab" / "_data" / "digits20.npz"
SIZE = 20
PER_CLASS = {"train": 500, "test": 100}


def box_resize(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(28, 28) uint8 -> (size, size) uint8 by exact area averaging. (Pillow's BOX filter
    weighs whole pixels by their centres, which for a 1.4x reduction is not the area.)"""
    return np.clip(np.rint(area_resize(image, size)), 0, 255).astype(np.uint8)


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` digits of each class, grouped by class 0..9."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding the MNIST IDX files or mnist.npz")
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlab"
    _, got = load_mnist(cache, data_dir=args.data_dir)
    out = {}
    for part, prefix in (("train", "train"), ("test", "test")):
        images, labels = got.arrays[f"{prefix}-images"], got.arrays[f"{prefix}-labels"]
        index = pick(labels, PER_CLASS[part])
        out[f"x_{part}"] = np.stack([box_resize(images[i]) for i in index])
        out[f"y_{part}"] = labels[index].astype(np.uint8)
        out[f"mnist_index_{part}"] = index.astype(np.int32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB) from {got.source}")


if __name__ == "__main__":
    main()
