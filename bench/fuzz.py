"""Fuzzing the reading path with hostile image files: decode -> prepare -> predict.

    .venv/bin/python bench/fuzz.py [--count 100000] [--seed 0] [--workers 2]

Seeds are valid files of every accepted format (PNG grey/RGB/RGBA/palette/16-bit, JPEG
baseline/progressive/EXIF, GIF animated, TIFF raw/LZW, WebP lossy/lossless, BMP 24-bit and
palette), each holding a real digit. Mutations know the formats: PNG chunk fields (IHDR size,
bit depth, colour type; chunk lengths; PLTE and tRNS sizes; with and without a valid CRC),
JPEG segment fields (SOF size and components, segment lengths, scan truncation), GIF screen
and frame sizes and LZW code size, TIFF IFD entries (size, bits, compression, strip offsets
and counts), WebP RIFF and VP8/VP8L sizes, BMP header fields; plus generic byte flips,
insertions, truncation and splices. The only allowed outcomes are an answer or a clean
rejection (ImageRejected, BlankImage), within 1 s and without a memory blow-up; anything else
is a failure, printed with its input saved. Interesting inputs (failures, one per distinct
rejection reason, the slowest) go to tests/fuzz_corpus/ as regression cases.
Writes bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np
from common import write_result
from PIL import Image

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "tests" / "fuzz_corpus"
SLOW_SECONDS = 1.0
MEMORY_LIMIT_MB = 1500  # growth of the worker's resident memory over its start


# -- seeds --------------------------------------------------------------------------------------


def seeds() -> list[bytes]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from digits import on_paper
    im = on_paper([3], height=60)
    grey, out = im.convert("L"), []

    def save(image, fmt, **kw):
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out.append(buf.getvalue())

    save(grey, "PNG")
    save(im, "PNG")
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.eval(grey, lambda v: 255 - v))
    save(rgba, "PNG")
    save(grey.convert("P"), "PNG", transparency=0)
    save(Image.fromarray((np.asarray(grey, np.uint16) * 257).astype("<u2")), "PNG")
    save(im, "JPEG", quality=70)
    save(im, "JPEG", quality=50, progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(im, "JPEG", exif=exif.tobytes())
    save(grey, "GIF", save_all=True, append_images=[grey.rotate(10)])
    save(grey, "TIFF")
    save(im, "TIFF", compression="tiff_lzw")
    save(im, "WEBP", quality=60)
    save(im, "WEBP", lossless=True)
    save(im, "BMP")
    save(grey.convert("P"), "BMP")
    return out


# -- mutations ----------------------------------------------------------------------------------

EDGE = [0, 1, 2, 7, 8, 255, 256, 4096, 65535, 65536, 2**24, 2**31 - 1, 2**32 - 1]


def _value(r: random.Random) -> int:
    return r.choice(EDGE) if r.random() < 0.6 else r.randrange(0, 2**32)


def png_chunks(data: bytes):
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        chunks.append([kind, bytearray(body)])
        pos += 12 + length
    return chunks


def png_build(chunks, crc_ok: bool, r: random.Random) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        length = len(body) if crc_ok or r.random() < 0.8 else _value(r)
        crc = zlib.crc32(kind + bytes(body)) if crc_ok else r.randrange(2**32)
        out += struct.pack(">I", length & 0xFFFFFFFF) + kind + body + struct.pack(">I", crc)
    return bytes(out)


def mutate_png(data: bytes, r: random.Random) -> bytes:
    chunks = png_chunks(data)
    for _ in range(r.randint(1, 3)):
        kind, body = r.choice(chunks)
        choice = r.random()
        if kind == b"IHDR" and choice < 0.5:
            field = r.choice([(0, ">I"), (4, ">I"), (8, ">B"), (9, ">B"), (10, ">B"),
                              (12, ">B")])
            value = r.choice([1, 2, 3, 4, 5, 6, 8, 16, 32, _value(r)]) if field[1] == ">B" \
                else _value(r)
            struct.pack_into(field[1], body, field[0],
                             value & (0xFF if field[1] == ">B" else 0xFFFFFFFF))
        elif kind == b"IDAT" and choice < 0.6:
            if body:
                i = r.randrange(len(body))
                body[i] = r.randrange(256)
            if r.random() < 0.3:
                del body[r.randrange(len(body) + 1):]
        elif choice < 0.75:
            chunks.remove([kind, body]) if len(chunks) > 2 else None
        elif choice < 0.85:
            chunks.insert(r.randrange(1, len(chunks)),
                          [r.choice([b"PLTE", b"tRNS", b"zTXt", b"iCCP", b"IDAT", b"sBIT",
                                     b"acTL", b"fcTL"]), bytearray(r.randbytes(r.choice(
                                         [0, 1, 3, 255, 768, 4000])))])
        else:
            del body[r.randrange(len(body) + 1):]
    return png_build(chunks, r.random() < 0.85, r)


def jpeg_segments(data: bytes):
    """(offset, marker) of each marker segment up to the scan."""
    pos, out = 2, []
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        out.append((pos, marker))
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return out


def mutate_jpeg(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    segments = jpeg_segments(bytes(data))
    for _ in range(r.randint(1, 3)):
        pos, marker = r.choice(segments)
        choice = r.random()
        if marker in (0xC0, 0xC2) and choice < 0.6:
            field = r.choice([(5, ">H"), (7, ">H"), (9, ">B"), (11, ">B"), (4, ">B")])
            value = _value(r) & (0xFFFF if field[1] == ">H" else 0xFF)
            struct.pack_into(field[1], data, pos + field[0], value)
        elif choice < 0.75:
            struct.pack_into(">H", data, pos + 2, _value(r) & 0xFFFF)
        elif marker == 0xDA:
            cut = r.randrange(pos, len(data))
            del data[cut:]
        else:
            i = r.randrange(pos, min(len(data), pos + 64))
            data[i] = r.randrange(256)
    return bytes(data)


def mutate_gif(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    offsets = [(6, ">H"), (8, ">H"), (10, ">B")]
    descriptor = data.find(b"\x2c", 13)
    if descriptor > 0:
        offsets += [(descriptor + 5, "<H"), (descriptor + 7, "<H"), (descriptor + 9, ">B"),
                    (descriptor + 10, ">B")]
    for _ in range(r.randint(1, 3)):
        at, fmt = r.choice(offsets)
        if at + struct.calcsize(fmt) <= len(data):
            struct.pack_into(fmt, data, at, _value(r) & (0xFFFF if "H" in fmt else 0xFF))
    if r.random() < 0.3:
        del data[r.randrange(13, len(data)):]
    return bytes(data)


def mutate_tiff(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    little = data[:2] == b"II"
    e = "<" if little else ">"
    ifd = struct.unpack(e + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return bytes(data)
    count = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
    for _ in range(r.randint(1, 4)):
        entry = ifd + 2 + 12 * r.randrange(max(count, 1))
        if entry + 12 > len(data):
            break
        if r.random() < 0.7:  # the value (or offset) of a tag: size, bits, compression...
            struct.pack_into(e + "I", data, entry + 8, _value(r))
        else:  # its type or count
            struct.pack_into(e + "HI", data, entry + 2, r.randrange(20), _value(r))
    if r.random() < 0.1:
        struct.pack_into(e + "H", data, ifd, _value(r) & 0xFFFF)
    return bytes(data)


def mutate_webp(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(r.randint(1, 3)):
        choice = r.random()
        if choice < 0.25:
            struct.pack_into("<I", data, 4, _value(r))  # RIFF size
        elif choice < 0.5:
            struct.pack_into("<I", data, 16, _value(r))  # first chunk's size
        elif choice < 0.8 and len(data) > 30:  # VP8 frame size / VP8L packed size
            struct.pack_into("<I", data, 26, _value(r))
        else:
            i = r.randrange(12, len(data))
            data[i] = r.randrange(256)
    return bytes(data)


def mutate_bmp(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    fields = [(2, "<I"), (10, "<I"), (14, "<I"), (18, "<i"), (22, "<i"), (28, "<H"),
              (30, "<I"), (34, "<I"), (46, "<I")]
    for _ in range(r.randint(1, 3)):
        at, fmt = r.choice(fields)
        value = r.choice([-1, -30000, 0, 1, 4, 8, 16, 24, 32, 64, 2**20, 2**31 - 1]) \
            if fmt == "<i" else _value(r) & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
        struct.pack_into(fmt, data, at, value)
    return bytes(data)


def mutate_bytes(data: bytes, r: random.Random, other: bytes) -> bytes:
    data = bytearray(data)
    choice = r.random()
    if choice < 0.4:
        for _ in range(r.randint(1, 8)):
            data[r.randrange(len(data))] = r.randrange(256)
    elif choice < 0.6:
        at = r.randrange(len(data))
        data[at:at] = r.randbytes(r.choice([1, 4, 100, 5000]))
    elif choice < 0.8:
        del data[r.randrange(1, len(data)):]
    else:
        data = data[:r.randrange(len(data))] + bytearray(other[r.randrange(len(other)):])
    return bytes(data)


def mutate(data: bytes, r: random.Random, pool: list[bytes]) -> bytes:
    try:
        return _mutate(data, r, pool)
    except (struct.error, IndexError, ValueError):  # a field past the end of a cut file
        return mutate_bytes(data, r, r.choice(pool)) if data else r.choice(pool)


def _mutate(data: bytes, r: random.Random, pool: list[bytes]) -> bytes:
    if r.random() < 0.2 or len(data) < 16:
        return mutate_bytes(data, r, r.choice(pool))
    head = data[:12]
    if head.startswith(b"\x89PNG"):
        return mutate_png(data, r)
    if head.startswith(b"\xff\xd8"):
        return mutate_jpeg(data, r)
    if head.startswith(b"GIF8"):
        return mutate_gif(data, r)
    if head[:2] in (b"II", b"MM"):
        return mutate_tiff(data, r)
    if head[:4] == b"RIFF":
        return mutate_webp(data, r)
    if head[:2] == b"BM":
        return mutate_bmp(data, r)
    return mutate_bytes(data, r, r.choice(pool))


# -- the worker ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def work(args) -> dict:
    worker, count, seed = args
    import torch
    torch.set_num_threads(1)
    from digitlab.preprocess import prepare_digit, prepare_number
    from digitlab.recognize import Recognizer, Rejected, _as_array
    rec = Recognizer.load()
    r = random.Random(seed * 1000 + worker)
    pool = seeds()
    base = _rss_mb()
    stats = {"answered": 0, "rejected": 0, "failures": [], "reasons": {}, "slowest": [],
             "peak_growth_mb": 0.0}
    for i in range(count):
        data = r.choice(pool)
        for _ in range(r.choice([1, 1, 1, 2, 3])):  # stacked mutations go deeper
            data = mutate(data, r, pool)
        start = time.perf_counter()
        try:
            image, _ = _as_array(data, rec.limits)
            if r.random() < 0.2:
                parts = prepare_number(image, rec.config)
                images = [p.single.image for p in parts]
            else:
                images = [prepare_digit(image, rec.config).image]
            rec.probabilities(np.stack(images))
            stats["answered"] += 1
        except Rejected as exc:
            stats["rejected"] += 1
            # one case per kind of reason: "image is 7x90 pixels" and "8x2 pixels" are one
            reason = re.sub(r"\d+", "N", str(exc).split("(")[0].strip())[:60]
            if reason not in stats["reasons"]:
                stats["reasons"][reason] = data
        except BaseException as exc:  # a failure: anything else
            where = traceback.extract_tb(exc.__traceback__)[-1]
            stats["failures"].append({"error": f"{type(exc).__name__}: {str(exc)[:150]}",
                                      "where": f"{Path(where.filename).name}:{where.lineno}",
                                      "input": data})
        elapsed = time.perf_counter() - start
        if elapsed > SLOW_SECONDS:
            stats["failures"].append({"error": f"slow: {elapsed:.2f} s", "where": "",
                                      "input": data})
        stats["slowest"] = sorted(stats["slowest"] + [(elapsed, data)], key=lambda t: -t[0])[:3]
        if i % 500 == 0:
            growth = _rss_mb() - base
            stats["peak_growth_mb"] = max(stats["peak_growth_mb"], growth)
            if growth > MEMORY_LIMIT_MB:
                stats["failures"].append({"error": f"memory grew by {growth:.0f} MB",
                                          "where": "", "input": data})
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="mutated inputs to try")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json",
                        help="where the JSON goes")
    args = parser.parse_args()
    share = -(-args.count // args.workers)
    started = time.time()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(work, [(w, share, args.seed) for w in range(args.workers)])
    seconds = time.time() - started
    answered = sum(s["answered"] for s in results)
    rejected = sum(s["rejected"] for s in results)
    failures = [f for s in results for f in s["failures"]]
    reasons: dict[str, bytes] = {}
    for s in results:
        for k, v in s["reasons"].items():
            reasons.setdefault(k, v)
    distinct = {}
    for f in failures:
        distinct.setdefault((f["error"].split(":")[0], f["where"]), f)
    CORPUS.mkdir(parents=True, exist_ok=True)
    keep = [f["input"] for f in distinct.values()] + list(reasons.values()) + [
        d for s in results for _, d in s["slowest"]]
    for data in keep:
        if len(data) <= 200_000:
            name = hashlib.sha256(data).hexdigest()[:16] + ".bin"
            (CORPUS / name).write_bytes(data)
    summary = {"inputs": answered + rejected, "answered": answered, "rejected": rejected,
               "failures": len(failures), "seconds": seconds,
               "distinct_failures": [{"error": f["error"], "where": f["where"]}
                                     for f in distinct.values()],
               "rejection_reasons": sorted(reasons),
               "peak_memory_growth_mb": max(s["peak_growth_mb"] for s in results),
               "slowest_input_seconds": max(t for s in results for t, _ in s["slowest"]),
               "corpus_files": len(list(CORPUS.glob("*.bin")))}
    print(json.dumps(summary, indent=2))
    write_result(summary, args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
