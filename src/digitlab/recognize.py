"""Reading digits in people's own images: decode -> prepare -> model, for one digit or a
whole number. The one path behind ``digitlab predict`` / ``read``, the Python API and the
service.

    >>> from digitlab import Recognizer
    >>> rec = Recognizer.load()                # the bundled model
    >>> answer = rec.predict("photo.jpg")      # doctest: +SKIP
    >>> answer.digit, answer.confidence        # doctest: +SKIP
    (7, 0.998)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ._bundled import bundled_path
from .config import MIN_CONFIDENCE
from .images import ImageRejected, Limits, composite, decode_image_sized, folder_reason
from .preprocess import BlankImage, ReadConfig, area_resize, prepare_digit, prepare_number

__all__ = ["Answer", "Reading", "Recognizer", "Rejected"]

Rejected = (ImageRejected, BlankImage)  # what a bad input raises: a one-line reason
# A piece of ink wider than any one digit could be is always cut apart. One merely wide
# enough to be two (ReadConfig.split_aspect) may be a wide digit (a 0, a 2) or joined ones:
# it is cut where the cut pieces' scores (_score), added, beat the whole's, each cut costing
# CROSS_COST times the ink it crosses (in digit heights): a cut through a 0 crosses two
# strokes, one between joined digits only where they meet. CROSS_COST, ASPECT_WEIGHT and
# split_aspect were chosen with the bundled model on user-style numbers (bench/userstyle.py)
# of a seed bench/reading.py does not use: of 300 numbers with joined digits 43.7% -> 85.3%
# read exactly, of 300 with separate, overlapping or broken digits 96.0% -> 96.0% (checked
# after on two more seeds: 43.0 -> 82.7% and 51.0 -> 87.0%; 95.7 -> 96.0% and 95.0 ->
# 95.0%). Until 2026-11-23 a piece was cut only straight down, at evenly spaced columns or
# the thinnest near them, and only when 1.1 line heights wide. Tried on the same seed:
# straight cuts added to the paths through least ink lost 3-5 points; a fixed cost per cut
# (0.45 in log confidence) instead of one for the ink it crosses read 74.3%.
CROSS_COST = 2.0
# How wide each digit is: the mean and spread of log(width / height) of the ink of MNIST's
# 60,000 training digits (pixels above 0.3), 0 to 9. A reading whose digit is much wider
# than that digit is written (two joined digits read as one 4) is trusted less, by
# ASPECT_WEIGHT times the normal's log density (at full weight, wide 0s and 3s were cut).
ASPECT_WEIGHT = 0.25
_ASPECT_MEAN = (-0.11, -0.94, -0.07, -0.24, -0.25, -0.08, -0.33, -0.27, -0.29, -0.4)
_ASPECT_SPREAD = (0.2, 0.46, 0.22, 0.21, 0.22, 0.26, 0.22, 0.22, 0.22, 0.21)


@dataclass(frozen=True)
class Answer:
    """One digit: the answer, how sure, and what the model saw."""

    digit: int
    confidence: float
    probabilities: list[float]  # 10 softmax probabilities
    low_confidence: bool
    image: np.ndarray = field(repr=False)  # (28, 28) float32, the model's input
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) in the original image
    touching: bool = False  # cut out of a piece holding touching digits
    several: bool = False  # read as one digit, but the ink looked like a number (use read)

    def to_dict(self) -> dict:
        return {"digit": self.digit, "confidence": self.confidence,
                "probabilities": self.probabilities, "low_confidence": self.low_confidence,
                "box": list(self.box) if self.box else None}


@dataclass(frozen=True)
class Reading:
    """A whole number, left to right."""

    number: str
    digits: list[Answer]

    @property
    def low_confidence(self) -> bool:
        return any(d.low_confidence for d in self.digits)


def _as_array(source, limits: Limits = Limits()) -> tuple[np.ndarray, tuple[float, float]]:
    """A path, encoded bytes, a PIL image or an array -> float32 image in [0, 1], and the
    (x, y) scale from its pixels to the source's: above 1 where a large image was decoded
    reduced (boxes are given in the source's pixels)."""
    array, size = _decoded(source, limits)
    if size is None:
        return array, (1.0, 1.0)
    return array, (size[0] / array.shape[1], size[1] / array.shape[0])


def _decoded(source, limits: Limits) -> tuple[np.ndarray, tuple[int, int] | None]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ImageRejected(folder_reason(path))
        try:
            return decode_image_sized(path.read_bytes(), limits)
        except FileNotFoundError:
            raise ImageRejected("no such file") from None
        except PermissionError:
            raise ImageRejected("permission denied") from None
        except OSError as exc:
            raise ImageRejected(f"cannot read the file ({exc.strerror or exc})") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image_sized(bytes(source), limits)
    if hasattr(source, "mode") and hasattr(source, "size"):  # a PIL image
        import io
        buf = io.BytesIO()
        source.save(buf, "PNG")
        return decode_image_sized(buf.getvalue())
    array = np.asarray(source)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageRejected(f"array of shape {array.shape} is not an image")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():  # (8-bit pixels always are)
        raise ImageRejected("the array holds NaN or infinite values")
    array = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 or array.max() > 1
                                        else 1.0)
    if array.ndim == 3 and array.shape[2] == 4:
        array = composite(array)
    return np.clip(array, 0, 1), None


def _scaled(answer: Answer, scale: tuple[float, float]) -> Answer:
    """``answer`` with its box in the source's pixels (``scale``: see :func:`_as_array`)."""
    if answer.box is None or scale == (1.0, 1.0):
        return answer
    (x0, y0, x1, y1), (sx, sy) = answer.box, scale
    return replace(answer, box=(int(x0 * sx), int(y0 * sy), round(x1 * sx), round(y1 * sy)))


class Recognizer:
    """A model plus the reading path. ``min_confidence`` flags answers below it.

    ``loaded`` is a :class:`~digitlab.checkpoint.LoadedModel` (a PyTorch network) or a
    :class:`~digitlab.npinfer.NumpyNet`; ``backend``, when given, computes the probabilities
    instead of the PyTorch network (an :class:`~digitlab.export.OnnxBackend`, say).
    """

    def __init__(self, loaded, config: ReadConfig = ReadConfig(), limits: Limits = Limits(),
                 min_confidence: float = MIN_CONFIDENCE, device: str = "cpu", backend=None):
        self.loaded = loaded
        self.model = loaded.model.to(device).eval() if loaded.model is not None else None
        if self.model is not None and backend is None and device == "cpu":
            import torch  # loaded: the model is a PyTorch network
            # a convnet's weights channels-last: digitnet 1.1 against 1.3 ms an image here,
            # 3,100 against 1,800-2,100 images/s in thousands (an MLP has none to change)
            self.model.to(memory_format=torch.channels_last)
        self.config, self.limits = config, limits
        self.min_confidence = min_confidence
        self.device = device
        self.input_shape = tuple(loaded.config.input_shape)
        # images (N, H, W) float32 -> probabilities (N, 10)
        self.backend = backend if backend is not None or self.model is not None else loaded

    @classmethod
    def load(cls, model: str | Path | None = None, engine: str = "torch",
             **options) -> Recognizer:
        """The model at ``model`` (a model file or run directory), or the bundled one.
        ``engine="numpy"`` runs it without PyTorch (a second less to start), from the bundled
        model's .npz or the copy a run keeps beside its model file (ValueError if it has
        none that matches)."""
        from .runlist import model_file
        path = bundled_path() if model is None else model_file(model)
        if engine == "numpy":
            from .npinfer import NumpyNet, beside
            net = NumpyNet(bundled_path(".npz")) if model is None else beside(path)
            if net is None:
                raise ValueError(f"{path} has no NumPy copy written from it (model.npz)")
            return cls(net, **options)
        from .checkpoint import load_model
        return cls(load_model(path), **options)

    @property
    def parameters(self) -> int:
        if self.model is not None:
            return sum(p.numel() for p in self.model.parameters())
        return self.loaded.parameters

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax (N, 10) for MNIST-ready images (N, 28, 28) float32 in [0, 1]."""
        images = np.asarray(images, np.float32)
        if self.input_shape != images.shape[1:]:  # e.g. a 20x20 digits20 model
            images = np.stack([area_resize(i, self.input_shape[0]) for i in images])
        if self.backend is not None:
            return self.backend(images.astype(np.float32))
        import torch
        x = torch.as_tensor(images.astype(np.float32), device=self.device)
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1).cpu().numpy()

    def _answers(self, prepared, touching: list[bool] | None = None) -> list[Answer]:
        if not prepared:
            return []
        proba = self.probabilities(np.stack([p.image for p in prepared]))
        return [Answer(int(p.argmax()), float(p.max()), [float(v) for v in p],
                       bool(p.max() < self.min_confidence), prep.image, prep.box,
                       bool(touching[i]) if touching else False, prep.several)
                for i, (p, prep) in enumerate(zip(proba, prepared, strict=True))]

    def predict(self, source) -> Answer:
        """The digit in ``source`` (path, bytes, PIL image or array). Raises one of
        :data:`Rejected` with a one-line reason for an unreadable or blank input."""
        image, scale = _as_array(source, self.limits)
        return _scaled(self._answers([prepare_digit(image, self.config)])[0], scale)

    def predict_mnist(self, image: np.ndarray) -> Answer:
        """An MNIST-ready 28x28 array (white on black, 0-1 or 0-255), only scaled."""
        image = np.asarray(image, np.float32)
        if image.shape != (28, 28):
            raise ImageRejected(f"expected a 28x28 array, got shape {image.shape}")
        if image.min() == image.max():  # as the reading path refuses an image with no ink
            raise BlankImage("blank image: no ink (uniform)")
        if image.max() > 1:
            image = image / 255.0
        from .preprocess import Prepared
        return self._answers([Prepared(np.clip(image, 0, 1), None)])[0]

    def read(self, source) -> Reading:
        """The number written in ``source``: its digits left to right. A group of ink wide
        enough to be touching digits is read whole and in every way it can be cut apart; the
        reading the model is surest of (see :func:`_best_cuts`) wins."""
        image, scale = _as_array(source, self.limits)
        parts = prepare_number(image, self.config)
        singles = self._answers([p.single for p in parts])
        digits: list[Answer] = []
        for part, single in zip(parts, singles, strict=True):
            keys = list(part.segments)
            answers = dict(zip(keys, self._answers([part.segments[k] for k in keys],
                                                   [True] * len(keys)), strict=True))
            best = _best_cuts(answers, part.crossed)
            whole = -np.inf if part.must_split else _score(single)
            if best is not None and best[0] > whole:
                digits += best[1]
            else:
                digits.append(single)
        digits = [_scaled(a, scale) for a in digits]
        return Reading("".join(str(a.digit) for a in digits), digits)


def _best_cuts(answers: dict[tuple[int, int], Answer], crossed: list[float]):
    """The surest way through a piece's lattice of cuts (see preprocess.NumberPart), as
    (score, answers): the sum of its digits' scores (:func:`_score`), less CROSS_COST times
    the ink each cut crosses. None when no way through it reads as digits."""
    ends = len(crossed) - 1
    best: dict[int, tuple[float, list[Answer]]] = {0: (0.0, [])}
    for j in range(1, ends + 1):
        ways = [(best[i][0] + _score(a) - CROSS_COST * crossed[i], [*best[i][1], a])
                for (i, k), a in answers.items() if k == j and i in best]
        if ways:
            best[j] = max(ways, key=lambda way: way[0])
    if ends not in best:
        return None
    return best[ends]


def _score(answer: Answer) -> float:
    """How likely a reading of one digit is: its log confidence, less a penalty for ink
    wider than that digit usually is (a one-sided normal on log aspect)."""
    x0, y0, x1, y1 = answer.box
    z = (np.log(max(1, x1 - x0) / max(1, y1 - y0)) - _ASPECT_MEAN[answer.digit]) \
        / _ASPECT_SPREAD[answer.digit]
    return float(np.log(answer.confidence) - ASPECT_WEIGHT * 0.5 * max(0.0, z) ** 2)

