"""Decoding by content, every format and mode, and each reason an input is refused."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.images import ImageRejected, Limits, decode_image


def seven(size=(120, 100), ink=0, paper=255, mode="L") -> Image.Image:
    im = Image.new(mode, size, paper)
    w, h = size
    ImageDraw.Draw(im).line([(0.2 * w, 0.2 * h), (0.8 * w, 0.2 * h), (0.4 * w, 0.85 * h)],
                            fill=ink, width=max(2, w // 12))
    return im


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def ink_and_paper(a: np.ndarray) -> tuple[float, float]:
    grey = a if a.ndim == 2 else a.mean(-1)
    return float(grey.min()), float(np.median(grey))


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("PNG", "RGB"), ("PNG", "1"),
                                       ("JPEG", "L"), ("JPEG", "RGB"), ("WEBP", "RGB"),
                                       ("TIFF", "L"), ("TIFF", "RGB"), ("BMP", "RGB"),
                                       ("GIF", "L")])
def test_formats_decode_to_dark_ink_on_light_paper(fmt, mode):
    im = seven().convert(mode)
    a = decode_image(encode(im, fmt))
    assert a.dtype == np.float32 and a.shape[:2] == (100, 120)
    ink, paper = ink_and_paper(a)
    assert ink < 0.2 and paper > 0.9


def test_grey_stays_grey_and_colour_stays_colour():
    assert decode_image(encode(seven().convert("RGB"), "PNG")).ndim == 2  # R = G = B
    red = seven(mode="RGB", ink=(200, 0, 0), paper=(255, 255, 255))
    assert decode_image(encode(red, "PNG")).shape == (100, 120, 3)


def test_sixteen_bit_png():
    im = Image.fromarray((np.asarray(seven(), np.uint16) * 257).astype("<u2"))
    assert im.mode == "I;16"
    a = decode_image(encode(im, "PNG"))
    assert ink_and_paper(a) == (0.0, 1.0)


def test_palette_with_and_without_transparency():
    pal = seven().convert("P")
    assert ink_and_paper(decode_image(encode(pal, "PNG")))[1] > 0.9
    rgba = Image.new("RGBA", (120, 100), (0, 0, 0, 0))  # a transparent canvas export
    ImageDraw.Draw(rgba).line([(20, 20), (100, 20), (50, 85)], fill=(0, 0, 0, 255), width=9)
    for data in (encode(rgba, "PNG"), encode(rgba.convert("P"), "PNG", transparency=0)):
        ink, paper = ink_and_paper(decode_image(data))
        assert ink < 0.1 and paper == 1.0, "transparent pixels become white paper"


def test_rgba_with_black_transparent_pixels_is_white_paper():
    # canvas exports often store transparent pixels as (0, 0, 0, 0): black if alpha is ignored
    a = np.zeros((50, 50, 4), np.uint8)
    a[10:40, 22:28] = (30, 30, 30, 255)
    out = decode_image(encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert out[0, 0] == 1.0 and out[20, 25] < 0.2


def test_light_ink_on_a_transparent_canvas_stays_visible():
    # a dark-theme drawing app: white strokes on nothing; on white paper they would vanish
    a = np.zeros((50, 50, 4), np.uint8)
    a[10:40, 22:28] = (250, 250, 250, 255)
    out = decode_image(encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert out[0, 0] == 0.0 and out[20, 25] > 0.9
    card = np.zeros((50, 50, 4), np.uint8)  # a white card with rounded, transparent corners
    card[2:48, 2:48] = (255, 255, 255, 255)
    card[10:40, 22:28] = (20, 20, 20, 255)
    out = decode_image(encode(Image.fromarray(card, "RGBA"), "PNG"))
    assert out[0, 0] == 1.0 and out[20, 25] < 0.2, "light paper drawn opaque stays paper"


def test_gif_first_frame():
    first, second = seven(), Image.new("L", (120, 100), 0)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert ink_and_paper(decode_image(data))[1] > 0.9


def test_exif_orientation_is_applied():
    im = seven(size=(120, 60)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    a = decode_image(encode(im, "JPEG", exif=exif.tobytes()))
    assert a.shape[:2] == (120, 60)


def test_content_not_name_decides(tmp_path):
    assert decode_image(encode(seven(), "PNG")).shape == (100, 120)
    with pytest.raises(ImageRejected, match="not an image"):
        decode_image(b"hello, this is a text file, whatever its name says" * 10)
    with pytest.raises(ImageRejected, match="not an image"):
        decode_image(b"%PDF-1.4\n" + bytes(200))


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IEND\xaeB`\x82")


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (encode(seven(), "PNG")[:300], "truncated or corrupt"),
    (encode(seven().convert("RGB"), "JPEG")[:400], "truncated or corrupt"),
    (encode(seven(size=(6, 40)), "PNG"), "too small"),
    (_png_header(100_000, 100_000), "decompression-bomb"),
    (_png_header(9000, 7000), "63 megapixels, over the limit of 50"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt PNG image"),
    (b"RIFF\0\0\0\0WEBPVP8 " + bytes(30), "corrupt"),
])
def test_rejections_have_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        decode_image(data)


def test_large_jpeg_is_decoded_downscaled_large_png_refused():
    big = seven(size=(4000, 3000)).convert("RGB")
    limits = Limits(max_pixels=2_000_000, work_side=1000)
    a = decode_image(encode(big, "JPEG", quality=50), limits)
    assert max(a.shape[:2]) <= 2000, "JPEG DCT scaling, never the full 12 megapixels"
    with pytest.raises(ImageRejected, match="over the limit of 2"):
        decode_image(encode(big.convert("L"), "PNG"), limits)
    with pytest.raises(ImageRejected, match="over the limit"):
        decode_image(encode(big, "JPEG"), Limits(max_bytes=10_000))


def test_huge_png_within_limits_is_reduced_for_work():
    a = decode_image(encode(seven(size=(3300, 2000)), "PNG"), Limits(work_side=800))
    assert max(a.shape) <= 1650 and ink_and_paper(a)[0] < 0.2
