"""The Python API: the bundled model reading people-style pictures, every kind of source."""

import io
import json

import numpy as np
import pytest
from digits import joined, on_paper, png
from PIL import Image, ImageDraw

from digitlab.checkpoint import bundled_path, load_model
from digitlab.images import ImageRejected
from digitlab.preprocess import BlankImage, prepare_digit
from digitlab.recognize import CROSS_COST, Answer, Recognizer, _best_cuts


@pytest.fixture(scope="module")
def rec():
    return Recognizer.load()


def test_the_bundled_model_is_small_and_recorded():
    path = bundled_path()
    assert path.stat().st_size <= 5 * 2**20
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["test_accuracy"] >= 0.993 and "train_bundled.py" in record["command"]
    loaded = load_model(path)  # weights_only: loading runs no code
    assert loaded.config.arch == "digitnet" and loaded.meta["test_accuracy"] >= 0.993


@pytest.mark.parametrize("digit", range(10))
def test_reads_handwriting_on_paper(rec, digit):
    answer = rec.predict(png(on_paper([digit], k=1)))
    assert answer.digit == digit and not answer.low_confidence
    assert len(answer.probabilities) == 10 and abs(sum(answer.probabilities) - 1) < 1e-5
    assert answer.image.shape == (28, 28)


def test_every_kind_of_source_gives_the_same_answer(rec, tmp_path):
    im = on_paper([4], paper=(250, 236, 140), ink=(25, 40, 150))
    path = tmp_path / "four.jpg"  # a PNG under a JPEG name: content decides
    path.write_bytes(png(im))
    rgb = np.asarray(im)
    answers = [rec.predict(s) for s in (str(path), path, png(im), im, rgb,
                                        rgb.astype(np.float32) / 255)]
    assert {a.digit for a in answers} == {4}
    assert max(a.confidence for a in answers) - min(a.confidence for a in answers) < 1e-6


def test_mnist_ready_arrays_are_only_scaled(rec):
    seen = prepare_digit(np.asarray(on_paper([3]).convert("L"), np.float32) / 255).image
    a, b = rec.predict_mnist(seen), rec.predict_mnist(seen * 255)
    assert a.digit == b.digit == 3 and abs(a.confidence - b.confidence) < 1e-6
    with pytest.raises(ImageRejected, match="28x28"):
        rec.predict_mnist(np.zeros((20, 20)))
    with pytest.raises(BlankImage, match="no ink"):
        rec.predict_mnist(np.zeros((28, 28)))


def test_read_a_number_left_to_right(rec):
    reading = rec.read(png(on_paper([1, 9, 8, 4], k=2)))
    assert reading.number == "1984"
    boxes = [d.box for d in reading.digits]
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)


def _pen(strokes, size) -> bytes:
    im = Image.new("L", size, 255)
    draw = ImageDraw.Draw(im)
    for kind, pts in strokes:
        if kind == "line":
            draw.line(pts, fill=0, width=12, joint="curve")
        else:
            draw.ellipse(pts, outline=0, width=12)
    return png(im)


def test_joined_digits_are_cut_and_a_wide_digit_is_not(rec):
    # real handwriting whose neighbours' ink meets: each pair is one piece, no wider than one
    # wide digit, and the model reads it whole as one digit (an 8, a 6) with confidence; the
    # cut follows the gap between them and each digit's usual width counts against the whole
    for digits, k in (([8, 9], 2), ([1, 5], 3), ([6, 7], 3)):
        reading = rec.read(png(joined(digits, k=k)))
        assert reading.number == "".join(map(str, digits)), (digits, k)
        assert all(d.touching for d in reading.digits)
    wide_zero = _pen([("ellipse", (30, 30, 170, 130))], (200, 160))  # 1.4 times as wide
    assert rec.read(wide_zero).number == "0"
    wide_two = _pen([("line", [(30, 40), (60, 25), (100, 30), (110, 60), (40, 130), (150, 130)])],
                    (200, 160))
    assert rec.read(wide_two).number == "2"


def test_the_surest_way_through_the_cuts_wins():
    def said(digit, confidence, width=60):
        return Answer(digit, confidence, [0.0] * 10, False, np.zeros((28, 28)),
                      (0, 0, width, 100))
    # cuts 0..3 (the whole, (0, 3), is read elsewhere): two digits (0, 2) + (2, 3) or three
    answers = {(0, 1): said(1, 0.95, 20), (1, 2): said(1, 0.6, 20), (0, 2): said(4, 0.99),
               (2, 3): said(7, 0.98), (1, 3): said(0, 0.5)}
    crossed = [0.0, 0.1, 0.05, 0.0]  # ink each cut crosses, in digit heights
    score, path = _best_cuts(answers, crossed)
    assert [a.digit for a in path] == [4, 7]
    assert score == pytest.approx(np.log(0.99) + np.log(0.98) - CROSS_COST * 0.05, abs=1e-9)
    # a cut through much ink costs more than the surer reading it buys
    score, path = _best_cuts(answers, [0.0, 0.1, 0.5, 0.0])
    assert [a.digit for a in path] == [1, 0]
    assert _best_cuts({(0, 1): said(1, 0.9)}, crossed) is None, "no way through"


def test_confidence_threshold_flags(rec):
    data = png(on_paper([6]))
    assert Recognizer(rec.loaded, min_confidence=1.0).predict(data).low_confidence
    assert not Recognizer(rec.loaded, min_confidence=0.0).predict(data).low_confidence


@pytest.mark.parametrize("source, error, reason", [
    (png(Image.new("RGB", (100, 100), "white")), BlankImage, "blank"),
    (png(Image.new("L", (100, 100), 0)), BlankImage, "blank"),
    (b"not an image at all", ImageRejected, "not an image"),
    ("/no/such/file.png", ImageRejected, "no such file"),
    (np.zeros((5, 5, 7)), ImageRejected, "not an image"),
    (np.where(np.eye(50, dtype=bool), np.nan, 1.0), ImageRejected, "NaN"),
])
def test_rejections(rec, source, error, reason):
    with pytest.raises(error, match=reason):
        rec.predict(source)


def test_a_twenty_by_twenty_model_reads_too(tmp_path):
    from digitlab.config import TrainConfig
    from digitlab.data import load_dataset
    from digitlab.runs import train_and_evaluate
    config = TrainConfig.from_preset("seed-20x20", epochs=15, seed=0, threads=1)
    train_and_evaluate(config, load_dataset("digits20"), tmp_path / "run")
    small = Recognizer.load(tmp_path / "run")
    assert small.input_shape == (20, 20)
    answers = [small.predict(png(on_paper([d], k=3))).digit for d in range(10)]
    assert sum(a == d for d, a in enumerate(answers)) >= 7


def test_pil_image_with_alpha(rec):
    im = on_paper([2]).convert("RGBA")
    a = np.asarray(im).copy()
    a[..., 3] = 255 - a[..., 0]  # ink opaque, paper transparent
    a[..., :3] = 0
    assert rec.predict(Image.fromarray(a, "RGBA")).digit == 2
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, "PNG")
    assert rec.predict(buf.getvalue()).digit == 2


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_boxes_are_in_the_pixels_of_an_image_decoded_reduced(rec, fmt):
    """Images larger than the work size are decoded reduced (PNG: reduce; JPEG: DCT
    scaling): the boxes still come back in the file's own pixels."""
    number = on_paper([4, 1], height=600)
    big = Image.new("RGB", (3400, 2000), (255, 255, 255))
    big.paste(number, (1000, 600))
    buf = io.BytesIO()
    big.save(buf, fmt, quality=90)
    reading = rec.read(buf.getvalue())
    x0, y0, x1, y1 = 1000, 600, 1000 + number.width, 600 + number.height  # the paper pasted
    for answer in reading.digits:
        bx0, by0, bx1, by1 = answer.box
        assert x0 - 20 <= bx0 < bx1 <= x1 + 20 and y0 - 20 <= by0 < by1 <= y1 + 20, answer.box
        assert by1 - by0 > 300, "a digit 600 px tall keeps most of its height"
    assert reading.number == "41"
    box = rec.predict(buf.getvalue()).box
    assert x0 - 20 <= box[0] < box[2] <= x1 + 20 and box[2] - box[0] > 600
