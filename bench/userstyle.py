"""A user-style test set: MNIST *test* digits rendered the way people's own files look.

Each image is one MNIST test digit drawn as ink on paper (smooth strokes upscaled from the
28x28 original), then distorted by one or two *kinds* of trouble:

    clean       black ink on white paper, a modest canvas, PNG
    colour      coloured paper and ink (yellow, blue, pink, green, kraft; blue, red, green ink)
    light       uneven lighting: a shadow gradient and a vignette
    canvas      a small digit off-centre on a large canvas (up to 800x600)
    small       a tiny image (the digit 14-24 px tall)
    rotation    rotated up to 15 degrees either way
    thick       strokes 2-3x as thick (a marker)
    thin        strokes a third as thick (a fine pen on a big canvas)
    blur        Gaussian blur
    noise       sensor noise and specks
    jpeg        JPEG at quality 15-40 (photos sent by messengers)
    rgba        a transparent canvas export (ink in the alpha channel), PNG
    webp        lossy WebP

Kinds that digitlab's preprocessing is meant to absorb (colour, light, canvas, small, jpeg,
rgba, webp) are never used by training augmentation, so the measure is not circular; rotation,
thickness, blur and noise are in both. Numbers of 3-6 digits are composed from test digits
too, some with touching neighbours and some with a broken stroke.

Everything is seeded: the same seed gives the same files, byte for byte.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

KINDS = ("clean", "colour", "light", "canvas", "small", "rotation", "thick", "thin", "blur",
         "noise", "jpeg", "rgba", "webp")
PREPROCESSING_ONLY = ("colour", "light", "canvas", "small", "jpeg", "rgba", "webp")
PAPERS = [(250, 236, 140), (190, 215, 245), (250, 200, 215), (200, 235, 195), (205, 170, 125)]
INKS = [(25, 40, 150), (170, 25, 30), (20, 100, 40), (30, 30, 30)]


@dataclass(frozen=True)
class Sample:
    data: bytes  # the encoded file
    label: str  # the digit(s) it shows
    kinds: tuple[str, ...]
    suffix: str  # ".png", ".jpg", ".webp"


def ink_layer(digit: np.ndarray, height: int, rng: np.random.Generator,
              thickness: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """An MNIST digit (28, 28) uint8 -> smooth ink coverage (h, w) in [0, 1], the digit
    ``height`` px tall, strokes scaled by ``thickness``, rotated by ``angle`` degrees."""
    ys, xs = np.nonzero(digit > 30)
    crop = digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255
    scale = height / crop.shape[0]
    big = ndimage.zoom(np.pad(crop, 3), scale, order=3)
    big = ndimage.gaussian_filter(big, 0.6 * scale)
    # The iso-line of the smooth upscaled digit is the pen's edge: a higher level draws
    # thinner strokes along the same centre lines. 0.4 keeps MNIST's own stroke: at 0.5,
    # 17% of test digits lost over 30% of their ink, faint loops of 9s with it.
    level = 0.4 if thickness >= 1 else 0.4 + 0.5 * (1 - thickness)
    ink = 1 / (1 + np.exp(-(big - level) * 18))
    if thickness > 1.5:
        r = max(1, round((thickness - 1) * 0.06 * height))
        ink = ndimage.grey_dilation(ink, size=(2 * r + 1, 2 * r + 1))
    if angle:
        ink = ndimage.rotate(ink, angle, reshape=True, order=1)
    return np.clip(ink, 0, 1)


def _place(ink: np.ndarray, width: int, height: int, rng, centred: bool) -> np.ndarray:
    cover = np.zeros((height, width), np.float32)
    h, w = ink.shape
    if h > height or w > width:
        ink = ink[:height, :width]
        h, w = ink.shape
    if centred:
        y, x = (height - h) // 2, (width - w) // 2
    else:
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    cover[y:y + h, x:x + w] = ink
    return cover


def _encode(rgb: np.ndarray, kinds, rng, alpha: np.ndarray | None = None) -> tuple[bytes, str]:
    out = io.BytesIO()
    if alpha is not None:
        image = np.dstack([rgb, alpha]).astype(np.uint8)
        Image.fromarray(image, "RGBA").save(out, "PNG")
        return out.getvalue(), ".png"
    im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if "jpeg" in kinds:
        im.save(out, "JPEG", quality=int(rng.integers(15, 41)))
        return out.getvalue(), ".jpg"
    if "webp" in kinds:
        im.save(out, "WEBP", quality=int(rng.integers(20, 61)))
        return out.getvalue(), ".webp"
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        im = im.convert("L")  # a grey scan is saved as grey, as scanners do
    im.save(out, "PNG")
    return out.getvalue(), ".png"


def render(cover: np.ndarray, kinds, rng) -> tuple[bytes, str]:
    """Ink coverage (h, w) in [0, 1] -> an encoded image file with the kinds' distortions."""
    h, w = cover.shape
    if "blur" in kinds:
        cover = ndimage.gaussian_filter(cover, rng.uniform(1.0, 2.2) * max(1, h / 200))
    paper = np.array(PAPERS[rng.integers(len(PAPERS))] if "colour" in kinds else (255,) * 3,
                     np.float32)
    ink = np.array(INKS[rng.integers(len(INKS))] if "colour" in kinds else (20, 20, 20),
                   np.float32)
    if "rgba" in kinds:
        rgb = np.broadcast_to(ink, (h, w, 3)).copy()
        return _encode(rgb, kinds, rng, alpha=np.round(cover * 255))
    rgb = paper * (1 - cover[..., None]) + ink * cover[..., None]
    if "light" in kinds:
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
        gradient = 1 - rng.uniform(0.3, 0.55) * ramp  # light falling off across the page
        vignette = 1 - 0.6 * ((xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2)
        rgb = rgb * (gradient * vignette)[..., None]
    if "noise" in kinds:
        rgb = rgb + rng.normal(0, rng.uniform(8, 22), rgb.shape)
        specks = rng.random((h, w)) < 0.002
        rgb[specks] = ink
    return _encode(np.clip(np.rint(rgb), 0, 255), kinds, rng)


def digit_sample(digit: np.ndarray, label: int, kinds, rng) -> Sample:
    """One MNIST test digit as a user's file with the given distortion kinds."""
    thickness = rng.uniform(2.0, 3.0) if "thick" in kinds else \
        rng.uniform(0.3, 0.45) if "thin" in kinds else 1.0
    angle = rng.uniform(-15, 15) if "rotation" in kinds else 0.0
    if "small" in kinds:
        height, canvas = int(rng.integers(14, 25)), None
    elif "canvas" in kinds:
        height = int(rng.integers(40, 120))
        canvas = (int(rng.integers(400, 801)), int(rng.integers(300, 601)))
    else:
        height = int(rng.integers(60, 200))
        canvas = None
    ink = ink_layer(digit, height, rng, thickness, angle)
    if canvas is None:
        margin = rng.uniform(1.2, 1.8)
        side = int(max(ink.shape) * margin) + 4
        canvas = (side, side)
    cover = _place(ink, *canvas, rng, centred="canvas" not in kinds)
    data, suffix = render(cover, kinds, rng)
    return Sample(data, str(label), tuple(kinds), suffix)


def digit_set(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0,
              extra: float = 0.5) -> list[Sample]:
    """``n`` samples, kinds in turn, each with a second random kind with chance ``extra``;
    the digits are drawn without replacement from the given (test) images."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=n, replace=False)
    out = []
    for i, index in enumerate(pick):
        first = KINDS[i % len(KINDS)]
        kinds = [first]
        if first != "clean" and rng.random() < extra:
            second = KINDS[rng.integers(1, len(KINDS))]
            if second != first and {first, second} not in ({"thick", "thin"}, {"canvas", "small"},
                                                            {"rgba", "jpeg"}, {"rgba", "webp"},
                                                            {"jpeg", "webp"}):
                kinds.append(second)
        out.append(digit_sample(images[index], int(labels[index]), kinds, rng))
    return out


def number_cover(images: np.ndarray, labels: np.ndarray, rng, touching: bool, broken: bool,
                 height: int | None = None) -> tuple[np.ndarray, str]:
    """The ink coverage of a 3-6 digit number written left to right, digits about ``height``
    px tall (50-110 at random if None), optionally with touching neighbours and a broken
    stroke; and its label."""
    count = int(rng.integers(3, 7))
    index = rng.choice(len(images), size=count, replace=False)
    if height is None:
        height = int(rng.integers(50, 110))
    jitter = min(6, max(1, height // 8))
    inks = [ink_layer(images[i], height + int(rng.integers(-jitter, jitter + 1)), rng)
            for i in index]
    if broken:
        k = int(rng.integers(count))
        h = inks[k].shape[0]
        row = int(rng.integers(int(0.3 * h), int(0.7 * h)))
        inks[k][row:row + max(2, h // 25)] = 0  # a gap across the strokes
    gaps = [int(rng.integers(int(0.1 * height), int(0.35 * height))) for _ in range(count - 1)]
    if touching:
        k = int(rng.integers(count - 1))
        gaps[k] = -int(0.08 * height)  # overlap: the ink of the two digits meets
    width = sum(i.shape[1] for i in inks) + sum(gaps) + 2 * height
    tall = max(i.shape[0] for i in inks) + 16 + height // 2
    cover = np.zeros((tall, width), np.float32)
    x = height
    for ink, gap in zip(inks, gaps + [0], strict=True):
        y = (tall - ink.shape[0]) // 2 + int(rng.integers(-4, 5))
        region = cover[y:y + ink.shape[0], x:x + ink.shape[1]]
        np.maximum(region, ink[:region.shape[0], :region.shape[1]], out=region)
        x += ink.shape[1] + gap
    return cover, "".join(str(labels[i]) for i in index)


def number_sample(images: np.ndarray, labels: np.ndarray, rng, touching: bool,
                  broken: bool) -> Sample:
    """A 3-6 digit number written left to right, optionally with touching neighbours and a
    broken stroke, dark ink on white (or coloured) paper."""
    cover, label = number_cover(images, labels, rng, touching, broken)
    kinds = ["colour"] if rng.random() < 0.3 else ["clean"]
    if touching:
        kinds.append("touching")
    if broken:
        kinds.append("broken")
    data, suffix = render(cover, kinds, rng)
    return Sample(data, label, tuple(kinds), suffix)


def number_set(images, labels, n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [number_sample(images, labels, rng, touching=i % 3 == 1, broken=i % 3 == 2)
            for i in range(n)]


def joined_sample(images: np.ndarray, labels: np.ndarray, rng) -> Sample:
    """A 2-4 digit number whose neighbours' ink really meets at one pair (at two, one time in
    three): each such digit slid left until its ink overlaps the one before by a few pixels,
    so the two are one connected piece, as when a hand writes fast."""
    count = int(rng.integers(2, 5))
    height = int(rng.integers(50, 110))
    index = rng.choice(len(images), size=count, replace=False)
    inks = [ink_layer(images[i], height + int(rng.integers(-4, 5)), rng) for i in index]
    joins = int(rng.integers(1, count)) if count > 2 and rng.random() < 1 / 3 else 1
    joined = set(rng.choice(count - 1, size=joins, replace=False).tolist())
    tall = max(i.shape[0] for i in inks) + 16 + height // 2
    cover = np.zeros((tall, sum(i.shape[1] for i in inks) + (count + 4) * height), np.float32)
    x = height
    for k, ink in enumerate(inks):
        y = (tall - ink.shape[0]) // 2 + int(rng.integers(-4, 5))
        h, w = ink.shape
        while k - 1 in joined and x > 0:  # slide left until the inks overlap by 3 pixels
            behind = cover[y:y + h, x - 1:x - 1 + w] > 0.5
            if (behind & (ink > 0.5)).sum() >= 3:
                break
            x -= 1
        region = cover[y:y + h, x:x + w]
        np.maximum(region, ink, out=region)
        x += w + int(rng.integers(int(0.1 * height), int(0.35 * height)))
    kinds = ["colour"] if rng.random() < 0.3 else ["clean"]
    data, suffix = render(cover[:, :x + height], kinds, rng)
    return Sample(data, "".join(str(labels[i]) for i in index), (*kinds, "joined"), suffix)


def joined_set(images, labels, n: int, seed: int = 0) -> list[Sample]:
    """``n`` numbers with joined neighbours (:func:`joined_sample`)."""
    rng = np.random.default_rng(seed)
    return [joined_sample(images, labels, rng) for _ in range(n)]


def lined_sample(images: np.ndarray, labels: np.ndarray, rng, ruled: bool,
                 turn: tuple[float, float] | None = None) -> Sample:
    """A 3-6 digit number on ruled paper (faint printed lines 1.3-1.8 digit heights apart,
    the digits sitting on one, some crossing the next), or underlined with the pen;
    ``turn``: the page turned by that many degrees (low, high) either way (photographed
    askew)."""
    cover, label = number_cover(images, labels, rng, touching=False, broken=False)
    h, w = cover.shape
    ys, _ = np.nonzero(cover > 0.5)
    top, bottom = int(ys.min()), int(ys.max())
    if ruled:
        pitch = int((bottom - top) * rng.uniform(1.3, 1.8))
        tall = h + 2 * pitch
        page = np.zeros((tall, w), np.float32)
        page[pitch:pitch + h] = cover
        lines = np.zeros_like(page)
        for y in range(pitch + bottom - 2 * pitch, tall, pitch):  # one under the digits
            if y >= 0:
                lines[y:y + int(rng.integers(1, 4))] = rng.uniform(0.35, 0.6)
        cover = np.maximum(page, lines)
    else:
        y = min(h - 4, bottom + int(rng.integers(4, 12)))
        x0, x1 = int(rng.integers(0, w // 8)), int(w - rng.integers(0, w // 8))
        cover = cover.copy()
        cover[y:y + int(rng.integers(3, 7)), x0:x1] = 1.0
    if turn is not None:
        degrees = rng.uniform(*turn) * rng.choice([-1, 1])
        cover = np.clip(ndimage.rotate(cover, degrees, order=1, mode="constant"), 0, 1)
    kinds = ["colour"] if rng.random() < 0.3 else ["clean"]
    data, suffix = render(cover, kinds, rng)
    return Sample(data, label, (*kinds, "ruled" if ruled else "underlined"), suffix)


def lined_set(images, labels, n: int, seed: int = 0,
              turn: tuple[float, float] | None = None) -> list[Sample]:
    """``n`` numbers, on ruled paper and underlined in turn (:func:`lined_sample`)."""
    rng = np.random.default_rng(seed)
    return [lined_sample(images, labels, rng, ruled=i % 2 == 0, turn=turn)
            for i in range(n)]


def photo_sample(images: np.ndarray, labels: np.ndarray, rng, number: bool,
                 shadow: bool = False) -> Sample:
    """A phone photo (12 megapixels, 4:3 either way up, JPEG at quality 85-92) of a page with
    one digit, or a 3-6 digit number, written small on it: the digits 1.5-6% of the
    picture's shorter side tall, anywhere in its middle 80%, under light that falls off
    across the page, with sensor noise. With ``shadow``, a shadow (the phone's or a hand's)
    is cast across the page too: a straight edge, soft over 0.2-1% of the shorter side,
    passing within 1.5 times the writing's size of it, the paper 35-60% darker beyond."""
    w, h = (4032, 3024) if rng.random() < 0.5 else (3024, 4032)
    height = int(rng.uniform(0.015, 0.06) * min(w, h))
    if number:
        ink, label = number_cover(images, labels, rng, touching=False, broken=False,
                                  height=height)
    else:
        i = int(rng.integers(len(images)))
        ink, label = ink_layer(images[i], height, rng), str(labels[i])
    ih, iw = ink.shape
    y = int(rng.integers(int(0.1 * h), max(int(0.1 * h) + 1, int(0.9 * h) - ih)))
    x = int(rng.integers(int(0.1 * w), max(int(0.1 * w) + 1, int(0.9 * w) - iw)))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * np.linspace(0, 1, w, dtype=np.float32)[None, :]
            + np.sin(angle) * np.linspace(0, 1, h, dtype=np.float32)[:, None])
    ramp -= ramp.min()
    ramp /= ramp.max()
    page = rng.uniform(195, 235) * (1 - rng.uniform(0.2, 0.45) * ramp)  # light falls off
    if shadow:
        page *= 1 - rng.uniform(0.35, 0.6) * _shadow_edge(w, h, x + iw / 2, y + ih / 2,
                                                          max(ih, iw), rng)
    page[y:y + ih, x:x + iw] *= 1 - 0.85 * ink[:h - y, :w - x]
    page += rng.normal(0, rng.uniform(2, 6), (h, w)).astype(np.float32)
    tint = rng.uniform(0.93, 1.0, 3).astype(np.float32)  # white balance
    rgb = np.clip(np.rint(page[..., None] * tint), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "JPEG", quality=int(rng.integers(85, 93)))
    return Sample(out.getvalue(), label, ("photo", "number" if number else "digit"), ".jpg")


def _shadow_edge(w: int, h: int, cx: float, cy: float, size: int, rng) -> np.ndarray:
    """(h, w) float32 from 0 (lit) to 1 (in shadow) across a soft straight edge at a random
    angle, passing within 1.5 ``size`` of (cx, cy)."""
    angle = rng.uniform(0, 2 * np.pi)
    px, py = cx + rng.uniform(-1.5, 1.5) * size, cy + rng.uniform(-1.5, 1.5) * size
    soft = rng.uniform(0.002, 0.01) * min(w, h)
    across = ((np.arange(w, dtype=np.float32)[None, :] - px) * np.cos(angle)
              + (np.arange(h, dtype=np.float32)[:, None] - py) * np.sin(angle))
    return (0.5 + 0.5 * np.tanh(across * (0.85 / soft))).astype(np.float32)


def photo_set(images, labels, n: int, seed: int = 0, shadow: bool = False) -> list[Sample]:
    """``n`` phone photos of small writing: single digits and numbers in turn."""
    rng = np.random.default_rng(seed)
    return [photo_sample(images, labels, rng, number=i % 2 == 1, shadow=shadow)
            for i in range(n)]


# -- things that are not digits ---------------------------------------------------------------

_LETTERS = {  # strokes on a unit square, y down
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.55), (0.75, 0.55)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.7, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.4), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "R": [[(0, 1), (0, 0), (0.8, 0.05), (0.9, 0.25), (0.8, 0.45), (0, 0.5)],
          [(0.4, 0.5), (1, 1)]],
    "#": [[(0.3, 0), (0.2, 1)], [(0.8, 0), (0.7, 1)], [(0, 0.35), (1, 0.35)],
          [(0, 0.7), (1, 0.7)]],
    "+": [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0, 0.3), (1, 0.7)], [(1, 0.3), (0, 0.7)]],
}


def non_digit_set(n: int, seed: int = 0) -> list[Sample]:
    """Letters and symbols drawn with a pen, and random scribbles: none is a digit."""
    rng = np.random.default_rng(seed)
    out = []
    names = sorted(_LETTERS)
    for i in range(n):
        side = int(rng.integers(120, 260))
        im = Image.new("L", (side, side), 255)
        draw = ImageDraw.Draw(im)
        width = max(2, side // 25)
        if i % 2 == 0:
            name = names[(i // 2) % len(names)]
            box = side * 0.2, side * 0.15, side * 0.6 * rng.uniform(0.8, 1.1), side * 0.7
            for stroke in _LETTERS[name]:
                pts = [(box[0] + x * box[2] + rng.normal(0, side * 0.01),
                        box[1] + y * box[3] + rng.normal(0, side * 0.01)) for x, y in stroke]
                draw.line(pts, fill=0, width=width, joint="curve")
            label = f"letter {name}"
        else:
            pts = np.cumsum(rng.normal(0, side * 0.08, (int(rng.integers(8, 25)), 2)), axis=0)
            pts = pts - pts.min(0)
            pts = pts / max(pts.max(), 1) * side * 0.7 + side * 0.15
            draw.line([tuple(p) for p in pts], fill=0, width=width, joint="curve")
            label = "scribble"
        im = im.filter(ImageFilter.GaussianBlur(0.7))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(Sample(buf.getvalue(), label, ("non-digit",), ".png"))
    return out
