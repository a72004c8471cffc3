"""Turning a user's picture of a digit into what an MNIST model expects: pure array functions.

MNIST digits are white ink on black, "size normalized to fit in a 20x20 pixel box while
preserving their aspect ratio ... centered in a 28x28 image by computing the center of mass"
(LeCun). A photo or canvas export differs in every way, so the one path for CLI, API, web page
and ``read`` is:

    grey (the channel mix with most ink/paper contrast) -> working size -> ink made bright
    -> background light (uneven light, a shadow's edge) subtracted -> ink mask -> ruled lines,
    specks and dots dropped
    -> crop to the ink -> stroke width brought to MNIST's -> 20 px box, anti-aliased
    -> 28x28 with the centre of mass in the centre

In a large image, ink that is small (a number written small on a page, a 12-megapixel photo
of a sticky note) is read again from a crop at the resolution the image has (see
:func:`find_ink`).

No I/O and no randomness here; every constant is named once, with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from .images import LUMA

__all__ = ["BlankImage", "Ink", "NumberPart", "Prepared", "ReadConfig", "area_resize", "find_ink",
           "prepare_digit", "prepare_number", "to_gray", "to_mnist"]

MNIST_SIDE = 28
MNIST_BOX = 20  # the digit's longer side
# MNIST's stroke width as a share of the digit's height, by _normalise_stroke's own measure on
# 2000 test digits: median 0.125 (10th percentile 0.094, 90th 0.168).
MNIST_STROKE = 0.125
_EIGHT = np.ones((3, 3), bool)  # 8-connectivity: diagonal strokes stay one piece
_SHORT_PIECE = 0.55  # in a number, pieces shorter than this share of a digit are parts
_FAINT = 0.45  # ink this much fainter than the ink threshold counts when joined to ink
_MAX_RADIUS = 6  # stroke width is changed by at most this many pixels at 64 px: bounded cost
_SEAM_BAND = 0.25  # a cut between touching digits wanders this far (of the digit height)
_SEAM_APART = 0.12  # cuts closer than this (of the digit height) on average are one
_SEAMS_PER_DIGIT = 3  # the cheapest this many cuts per digit a piece looks wide for are tried
# (2: 4-5 points fewer joined numbers read right, in two thirds of the time; 4: no better)
_MAX_GROUPS = 40  # more separate marks than this are a texture, not a number
_SEARCH_PEAK = 4  # a search for small ink takes this many pixels as the least ink there is
_EDGE_CELLS = 2  # cells of the background grid a shadow's edge is blurred over, at most
_SHADOW_STEP = 0.05  # a shadow's edge: paper this much darker from one cell to the next
_LIT_PAPER = 0.75  # a broad region this close to the brightest grey is lit paper
_STROKE_WINDOW = 5  # grid cells: wider than a page's strokes, narrower than its writing
_DARKER = 3.0  # darker strokes this many times the lighter (contrast summed): dark ink
_BALL_CURVE = 0.001  # the slope-following opening's cap: its fall per grid cell squared
_SLOPE_INK = 0.1  # left over from the background by this much on the border ...
_SLOPE_BORDER = 0.03  # ... along this much of it: a slope the flat opening cut
_SLANT_ROWS = 5  # rows taken together to find long runs: lines slanted a few degrees at most
_MAX_SLANT = 15  # degrees: ruled lines slanted more than this are not looked for
_TRIM_INK = 0.05  # a crop turned back or stroke-normalised is trimmed to ink brighter than this
_LINE_LONG = 10  # a slanted line is at least this many times as long as it is thick
_EDGE_ROWS = 3  # a slanted line's end this close to the top or bottom leaves the picture
_LINE_THIN = 0.25  # a line is at most this share of all the ink's height thick
_DASH = 0.25  # a piece this much of a digit tall at most, and a digit long, is a dash
_LINE_ALONE = 0.7  # a long run this much of the piece it is in was drawn apart: a line
_SHADE_THICK = 3.0  # ink on the border this many times as thick as the strokes is shading


@dataclass(frozen=True)
class ReadConfig:
    """Settings of the reading path. Defaults were tuned on the user-style set (bench/)."""

    work_side: int = 400  # images are processed at most this large: enough for 6 digits
    background_side: int = 100  # background light is estimated on a grid this coarse
    min_contrast: float = 0.12  # ink must differ from paper by this much (of full range)
    speck_fraction: float = 0.06  # ink pieces smaller than this share of the largest go
    min_speck_pixels: int = 4
    stroke_side: int = 64  # stroke width is normalised at this digit height
    normalise_stroke: bool = True
    zoom_below: int = 64  # large images: ink shorter than this is read from a full-size crop
    line_length: float = 2.5  # horizontal runs this many times the ink's height are lines
    split_aspect: float = 0.8  # pieces wider (w/h of a digit) may be touching digits
    max_digit_aspect: float = 1.8  # wider ones must be: 99.9% of MNIST digits are narrower
    digit_aspect: float = 0.7  # a typical digit's width/height, to count touching digits


class BlankImage(ValueError):
    """No ink found: a blank, uniform or too faint image. The message says which."""


@dataclass(frozen=True)
class Ink:
    """An image reduced to bright ink on a dark, flat background at working size."""

    image: np.ndarray  # (h, w) float32 in [0, 1]
    mask: np.ndarray  # (h, w) bool, the ink kept
    labels: np.ndarray  # (h, w) int32 pieces of ink, numbered 1..k (0: background)
    boxes: list[tuple[int, int, int, int]]  # piece i+1's (x0, y0, x1, y1), exclusive ends
    scale: float  # working pixels per original pixel
    origin: tuple[int, int] = (0, 0)  # (x, y) of the working image's corner, original pixels
    slope: float = 0.0  # rows per column of the slanted ruled lines taken out (0: none)

    def original_box(self, box) -> tuple[int, int, int, int]:
        """A box in working pixels -> the same box in the original image's pixels."""
        x0, y0, x1, y1 = (int(round(v / self.scale)) for v in box)
        return x0 + self.origin[0], y0 + self.origin[1], x1 + self.origin[0], y1 + self.origin[1]


@dataclass(frozen=True)
class Prepared:
    """A digit as the model sees it, and where it was in the original image."""

    image: np.ndarray  # (28, 28) float32 in [0, 1], white ink on black
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in original pixels
    several: bool = False  # the ink looked like several digits side by side (a number)


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) float in [0, 1] -> (H, W) float32. For colour, the channel mix
    (luma, R, G or B) whose ink/paper separation (Otsu's between-class variance) is largest:
    red ink on white paper vanishes in the red channel, dark ink on yellow paper in blue."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    luma = image @ LUMA
    candidates = [luma, image[..., 0], image[..., 1], image[..., 2]]
    step = _subsample_step(luma.size)  # score on a subsample: same answer
    scores = [_otsu(c[::step, ::step])[1] for c in candidates]
    return np.ascontiguousarray(candidates[int(np.argmax(scores))])


def _subsample_step(size: int) -> int:
    """The stride that leaves about 40,000 of ``size`` pixels: enough for image statistics."""
    return max(1, int(np.sqrt(size / 40_000)))


def _otsu(x: np.ndarray, bins: int = 64) -> tuple[float, float]:
    """Otsu's threshold for values in [0, 1] and the between-class variance it achieves."""
    hist = np.bincount(np.clip((x.ravel() * bins).astype(int), 0, bins - 1), minlength=bins)
    p = hist / max(hist.sum(), 1)
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between[:-1])
    k = int(np.argmax(between))
    return float((k + 1) / bins), float(between[k])


def _resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float image (area averaging down, bilinear up)."""
    if (width, height) == (x.shape[1], x.shape[0]):
        return x
    shrink = width < x.shape[1] or height < x.shape[0]
    filt = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(x, mode="F").resize((width, height), filt))


def _light_paper(gray: np.ndarray, config: ReadConfig, page: bool = False) -> bool:
    """Ink is the minority of pixels, so the median is paper: is it the light side? Unless a
    shadow darkens most of a light page: a region as bright as the page's brightest grey,
    within ``_LIT_PAPER``, and broad enough to outlast an opening a third of the picture wide
    (:func:`_ball_opening`) is lit paper (light ink, chalk on a board say, is strokes,
    which do not). On a ``page`` (a large picture, a photo), where the lit part may be a
    sliver along one side, the strokes are asked too: what stands out from the grey around
    it (a median over ``_STROKE_WINDOW`` cells, which keeps a shadow's straight edge and
    takes out strokes) is then mostly darker by ``_DARKER`` times (under 1 ms, and only for
    pictures whose median is dark)."""
    if np.median(gray) > 0.5 * (gray.min() + gray.max()):
        return True
    small, _ = _grid(np.asarray(gray, np.float32), config)
    broad = _ball_opening(small, config)
    lo, hi = float(small.min()), float(small.max())
    if broad.max() - lo > _LIT_PAPER * (hi - lo):
        return True
    if not page:
        return False
    stands_out = small - ndimage.median_filter(small, size=_STROKE_WINDOW, mode="nearest")
    dark = -float(stands_out[stands_out < -config.min_contrast].sum())
    return dark > _DARKER * float(stands_out[stands_out > config.min_contrast].sum())


def _flatten_background(x: np.ndarray, config: ReadConfig) -> np.ndarray:
    """Subtract the background light (uneven light, a vignette, a shadow cast across the
    page). On a grid ``config.background_side`` cells long, a grey opening removes what is
    narrower than a third of the picture (the strokes) and keeps broad shading; a
    reconstruction then gives back, whole, every region of shading the opening kept some of
    and that reaches the picture's border: the narrow end of a shadow, where its edge meets
    the border at a sharp angle, the opening alone would leave as ink. Strokes that touch a
    shadow are given back only up to the shadow's own level, so they stay ink. Where shading
    is left along the border all the same (a flat square cuts the top off a slope: a
    vignette's dark corners, a shadow's soft end), the opening is made again with a
    paraboloid cap, which follows slopes (:func:`_ball_opening`)."""
    h, w = x.shape
    small, s = _grid(x, config)
    size = max(3, config.background_side // 3)
    opened = ndimage.grey_opening(small, size=(size, size), mode="nearest")
    # Only what reaches the picture's border: a shadow is cast from outside, while a marker
    # blob too wide for the opening lies within the page (and is ink)
    rim = np.full_like(small, small.min())
    rim[0], rim[-1], rim[:, 0], rim[:, -1] = small[0], small[-1], small[:, 0], small[:, -1]
    from_rim = _reconstruct(rim, small)
    background = np.minimum(_reconstruct(opened, small), from_rim)
    if _slope_left(small - background):
        # the flat opening cut the top off a slope (a vignette's dark corners, a shadow's
        # soft end): again with a cap that follows slopes (about 3 ms more)
        opened = _ball_opening(small, config)
        background = np.minimum(_reconstruct(opened, small), from_rim)
    step = max(float(np.abs(np.diff(background, axis=a)).max(initial=0)) for a in (0, 1))
    background = _resize(background, w, h)
    if step > _SHADOW_STEP:
        # Brought to full size, the grid blurs a shadow's edge: a band of it, a cell or two
        # wide, would stand above the background like a stroke. Grown on from the shadow
        # beside it under the image itself, it is background again. (Only there: elsewhere
        # the growing takes a little of thick strokes.)
        background = np.minimum(background, x)
        for _ in range(math.ceil(_EDGE_CELLS / s)):
            background = np.minimum(_max3x3(background), x)
    return np.clip(x - background, 0, None)


def _slope_left(residue: np.ndarray) -> bool:
    """Whether what stands above the background on the grid covers more than
    ``_SLOPE_BORDER`` of the picture's border by ``_SLOPE_INK`` or more: strokes cross the
    border of a tight crop in a few places, shading left over runs along it."""
    border = np.concatenate([residue[0], residue[-1], residue[1:-1, 0], residue[1:-1, -1]])
    return bool(np.mean(border > _SLOPE_INK) > _SLOPE_BORDER)


def _ball_opening(x: np.ndarray, config: ReadConfig) -> np.ndarray:
    """Grey opening of the grid ``x`` by a paraboloid cap a third of the grid wide (r cells
    from its centre to its edge) that falls ``_BALL_CURVE`` * d**2 at d cells from the
    centre: where a flat square cuts the top off a slope, it follows one of up to
    2 * _BALL_CURVE * r per cell (a vignette's), and it fits into a stroke w cells wide by
    only _BALL_CURVE * w**2 / 4. The cap is a sum of one parabola along rows and one along
    columns, so each pass is two one-dimensional ones."""
    radius = max(1, config.background_side // 6)
    d = np.arange(-radius, radius + 1, dtype=np.float32)
    cap = -_BALL_CURVE * d * d
    rows, cols = cap[None, :], cap[:, None]
    eroded = ndimage.grey_erosion(ndimage.grey_erosion(x, structure=rows, mode="nearest"),
                                  structure=cols, mode="nearest")
    return ndimage.grey_dilation(ndimage.grey_dilation(eroded, structure=rows, mode="nearest"),
                                 structure=cols, mode="nearest")


def _grid(x: np.ndarray, config: ReadConfig) -> tuple[np.ndarray, float]:
    """``x`` on the background grid (``config.background_side`` cells along its longer
    side), and the grid's cells per pixel of ``x``."""
    h, w = x.shape
    s = config.background_side / max(h, w)
    return _resize(x, max(2, round(w * s)), max(2, round(h * s))), s


def _reconstruct(marker: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey reconstruction by dilation of ``marker`` under ``mask`` (marker <= mask): the
    marker grown a pixel at a time, never above the mask, until it stops changing (no path
    is longer than the grid has cells). On the background grid that is a few dozen steps of a
    few microseconds each."""
    grown = np.minimum(marker, mask)
    for _ in range(grown.size):
        step = np.minimum(_max3x3(grown), mask)
        if np.array_equal(step, grown):
            break
        grown = step
    return grown


def _max3x3(a: np.ndarray) -> np.ndarray:
    """``ndimage.grey_dilation(a, size=(3, 3), mode="nearest")`` for a 2-D array, in four
    NumPy calls: on the background grid, scipy's own checks took most of each step."""
    rows = a.copy()
    np.maximum(rows[1:], a[:-1], out=rows[1:])
    np.maximum(rows[:-1], a[1:], out=rows[:-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def find_ink(image: np.ndarray, config: ReadConfig = ReadConfig()) -> Ink:
    """The ink of ``image`` (H, W[, 3]) as bright strokes on black at working size, with its
    connected pieces; specks are dropped. Raises :class:`BlankImage` when there is none.

    An image larger than the working size is reduced to it by averaging. Ink that comes out
    under ``config.zoom_below`` pixels tall there (a number written small on a page) is found
    again in a crop of the image around it, at the resolution the image has (a large file is
    decoded at about 1,600 px, see :class:`digitlab.images.Limits`). Where no ink is found
    at all, strokes may have been too thin to survive the averaging (a 9-pixel pen line on a
    4000-pixel photo is under one pixel wide at 400): the ink is then looked for on a
    reduction that keeps each block's inkiest pixel (:func:`_keep_strokes`) and read from a
    crop around it. Plain paper reduced either way is plain paper."""
    gray = to_gray(image)
    if max(gray.shape) <= config.work_side:
        return _find_ink(gray, config)
    # Which side is paper is the whole page's to say: a crop around the writing may be
    # mostly shadow, with only a sliver of the lit page in it.
    step = _subsample_step(gray.size)  # a subsample says
    light = _light_paper(gray[::step, ::step], config, page=True)
    try:
        ink = _find_ink(gray, config, light=light)
    except BlankImage as blank:
        pooled, f = _keep_strokes(gray, config.work_side, light)
        try:
            located = _find_ink(pooled, config, search=True, light=light)
        except BlankImage:
            raise blank from None
        found = _zoomed(gray, replace(located, scale=located.scale / f), config, light)
        if found is None:
            raise blank from None
        return found
    y0, y1 = _union(ink.boxes)[1::2]
    return ink if y1 - y0 >= config.zoom_below else _zoomed(gray, ink, config, light) or ink


def _keep_strokes(gray: np.ndarray, side: int, light: bool) -> tuple[np.ndarray, int]:
    """``gray`` reduced by a whole factor f to at most ``side`` pixels, and f: each f x f
    block keeps its inkiest pixel (the darkest on ``light`` paper, else the brightest), so thin
    strokes stay at full contrast where averaging would fade them into the paper. Paper noise
    keeps its extremes too: a reduction to search for ink on, never to read from."""
    h, w = gray.shape
    f = -(-max(h, w) // side)
    reduce = np.minimum if light else np.maximum
    if h % f or w % f:
        gray = np.pad(gray, ((0, -h % f), (0, -w % f)), mode="edge")
    rows = reduce.reduce(gray.reshape(gray.shape[0] // f, f, gray.shape[1]), axis=1)
    return reduce.reduce(rows.reshape(rows.shape[0], rows.shape[1] // f, f), axis=2), f


def _zoomed(gray: np.ndarray, ink: Ink, config: ReadConfig, light: bool) -> Ink | None:
    """The ink found again in the crop of ``gray`` around ``ink`` (a margin of half its size
    on every side), at the crop's own working scale; None where that would not be at least
    1.5 times ``ink``'s scale, or the crop holds no ink by itself."""
    h, w = gray.shape
    x0, y0, x1, y1 = ink.original_box(_union(ink.boxes))
    margin = max(x1 - x0, y1 - y0) // 2 + 2
    x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
    x1, y1 = min(w, x1 + margin), min(h, y1 + margin)
    if min(1.0, config.work_side / max(x1 - x0, y1 - y0)) < 1.5 * ink.scale:
        return None
    try:
        return replace(_find_ink(gray[y0:y1, x0:x1], config, light=light), origin=(x0, y0))
    except BlankImage:
        return None


def _find_ink(gray: np.ndarray, config: ReadConfig, search: bool = False,
              light: bool | None = None) -> Ink:
    """:func:`find_ink` at one working size: ``gray`` reduced to ``config.work_side`` by
    averaging. The ink's brightness is taken as the 99.9th percentile (a few hot pixels do
    not count), or, in a ``search`` for what may be very little ink on a stroke-keeping
    reduction, as the ``_SEARCH_PEAK``-th brightest pixel. The ink is made bright (``light``
    paper inverted; None: this image says which side is paper)."""
    h, w = gray.shape
    scale = min(1.0, config.work_side / max(h, w))
    if scale < 1.0:
        gray = _resize(gray, max(1, round(w * scale)), max(1, round(h * scale)))
    if float(gray.max() - gray.min()) < config.min_contrast:
        raise BlankImage("blank image: no ink (uniform)")
    if light is None:
        light = _light_paper(gray, config)
    x = _flatten_background(1.0 - gray if light else gray, config)
    peak = (float(np.partition(x.ravel(), -_SEARCH_PEAK)[-_SEARCH_PEAK]) if search
            else float(np.percentile(x, 99.9)))
    if peak < config.min_contrast:
        raise BlankImage("blank image: no ink stands out from the paper")
    x = np.clip(x / peak, 0, 1).astype(np.float32)
    # Hysteresis: strokes are seeded where ink is clearly ink and grown through fainter ink
    # joined to them, so a light pencil stroke of a digit stays whole while faint smudges
    # elsewhere are ignored.
    threshold = max(_otsu(x)[0], 0.25)
    labels, n = ndimage.label(x > _FAINT * threshold, structure=_EIGHT)
    seeded = np.zeros(n + 1, bool)
    # a seed is clearly ink, and also ink at all: what stands out from the paper by less than
    # config.min_contrast (left over from uneven light, say) is not, however normalised
    seeded[labels[(x > threshold) & (x * peak >= config.min_contrast)]] = True
    seeded[0] = False
    seeded[1:][_shading(labels, seeded, config)] = False
    strokes, slope = _without_lines(labels, seeded, config)
    if strokes is not None:  # ruled lines, an underline or a frame taken out
        labels, n = ndimage.label(strokes, structure=_EIGHT)
        seeded = np.ones(n + 1, bool)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:] * seeded[1:]
    keep = areas >= max(config.min_speck_pixels, config.speck_fraction * areas.max(initial=0))
    if not keep.any():
        raise BlankImage("blank image: only specks, no stroke")
    pieces = ndimage.find_objects(labels, n)
    if not search:  # (a search's darkest-pixel reduction makes small 0s solid: no dots there)
        for i, piece in enumerate(pieces):
            if keep[i] and _is_dot(labels[piece] == i + 1):  # dirt, a decimal point
                keep[i] = False
    if not keep.any():
        raise BlankImage("no digit: only a dot or a smudge")
    keep &= ~_dashes(pieces, keep)
    lookup = np.zeros(n + 1, np.int32)
    lookup[1:][keep] = np.arange(1, keep.sum() + 1)  # kept pieces renumbered 1..k
    labels = lookup[labels]
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop)
             for s in ndimage.find_objects(labels)]
    mask = labels > 0
    # Keep the anti-aliased edges around the kept strokes, nothing else.
    x = np.where(_grow(mask, 2), x, 0).astype(np.float32)
    return Ink(x, mask, labels, boxes, scale, slope=slope)


def _shading(labels: np.ndarray, seeded: np.ndarray, config: ReadConfig) -> np.ndarray:
    """Which pieces of ``labels`` are shading, not ink: the corner of a shadow a crop cuts,
    or a strip of one along the picture's side, narrower than the background's opening takes
    for shading. Such a piece reaches the picture's border and is at least ``_SHADE_THICK``
    times as thick as the median of the other (seeded) pieces' strokes, measuring thickness as
    the widest disc inside a piece, with the picture's border counted as ink (a shadow goes
    on past it). A stroke that runs along the border is only twice its width thick so; a
    piece alone is never shading."""
    h, w = labels.shape
    shading = np.zeros(len(seeded) - 1, bool)
    edge = np.zeros(len(seeded), bool)
    edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    edge = (edge & seeded)[1:]
    if not edge.any():  # most pictures: done here
        return shading
    slices = ndimage.find_objects(labels)

    def thickness(i: int) -> float:
        s = slices[i]
        piece = labels[s] == i + 1
        # zeros around the piece, except where it meets the picture's border
        pad = ((int(s[0].start > 0), int(s[0].stop < h)),
               (int(s[1].start > 0), int(s[1].stop < w)))
        return 2 * float(ndimage.distance_transform_edt(np.pad(piece, pad)).max())

    areas = np.bincount(labels.ravel(), minlength=len(seeded))[1:]
    inner = [thickness(i) for i, s in enumerate(slices) if s is not None and seeded[i + 1]
             and not edge[i] and areas[i] >= config.min_speck_pixels]
    if not inner:
        return shading
    stroke = float(np.median(inner))
    for i in np.flatnonzero(edge):
        shading[i] = thickness(i) >= _SHADE_THICK * stroke
    return shading


def _without_lines(labels: np.ndarray, seeded: np.ndarray,
                   config: ReadConfig) -> tuple[np.ndarray | None, float]:
    """The ink (the pieces of ``labels`` that are ``seeded``) without the long, nearly
    horizontal lines in it (ruled paper, an underline, a form's baseline), or None where it has
    none; and the lines' slope where they slant (0 otherwise). Lines slanted more than a few
    degrees (a page photographed askew) are looked for with the columns shifted up or down so
    that they lie level (:func:`_line_slope`): the same tests, the same pixels. Raises
    :class:`BlankImage` when there is nothing but lines."""
    pieces = ndimage.find_objects(labels, len(seeded) - 1)
    slope = _line_slope(labels, seeded, pieces)
    if slope is None:
        return _without_level_lines(labels, seeded, config, pieces), 0.0
    rows, columns = _shear_rows(labels.shape, slope), np.arange(labels.shape[1])
    level = np.zeros((int(rows.max()) + 1, labels.shape[1]), labels.dtype)
    level[rows, columns] = labels
    inside = np.zeros(level.shape, bool)
    inside[rows, columns] = True
    out = _without_level_lines(level, seeded, config, inside=inside)
    return (None, 0.0) if out is None else (out[rows, columns], slope)


def _line_slope(labels: np.ndarray, seeded: np.ndarray, pieces: list) -> float | None:
    """The slope (rows per column) of the straight lines among the pieces of ink, where they
    rise or fall by ``_SLANT_ROWS`` rows or more across the picture, and slant by at most
    ``_MAX_SLANT`` degrees; None where there are none. A line is a piece at least half as
    wide as the picture and ``_LINE_LONG`` times as wide as it is thick, whose columns'
    centres, where it is one stretch of ink no thicker than usual (no stroke crossing it),
    lie on a straight line: the joined digits of a number do not."""
    w = labels.shape[1]
    slopes = []
    for i, piece in enumerate(pieces, 1):
        if piece is None or not seeded[i] or piece[1].stop - piece[1].start < 0.5 * w:
            continue
        run = labels[piece] == i
        count, thick, centre = _columns(run)
        # one stretch of ink, no thicker than usual: a 0's columns have two (their centres
        # lie on a straight line too)
        top, bottom = run.argmax(axis=0), run.shape[0] - run[::-1].argmax(axis=0)
        plain = np.flatnonzero((count > 0) & (count <= thick + 1) & (count == bottom - top))
        if len(plain) < 0.5 * run.shape[1] or thick * _LINE_LONG > run.shape[1]:
            continue  # (a 7's bar, a 5's flag: straight, but thick for their length)
        centre = centre[plain]
        slope, at = np.polyfit(plain, centre, 1)
        if np.abs(centre - (slope * plain + at)).max() <= thick / 2 + 1.5:
            slopes.append(slope)
    if not slopes:
        return None
    slope = float(np.median(slopes))
    steep = abs(slope) * w >= _SLANT_ROWS and abs(slope) <= math.tan(math.radians(_MAX_SLANT))
    return slope if steep else None


def _shear_rows(shape: tuple[int, int], slope: float) -> np.ndarray:
    """Where each pixel of an image of ``shape`` goes (its row; columns stay) when each column
    is shifted by a whole number of rows so that lines of ``slope`` lie level."""
    h, w = shape
    shift = np.rint(-slope * np.arange(w)).astype(np.intp)
    return np.arange(h)[:, None] + (shift - shift.min())[None, :]


def _without_level_lines(labels: np.ndarray, seeded: np.ndarray, config: ReadConfig,
                         pieces: list | None = None,
                         inside: np.ndarray | None = None) -> np.ndarray | None:
    """:func:`_without_lines` for lines within a few degrees of level, in a picture that is
    all of ``labels`` or, where the columns were shifted, its ``inside`` (``pieces``: the
    pieces' slices, where known).
    A line is a horizontal run of ink (rows taken ``_SLANT_ROWS`` together, so that a slanted
    line counts) at least ``config.line_length`` times as long as the pieces of ink are tall
    (0.6 times that if it runs from the picture's edge to its edge; any length in a corner of
    a shifted picture, if it is nearly all of its piece of ink), thin (``_LINE_THIN``), that
    reaches past the rest of the ink on one side at least, or is nearly all of a piece of ink
    (touches no digit): a 7's bar or the joined bases of "222" never is. (Vertical lines are
    left: a 1 on a tight crop looks like one.) Where a stroke crosses a line or lies along it,
    the stroke is kept whole."""
    mask = seeded[labels]
    if not mask.any():
        return None
    h, w = mask.shape
    areas = np.bincount(labels.ravel(), minlength=len(seeded))[1:] * seeded[1:]
    if pieces is None:
        pieces = ndimage.find_objects(labels, len(seeded) - 1)
    height = _line_height([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s, a in
                           zip(pieces, areas, strict=True)
                           if s is not None and a and a >= config.speck_fraction * areas.max()])
    shortest = config.line_length * height * 0.6
    # the longest horizontal run in any row, from where runs start and end: most images
    # have none that long, and are done here. Rows are taken a few together, so that a line
    # drawn or photographed at a slight slant, whose rows each hold a part of it, is looked at
    together = _rows_together(mask)
    edges = np.diff(np.pad(together, ((0, 0), (1, 1))).view(np.int8), axis=1)
    starts, ends = np.nonzero(edges == 1)[1], np.nonzero(edges == -1)[1]
    if len(starts) == 0 or (ends - starts).max() < shortest:
        return None
    run = max(8, round(0.06 * max(h, w)))  # shorter runs are never looked at
    # long runs of the rows taken together, back on the ink of the rows they came from
    opened = ndimage.binary_opening(together, structure=np.ones((1, run), bool))
    runs, count = ndimage.label(_rows_together(opened, down=True) & mask, structure=_EIGHT)
    if count > _MAX_GROUPS:  # a hatched or textured surface, not lines to take out
        return None
    spans = ndimage.find_objects(runs)
    # a run from edge to edge goes on past them (a crop of a ruled page): less of it shows
    ends = np.zeros((h, w), bool)  # where a line leaves the picture: its left or right edge,
    if inside is None:
        ends[:, [0, -1]] = True
    else:  # or, sheared, near its top or bottom edge too (a slanted line leaves through them)
        ends = inside & ~ndimage.binary_erosion(inside, np.ones((2 * _EDGE_ROWS + 1, 3), bool),
                                                border_value=0)

    def edge_to_edge(i: int) -> bool:
        on_ends = (runs[spans[i - 1]] == i) & ends[spans[i - 1]]
        return bool(on_ends[:, 0].any() and on_ends[:, -1].any())

    long = [i for i, s in enumerate(spans, 1) if s[1].stop - s[1].start >= config.line_length
            * height * (0.6 if edge_to_edge(i) else 1.0)]
    # a slanted page's lines cross its corners: there a line's end may be short, but it runs
    # from edge to edge and (below) is nearly all of the piece it is in
    tips = ({i for i in range(1, len(spans) + 1) if i not in long and edge_to_edge(i)}
            if inside is not None else set())
    long += sorted(tips)
    # ... and thin: where the rows taken together join thick writing, a long run is no line
    itself = {i: _line_itself(runs[spans[i - 1]] == i) for i in long}
    inked = np.flatnonzero(mask.any(axis=1))
    long = [i for i in long if itself[i][1] <= _LINE_THIN * (inked[-1] + 1 - inked[0])]
    # the writing's columns: ink in no horizontal run, of pieces as tall as digits at least
    # half (not the dashes a faint line breaks into)
    tall = np.zeros(len(seeded), bool)
    tall[1:] = [s is not None and s[0].stop - s[0].start >= 0.5 * height for s in pieces]
    rest = np.flatnonzero((mask & (runs == 0) & tall[labels]).any(axis=0))
    # A line reaches past the writing on at least one side, as a rule under a number or a
    # ruled page does, or is drawn apart from it, as an underline may be; the joined bases
    # of "222", or of a tight crop of "22", do neither
    past = 0.25 * height

    def apart(i: int) -> bool:  # the run is (nearly) the whole of the piece it is in
        s = spans[i - 1]
        on_run = runs[s] == i
        return on_run.sum() >= _LINE_ALONE * areas[np.unique(labels[s][on_run]) - 1].sum()

    lines = [i for i in long if (apart(i) if i in tips else
                                 not len(rest) or spans[i - 1][1].start <= rest[0] - past
                                 or spans[i - 1][1].stop >= rest[-1] + 1 + past or apart(i))]
    if not lines:
        return None
    found = np.zeros_like(mask)
    for i in lines:
        found[spans[i - 1]] |= itself[i][0]
    thick = int(np.median([itself[i][1] for i in lines]))
    across = np.ones((min(thick, max(1, round(0.25 * height))) + 3, 1), bool)
    kept = mask & ~found
    # a stroke crossing a line: ink above and below it is joined through it again
    bridged = ndimage.binary_erosion(ndimage.binary_dilation(kept, structure=across),
                                     structure=across, border_value=1)
    out = kept | (found & bridged)
    if not out.any():
        raise BlankImage("blank image: only straight lines (ruled paper?), nothing written")
    return out


def _rows_together(mask: np.ndarray, down: bool = False) -> np.ndarray:
    """Each row of ``mask`` or'ed with the ``_SLANT_ROWS`` - 1 rows below it (``down``: above
    it, which takes a row taken together back onto the rows it came from)."""
    out = mask.copy()
    for k in range(1, _SLANT_ROWS):
        if down:
            out[k:] |= mask[:-k]
        else:
            out[:-k] |= mask[k:]
    return out


def _columns(run: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """A piece's box mask, column by column: how much ink each holds, the piece's usual
    thickness (the median of that), and the row each column's ink is centred on."""
    count = run.sum(axis=0)
    rows = np.arange(run.shape[0], dtype=np.float64)[:, None]
    return (count, int(np.median(count[count > 0])),
            (run * rows).sum(axis=0) / np.maximum(count, 1))


def _line_itself(run: np.ndarray) -> tuple[np.ndarray, int]:
    """The line in a long horizontal run (its box's mask), and how thick it is: where a stroke
    lies along a line (a 6's loop sitting on a ruled line), the run takes in the stroke's
    rows too; the line itself is the band of its usual thickness around the straight
    centre line of the columns it has nothing else in."""
    count, thick, centre = _columns(run)
    plain = np.flatnonzero((count > 0) & (count <= thick + 1))
    if len(plain) < 2:
        return run, thick
    slope, at = np.polyfit(plain, centre[plain], 1)
    middle = slope * np.arange(run.shape[1]) + at
    rows = np.arange(run.shape[0])[:, None]
    return run & (np.abs(rows - middle) <= thick / 2 + 1), thick


def _dashes(pieces: list, keep: np.ndarray) -> np.ndarray:
    """Which of the kept ``pieces`` (their slices) are dashes, not digits: at most
    ``_DASH`` of a digit tall and at least a digit long, with no other piece under or over
    it closer than ``_DASH`` of a digit (a 7's bar drawn apart from its stem is that close),
    as what is left of a faint ruled line that broke into pieces, or a minus sign. None
    where every piece is one."""
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop) if k and s is not None else None
             for s, k in zip(pieces, keep, strict=True)]
    height = _line_height([b for b in boxes if b is not None])

    def apart(b) -> bool:  # no other piece over or under it within _DASH * height
        return not any(o is not None and o is not b and o[0] < b[2] and b[0] < o[2]
                       and o[1] < b[3] + _DASH * height and b[1] < o[3] + _DASH * height
                       for o in boxes)

    dash = np.array([b is not None and b[3] - b[1] <= _DASH * height
                     and b[2] - b[0] >= height and apart(b) for b in boxes], bool)
    return dash if not dash[keep].all() else np.zeros_like(dash)


def _is_dot(piece: np.ndarray) -> bool:
    """Whether a piece of ink (its box's mask) is a solid round or square blot: the largest
    disc inside it is nearly as wide as the piece is long. No digit is; a 0 filled in by a
    thick marker is taller than wide, so its largest disc is not. (An oval blot passes for a
    0: tried wider, the rule took thick-marker digits for blots.)"""
    h, w = piece.shape
    if not 0.7 <= w / h <= 1.4 or piece.mean() < 0.6:  # quick: most pieces end here
        return False
    return 2 * float(ndimage.distance_transform_edt(np.pad(piece, 1)).max()) >= 0.85 * max(h, w)


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilate a mask by ``r`` pixels in every direction (a square: separable, so quick)."""
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * r + 1).view(bool)


def _union(boxes) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _normalise_stroke(x: np.ndarray, config: ReadConfig) -> np.ndarray:
    """Bring the stroke width to MNIST's share of the digit height: thin pen lines on a big
    canvas would otherwise fade to nothing in the 20 px box, and marker blobs fill it."""
    mask = x > 0.5
    if not mask.any():
        return x
    depth = ndimage.distance_transform_edt(mask)
    ridge = (depth == ndimage.maximum_filter(depth, size=3)) & mask
    width = 2.0 * float(np.median(depth[ridge]))
    target = MNIST_STROKE * x.shape[0]
    if width < 0.7 * target:
        r = min(_MAX_RADIUS, max(1, round((target - width) / 2)))
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r + 0.3
        return ndimage.grey_dilation(x, footprint=disk)
    if width > 1.5 * target:
        r = min(_MAX_RADIUS, max(1, round((width - target) / 2)))
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r + 0.3
        thinner = ndimage.grey_erosion(x, footprint=disk)
        return thinner if (thinner > 0.5).sum() > 0.3 * mask.sum() else x  # a blob stays
    return x


def _trimmed(x: np.ndarray) -> np.ndarray:
    """``x`` cut down to the box of its pixels brighter than ``_TRIM_INK`` (as it is, if none)."""
    ys, xs = np.nonzero(x > _TRIM_INK)
    return x[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else x


def to_mnist(crop: np.ndarray, config: ReadConfig = ReadConfig(),
             slope: float = 0.0) -> np.ndarray:
    """A tight crop of bright ink (h, w) -> (28, 28) float32: stroke normalised, longer side
    20 px keeping the aspect ratio, centre of mass moved to the centre, peak 1. ``slope``:
    the page's lines fall that many rows per column (a page photographed askew); the crop is
    turned back first, so that the digit stands as it was written."""
    if slope:
        crop = _trimmed(ndimage.rotate(crop, math.degrees(math.atan(slope)), order=1))
    h, w = crop.shape
    if config.normalise_stroke:
        s = config.stroke_side / h
        pad = round(0.1 * config.stroke_side)  # room for a thickened stroke
        mid = _resize(crop, max(1, round(w * s)), config.stroke_side)
        crop = _trimmed(_normalise_stroke(np.pad(mid, pad), config))
        h, w = crop.shape
    s = MNIST_BOX / max(h, w)
    small = _resize(crop.astype(np.float32), max(1, round(w * s)), max(1, round(h * s)))
    out = np.zeros((MNIST_SIDE, MNIST_SIDE), np.float32)
    top, left = (MNIST_SIDE - small.shape[0]) // 2, (MNIST_SIDE - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    if out.sum() > 0:
        cy, cx = ndimage.center_of_mass(out)
        dy, dx = round(MNIST_SIDE / 2 - 0.5 - cy), round(MNIST_SIDE / 2 - 0.5 - cx)
        # shift, but never push ink off the canvas
        ys, xs = np.nonzero(out)
        dy = int(np.clip(dy, -ys.min(), MNIST_SIDE - 1 - ys.max()))
        dx = int(np.clip(dx, -xs.min(), MNIST_SIDE - 1 - xs.max()))
        out = np.roll(out, (dy, dx), axis=(0, 1))
    peak = out.max()
    return np.clip(out / peak, 0, 1) if peak > 0 else out


def prepare_digit(image: np.ndarray, config: ReadConfig = ReadConfig()) -> Prepared:
    """One digit: all the ink in the image, MNIST-normalised; ``several`` when the ink looks
    like a number instead (separate digits side by side, or wider than any one digit)."""
    ink = find_ink(image, config)
    x0, y0, x1, y1 = box = _union(ink.boxes)
    groups = _group_columns(ink.boxes)
    line = _line_height(ink.boxes)
    several = (x1 - x0 > config.max_digit_aspect * line or len(groups) > _MAX_GROUPS
               or len(_attach_short(groups, ink.boxes, line)) > 1)
    return Prepared(to_mnist(ink.image[y0:y1, x0:x1], config, ink.slope),
                    ink.original_box(box), several)


def _group_columns(boxes) -> list[list[int]]:
    """Pieces that overlap horizontally belong to one digit (a broken 4, a 0 in two arcs)."""
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    groups: list[list[int]] = []
    for i in order:
        x0, _, x1, _ = boxes[i]
        if groups:
            g0, _, g1, _ = _union([boxes[j] for j in groups[-1]])
            overlap = min(x1, g1) - max(x0, g0)
            if overlap > 0.4 * min(x1 - x0, g1 - g0):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def _line_height(boxes) -> float:
    """The height of a digit in this line: the median of the tall pieces' heights."""
    heights = np.array([b[3] - b[1] for b in boxes], float)
    return float(np.median(heights[heights >= 0.5 * heights.max()]))


def _attach_short(groups: list[list[int]], boxes, line_height: float) -> list[list[int]]:
    """A piece much shorter than the line's digits is part of a neighbour (the bar of a 5,
    the top of a broken 7), not a digit: join it to the horizontally nearest group."""
    groups = [list(g) for g in groups]
    while len(groups) > 1:
        spans = [_union([boxes[i] for i in g]) for g in groups]
        short = [k for k, s in enumerate(spans) if s[3] - s[1] < _SHORT_PIECE * line_height]
        if not short:
            break
        k = min(short, key=lambda k: spans[k][3] - spans[k][1])
        def gap(j, k=k, spans=spans):
            return max(spans[j][0] - spans[k][2], spans[k][0] - spans[j][2])
        nearest = min((j for j in range(len(groups)) if j != k), key=gap)
        piece = groups.pop(k)
        groups[nearest - (nearest > k)] += piece
        groups.sort(key=lambda g: _union([boxes[i] for i in g])[0])
    return groups


def _seams(x: np.ndarray, line: float, most: int) -> list[tuple[np.ndarray, float]]:
    """Where a piece of touching digits can be cut: paths from top to bottom through the
    least ink, each kept within a band around one of evenly spaced columns (a straight cut
    would slice a slanting neighbour). Each path is its column per row (the first column on
    its right side), with the ink it crosses, cheapest first; a path that only repeats a
    cheaper one is dropped."""
    h, w = x.shape
    band, step = max(2, round(_SEAM_BAND * line)), max(1, round(line / 16))
    centres = np.arange(step, w - step + 1, step)
    if len(centres) == 0:
        return []
    offsets = np.arange(-band, band + 1)
    cols = centres[:, None] + offsets[None, :]  # (K, B) the columns each path may take
    outside = (cols < 1) | (cols > w - 1)
    cols = np.clip(cols, 0, w - 1)
    drift = 1e-3 * np.abs(offsets)  # of two paths through as much ink, the straighter
    big = np.float32(1e9)
    cost = np.where(outside, big, x[0, cols] + drift)
    came = np.full((3, *cols.shape), big, cost.dtype)  # from the left, above, the right
    moves = np.zeros((h, *cols.shape), np.int8)
    for r in range(1, h):
        came[0, :, 1:], came[1], came[2, :, :-1] = cost[:, :-1], cost, cost[:, 1:]
        moves[r] = came.argmin(0)
        cost = np.where(outside, big, came.min(0) + x[r, cols] + drift)
    moves -= 1
    k = np.arange(len(centres))
    at = cost.argmin(1)
    total = cost[k, at]
    paths = np.empty((len(centres), h), int)
    for r in range(h - 1, 0, -1):
        paths[:, r] = cols[k, at]
        at = at + moves[r, k, at]
    paths[:, 0] = cols[k, at]
    kept: list[tuple[np.ndarray, float]] = []
    apart = max(step, round(_SEAM_APART * line))
    for i in np.argsort(total, kind="stable"):
        if total[i] >= big or len(kept) == most:
            break
        if all(np.abs(paths[i] - p).mean() > apart for p, _ in kept):
            kept.append((paths[i], float(x[np.arange(h), paths[i]].sum())))
    return kept


@dataclass(frozen=True)
class NumberPart:
    """One connected group of ink in a number, read as one digit or, when it is wide enough to
    hold touching digits, cut apart. The ways to cut it form a lattice: cut 0 is its left
    edge, cut ``ends`` its right edge, the cuts between are paths through its least ink, and
    ``segments[i, j]`` is the ink between cuts i and j that could be one digit. Which way wins
    is the model's call; ``must_split`` when no single digit is that wide."""

    single: Prepared
    segments: dict[tuple[int, int], Prepared] = field(default_factory=dict)
    crossed: list[float] = field(default_factory=lambda: [0.0, 0.0])  # ink each cut crosses,
    # in digit heights (a cut through a 0 crosses two strokes, one between joined digits less)
    must_split: bool = False

    @property
    def ends(self) -> int:
        return len(self.crossed) - 1


def _crop(region: np.ndarray, x0: int, y0: int, ink: Ink,
          config: ReadConfig) -> Prepared | None:
    """The ink in ``region`` (its corner at working pixels (x0, y0)), cropped and prepared."""
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return None
    a, b, top, bottom = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    box = (x0 + a, y0 + top, x0 + b, y0 + bottom)
    return Prepared(to_mnist(region[top:bottom, a:b], config, ink.slope),
                    ink.original_box(box))


def _segments(region: np.ndarray, x0: int, y0: int, line: float, ink: Ink,
              config: ReadConfig) -> tuple[dict[tuple[int, int], Prepared], list[float]]:
    """The lattice of a piece that may be touching digits (see :class:`NumberPart`): the ink
    between each two cuts that is as tall as a digit and no wider than one can be."""
    h, w = region.shape
    guess = w / (config.digit_aspect * line)  # how many digits it looks wide for
    seams = sorted(_seams(region, line, round(_SEAMS_PER_DIGIT * guess)),
                   key=lambda seam: seam[0].mean())
    cuts = [np.zeros(h, int), *(path for path, _ in seams), np.full(h, w)]
    columns = np.arange(w)[None, :]
    segments = {}
    for i, left in enumerate(cuts):
        for j in range(i + 1, len(cuts)):
            if (i, j) == (0, len(cuts) - 1):
                continue  # the whole piece is NumberPart.single
            inside = (columns >= left[:, None]) & (columns < cuts[j][:, None])
            part = np.where(inside, region, 0)
            rows, cols = np.nonzero(part > 0.5)
            if len(rows) == 0 or np.ptp(rows) + 1 < _SHORT_PIECE * line:
                continue
            if np.ptp(cols) + 1 > config.max_digit_aspect * line:
                break  # and so is every wider one from this cut
            if (got := _crop(part, x0, y0, ink, config)) is not None:
                segments[i, j] = got
    return segments, [0.0, *(crossed / line for _, crossed in seams), 0.0]


def prepare_number(image: np.ndarray, config: ReadConfig = ReadConfig()) -> list[NumberPart]:
    """The digits of a handwritten number, left to right, each MNIST-normalised with its box."""
    ink = find_ink(image, config)
    line = _line_height(ink.boxes)
    groups = _group_columns(ink.boxes)
    if len(groups) > _MAX_GROUPS:
        raise BlankImage(f"no number here: {len(groups)} separate marks look like a texture")
    out = []
    for group in _attach_short(groups, ink.boxes, line):
        x0, y0, x1, y1 = _union([ink.boxes[i] for i in group])
        pieces = np.isin(ink.labels[y0:y1, x0:x1], [i + 1 for i in group])
        # the pieces' own pixels, grown back to their anti-aliased edges, not a neighbour's
        region = np.where(_grow(pieces, 2), ink.image[y0:y1, x0:x1], 0)
        single = _crop(region, x0, y0, ink, config)
        segments, crossed = {}, [0.0, 0.0]
        if (x1 - x0) > config.split_aspect * line:
            segments, crossed = _segments(region, x0, y0, line, ink, config)
        out.append(NumberPart(single, segments, crossed,
                              (x1 - x0) > config.max_digit_aspect * line))
    return out


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (size, size) by exact area averaging, as the digits20 set was made."""
    def weights(n_in: int) -> np.ndarray:
        s = n_in / size
        lo, hi = np.arange(size)[:, None] * s, (np.arange(size)[:, None] + 1) * s
        j = np.arange(n_in)[None, :]
        return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / s
    return (weights(image.shape[0]) @ image.astype(np.float64) @ weights(image.shape[1]).T)
