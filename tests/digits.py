"""Hand-made digit pictures for the reading tests: real handwriting from the embedded digits20
set, drawn large on paper the way people's files look."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from digitlab.data import load_digits20

_images, _labels = load_digits20("test")


def handwritten(digit: int, k: int = 0) -> np.ndarray:
    """The k-th 20x20 test digit of class ``digit`` (white on black, float)."""
    return _images[np.flatnonzero(_labels == digit)[k]].reshape(20, 20)


def on_paper(digits: list[int], height: int = 120, gap: float = 0.25, k: int = 0,
             paper: tuple = (255, 255, 255), ink: tuple = (20, 20, 20)) -> Image.Image:
    """Dark ink on paper: the digits written left to right, each ``height`` px tall."""
    tiles = []
    for d in digits:
        small = Image.fromarray(np.uint8(handwritten(d, k) * 255))
        tiles.append(np.asarray(small.resize((height, height), Image.Resampling.BICUBIC),
                                np.float32) / 255)
    pad = int(gap * height)
    cover = np.zeros((height + 2 * pad, len(tiles) * height + (len(tiles) + 1) * pad),
                     np.float32)
    for i, t in enumerate(tiles):
        x = pad + i * (height + pad)
        cover[pad:pad + height, x:x + height] = t
    cover = np.clip(cover, 0, 1)[..., None]
    rgb = np.array(paper, np.float32) * (1 - cover) + np.array(ink, np.float32) * cover
    return Image.fromarray(np.uint8(np.rint(rgb)), "RGB")


def joined(digits: list[int], height: int = 100, k: int = 0) -> Image.Image:
    """Dark ink on white: the digits written left to right, each slid left until its ink
    overlaps the one before by 3 pixels, so the number is one connected piece."""
    tiles = []
    for d in digits:
        small = Image.fromarray(np.uint8(handwritten(d, k) * 255))
        t = np.asarray(small.resize((height, height), Image.Resampling.BICUBIC), np.float32) / 255
        tiles.append(t[:, t.max(axis=0) > 0.1])
    cover = np.zeros((height + 40, sum(t.shape[1] for t in tiles) + 40), np.float32)
    x = 20
    for i, t in enumerate(tiles):
        while i and ((cover[20:20 + height, x - 1:x - 1 + t.shape[1]] > 0.5)
                     & (t > 0.5)).sum() < 3:
            x -= 1
        np.maximum(cover[20:20 + height, x:x + t.shape[1]], t,
                   out=cover[20:20 + height, x:x + t.shape[1]])
        x += t.shape[1]
    return Image.fromarray(np.uint8(np.rint(255 * (1 - np.clip(cover[:, :x + 20], 0, 1)))))


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
