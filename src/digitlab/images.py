"""Decoding a user's image file: by content (never by name), within limits, to one array.

Pillow reads the header first; the declared size is checked before any pixel is allocated,
so a decompression bomb is refused cheaply. A large JPEG is decoded downscaled instead (DCT
scaling, Pillow's draft mode). Transparency is composited onto white paper (black for light
ink), EXIF orientation applied, 16-bit and palette images converted; the result is float32
in [0, 1], (H, W) for a grey image and (H, W, 3) for a colour one. :func:`encode_png` is the way
back, for a prepared digit shown to the user.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["FORMATS", "ImageRejected", "Limits", "decode_image", "decode_image_sized",
           "encode_png"]

FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> grey, ITU-R BT.601


@dataclass(frozen=True)
class Limits:
    """What an input may be. All settable; the defaults take any phone photo or scan."""

    max_bytes: int = 25 * 2**20  # the encoded file
    max_pixels: int = 50_000_000  # declared width x height (after JPEG downscaling)
    min_side: int = 8  # a smaller image cannot hold a recognisable digit
    work_side: int = 1600  # larger images are decoded or reduced to about this longer side


class ImageRejected(ValueError):
    """The input cannot be read as a digit image; the message is the one-line reason."""


def files_under(folder: str | Path) -> list[str]:
    """The files in ``folder`` and its subfolders, in a stable order; hidden files and
    folders are skipped, and links to folders are not followed (a link loop cannot trap
    the walk)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    return found


def folder_reason(path: Path) -> str:
    """Why a folder given where an image file is read is not answered. (A folder given on
    the command line is read file by file: one reaches the reader only when it holds none.)"""
    return ("is a folder, not an image" if files_under(path)
            else "a folder with no files in it (hidden ones are skipped)")


def _open(data: bytes, limits: Limits) -> Image.Image:
    if not data:
        raise ImageRejected("empty file")
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"file is {len(data):,} bytes, over the limit of "
                            f"{limits.max_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes on damaged metadata: the pixels decide
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("declared image size is over Pillow's decompression-bomb "
                            "limit") from None
    except UnidentifiedImageError:
        kind = _claimed_format(data)
        if kind:
            raise ImageRejected(f"corrupt {kind} image: its header cannot be read") from None
        raise ImageRejected("not an image (or not PNG, JPEG, WebP, TIFF, BMP or GIF)") from None
    except Exception as exc:  # Pillow raises many kinds on hostile headers; all mean "corrupt"
        raise ImageRejected(f"truncated or corrupt image header ({_short(exc)})") from None


_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"))


def _claimed_format(data: bytes) -> str | None:
    """The format a file's first bytes claim, to tell a damaged image from a non-image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _check_size(im: Image.Image, limits: Limits) -> Image.Image:
    w, h = im.size
    if min(w, h) < limits.min_side:
        raise ImageRejected(f"image is {w}x{h} pixels, too small to hold a digit (at least "
                            f"{limits.min_side}x{limits.min_side})")
    if im.format == "JPEG":
        # DCT scaling decodes at 1/2, 1/4 or 1/8 size without ever allocating the full image;
        # draft picks the smallest of those at least this large.
        s = min(1.0, limits.work_side / max(w, h), (limits.max_pixels / (w * h)) ** 0.5)
        if s < 1.0:
            im.draft(im.mode, (max(1, int(w * s)), max(1, int(h * s))))
            w, h = im.size
    if w * h > limits.max_pixels:
        raise ImageRejected(f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the limit "
                            f"of {limits.max_pixels / 1e6:.0f}")
    return im


def _load(im: Image.Image) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. broken EXIF data: the pixels still count
            im.load()
            # an unreadable orientation tag: keep the image as stored
            with contextlib.suppress(ValueError, TypeError, KeyError, struct.error,
                                     SyntaxError, OSError):
                im = ImageOps.exif_transpose(im)
        return im
    except Exception as exc:  # whatever a decoder raises on damaged data (fuzzing found
        # TypeError and others besides OSError), the file is unreadable
        raise ImageRejected(f"truncated or corrupt image ({_short(exc)})") from None


def _to_array(im: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> float32 (H, W) grey or (H, W, 3) RGB on white (on black
    where transparency holds light ink), in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        scale = 65535.0 if mode == "I" and hi > 255 else 255.0 if mode == "I" else 1.0
        return np.clip((a - min(lo, 0.0)) / scale, 0, 1) if hi > lo else np.zeros_like(a)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    elif mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.shape[-1] == 4:
        a = composite(a)
    if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
        return np.ascontiguousarray(a[..., 0])
    return a


def composite(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) float RGBA in [0, 1] -> (H, W, 3) RGB on paper: a transparent canvas is blank
    paper, white, unless what is drawn on it is a minority of light strokes (a dark-theme
    canvas's white ink would vanish on white): then black."""
    alpha = rgba[..., 3:]
    shown = alpha[..., 0] > 0.5
    light_ink = 0 < shown.mean() < 0.5 and float(
        (rgba[..., :3][shown] @ LUMA).mean()) > 0.5
    return rgba[..., :3] * alpha + (0.0 if light_ink else 1.0 - alpha)


def _reduce(im: Image.Image, limits: Limits) -> Image.Image:
    factor = max(im.size) // limits.work_side
    if factor >= 2 and im.mode in ("L", "RGB", "RGBA", "LA", "I", "F", "1", "P"):
        im = im.convert("RGBA" if im.mode in ("P", "LA") else
                        "L" if im.mode == "1" else im.mode).reduce(factor)
    return im


def decode_image(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode an encoded image to float32 in [0, 1]: (H, W) grey or (H, W, 3) RGB, alpha
    composited on white, EXIF orientation applied. Raises :class:`ImageRejected` with a
    one-line reason for anything that is not a readable image within ``limits``. Images
    larger than ``limits.work_side`` come back reduced (:func:`decode_image_sized`)."""
    return decode_image_sized(data, limits)[0]


def decode_image_sized(data: bytes, limits: Limits = Limits()
                       ) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`'s array and the image's own (width, height), as shown (EXIF
    orientation applied), before any reduction: what the array's coordinates scale to."""
    im = _open(data, limits)
    width, height = im.size
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken tags: the image is read as stored
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # turned a quarter: sides swap
            width, height = height, width
    im = _reduce(_load(_check_size(im, limits)), limits)
    try:
        return _to_array(im), (width, height)
    except Exception as exc:  # a mode or palette Pillow cannot convert
        raise ImageRejected(f"unsupported pixel format {im.mode} ({_short(exc)})") from None


def encode_png(image: np.ndarray) -> bytes:
    """A grey image, float in [0, 1] (H, W), as an 8-bit PNG file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buf, "PNG")
    return buf.getvalue()
