"""How well digitlab reads people's own images: the user-style set (bench/userstyle.py) through
digitlab's reading path against what most apps do, plus numbers, non-digits and timing.

    .venv/bin/python bench/reading.py [--model RUN] [--digits 1300] [--numbers 300]
                                      [--joined 150] [--lined 100] [--slanted 100]
                                      [--turned 100]
                                      [--photos 60] [--shadowed 60]

Prints a table per distortion kind and writes bench/results/reading.json. Pipelines compared
on the same files and the same model:
    digitlab       decode -> digitlab.preprocess (the one reading path) -> model
    resize-only    decode -> grey -> resize the whole image to 28x28 -> model
    resize+invert  the same, inverted when the paper is light
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import cache_dir, write_result
from PIL import Image

HERE = Path(__file__).resolve().parent
SLANTED, TURNED = (1.5, 3.0), (4.0, 15.0)  # degrees a ruled page is turned, either way
sys.path.insert(0, str(HERE))

import userstyle  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.images import decode_image  # noqa: E402
from digitlab.recognize import Recognizer, Rejected  # noqa: E402


def naive(data: bytes, invert: bool) -> np.ndarray:
    """What most apps do: grey, squash the whole image to 28x28 (optionally invert)."""
    im = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    x = np.asarray(im, np.float32) / 255
    return 1 - x if invert and np.median(x) > 0.5 else x


def digits_table(rec: Recognizer, samples) -> tuple[dict, list[float]]:
    """The accuracy table, and each digit's confidence (0 where it was refused)."""
    rows: dict[str, dict] = {}
    ours, resize, invert, flagged, confidences = [], [], [], [], []
    for s in samples:
        try:
            answer = rec.predict(s.data)
            ours.append(str(answer.digit) == s.label)
            flagged.append(answer.low_confidence)
            confidences.append(answer.confidence)
        except Rejected:
            ours.append(False)
            flagged.append(True)
            confidences.append(0.0)
        base = rec.probabilities(np.stack([naive(s.data, False), naive(s.data, True)]))
        resize.append(str(base[0].argmax()) == s.label)
        invert.append(str(base[1].argmax()) == s.label)
    for kind in userstyle.KINDS:
        idx = [i for i, s in enumerate(samples) if kind in s.kinds]
        rows[kind] = {"n": len(idx), "digitlab": float(np.mean([ours[i] for i in idx])),
                      "resize_only": float(np.mean([resize[i] for i in idx])),
                      "resize_invert": float(np.mean([invert[i] for i in idx]))}
    clean = [i for i, s in enumerate(samples) if s.kinds == ("clean",)]
    return {
        "n": len(samples), "accuracy": float(np.mean(ours)),
        "clean_accuracy": float(np.mean([ours[i] for i in clean])), "clean_n": len(clean),
        "resize_only": float(np.mean(resize)), "resize_invert": float(np.mean(invert)),
        "flagged_share": float(np.mean(flagged)),
        "wrong_and_unflagged": float(np.mean([not o and not f for o, f in zip(ours, flagged,
                                                                                strict=True)])),
        "kinds": rows,
    }, confidences


def read_right(rec: Recognizer, samples) -> list[bool]:
    """For each number, whether ``read`` gets every digit right (a refusal is wrong)."""
    right = []
    for s in samples:
        try:
            right.append(rec.read(s.data).number == s.label)
        except Rejected:
            right.append(False)
    return right


def numbers_table(rec: Recognizer, samples) -> dict:
    right = read_right(rec, samples)
    out = {"n": len(samples), "exact": float(np.mean(right))}
    for kind in ("touching", "broken"):
        idx = [i for i, s in enumerate(samples) if kind in s.kinds]
        out[kind] = {"n": len(idx), "exact": float(np.mean([right[i] for i in idx]))}
    plain = [i for i, s in enumerate(samples) if not {"touching", "broken"} & set(s.kinds)]
    out["separate"] = {"n": len(plain), "exact": float(np.mean([right[i] for i in plain]))}
    return out


def photos_table(rec: Recognizer, samples) -> dict:
    """Phone photos of small writing: single digits through ``predict``, numbers through
    ``read``; right, refused, and seconds per photo (decode included)."""
    out = {}
    for kind in ("digit", "number"):
        right = refused = 0
        seconds = []
        chosen = [s for s in samples if kind in s.kinds]
        for s in chosen:
            t = time.perf_counter()
            try:
                got = rec.predict(s.data).digit if kind == "digit" else rec.read(s.data).number
                right += str(got) == s.label
            except Rejected:
                refused += 1
            seconds.append(time.perf_counter() - t)
        out[kind] = {"n": len(chosen), "exact": right / max(1, len(chosen)),
                     "refused": refused / max(1, len(chosen)),
                     "median_seconds": statistics.median(seconds) if seconds else None}
    return out


def non_digits_table(rec: Recognizer, samples, digit_confidences) -> dict:
    confidences = []
    for s in samples:
        try:
            confidences.append(rec.predict(s.data).confidence)
        except Rejected:
            confidences.append(0.0)
    confidences = np.array(confidences)
    sweep = {}
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        sweep[str(t)] = {"non_digits_flagged": float(np.mean(confidences < t)),
                         "digits_flagged": float(np.mean(np.array(digit_confidences) < t))}
    return {"n": len(samples), "flagged": float(np.mean(confidences < rec.min_confidence)),
            "threshold": rec.min_confidence, "sweep": sweep}


def timing(rec: Recognizer, images, labels, n: int = 200) -> dict:
    """Median ms for decode + preprocess + predict of typical 200x200 PNG files."""
    rng = np.random.default_rng(7)
    files = []
    for i in rng.choice(len(images), n, replace=False):
        ink = userstyle.ink_layer(images[i], 140, rng)
        cover = userstyle._place(ink, 200, 200, rng, centred=True)
        files.append(userstyle.render(cover, ("clean",), rng)[0])
    rec.predict(files[0])  # warm up
    stages = {"decode": [], "prepare": [], "predict": [], "total": []}
    from digitlab.preprocess import prepare_digit
    for data in files:
        t0 = time.perf_counter()
        array = decode_image(data)
        t1 = time.perf_counter()
        prepared = prepare_digit(array, rec.config)
        t2 = time.perf_counter()
        rec.probabilities(prepared.image[None])
        t3 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            stages[k].append(v * 1000)
    return {k: statistics.median(v) for k, v in stages.items()}


def lined_table(rec, samples) -> dict:
    """Share of numbers read exactly, on ruled paper and underlined."""
    return {kind: float(np.mean(read_right(rec, [s for s in samples if kind in s.kinds])))
            for kind in ("ruled", "underlined")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file or run directory (default: bundled)")
    parser.add_argument("--digits", type=int, default=1300, help="user-style single digits")
    parser.add_argument("--numbers", type=int, default=300, help="numbers of 3-6 digits")
    parser.add_argument("--non-digits", type=int, default=100,
                        help="letters, symbols and scribbles")
    parser.add_argument("--joined", type=int, default=150,
                        help="numbers whose neighbouring digits' ink joins")
    parser.add_argument("--lined", type=int, default=100,
                        help="numbers on ruled paper or underlined")
    parser.add_argument("--slanted", type=int, default=100,
                        help="such numbers on a page turned 1.5-3 degrees")
    parser.add_argument("--turned", type=int, default=100,
                        help="such numbers on a page turned 4-15 degrees")
    parser.add_argument("--photos", type=int, default=60,
                        help="12-megapixel phone photos of small digits and numbers")
    parser.add_argument("--shadowed", type=int, default=60,
                        help="such photos with a shadow cast across the page near the writing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated set")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reading.json",
                        help="where the JSON goes")
    args = parser.parse_args()
    cache = cache_dir()
    mnist, _ = load_mnist(cache)
    images = np.rint(mnist.x_test * 255).astype(np.uint8)
    # the engine `digitlab predict` and `read` use: NumPy for the bundled model
    rec = Recognizer.load(args.model, engine="torch" if args.model else "numpy")
    load_before = os.getloadavg()[0]
    timing_ms = timing(rec, images, mnist.y_test)  # first, while nothing else runs
    t = time.time()
    digits = userstyle.digit_set(images, mnist.y_test, args.digits, seed=args.seed)
    numbers = userstyle.number_set(images, mnist.y_test, args.numbers, seed=args.seed + 1)
    others = userstyle.non_digit_set(args.non_digits, seed=args.seed + 2)
    joined = userstyle.joined_set(images, mnist.y_test, args.joined, seed=args.seed + 4)
    lined = userstyle.lined_set(images, mnist.y_test, args.lined, seed=args.seed + 5)
    slanted = userstyle.lined_set(images, mnist.y_test, args.slanted, seed=args.seed + 7,
                                  turn=SLANTED)
    turned = userstyle.lined_set(images, mnist.y_test, args.turned, seed=args.seed + 8,
                                 turn=TURNED)
    photos = userstyle.photo_set(images, mnist.y_test, args.photos, seed=args.seed + 3)
    shadowed = userstyle.photo_set(images, mnist.y_test, args.shadowed, seed=args.seed + 6,
                                   shadow=True)
    n_numbers = len(numbers) + len(joined) + len(lined) + len(slanted) + len(turned)
    print(f"generated {len(digits)} digits, {n_numbers} numbers, "
          f"{len(others)} non-digits, {len(photos) + len(shadowed)} photos in "
          f"{time.time() - t:.0f} s", flush=True)
    d, confidences = digits_table(rec, digits)
    result = {"model": str(rec.loaded.path), "digits": d, "numbers": numbers_table(rec, numbers),
              "non_digits": non_digits_table(rec, others, confidences),
              "joined": float(np.mean(read_right(rec, joined))),
              "lined": lined_table(rec, lined), "slanted": lined_table(rec, slanted),
              "turned": lined_table(rec, turned),
              "photos": photos_table(rec, photos), "shadowed": photos_table(rec, shadowed),
              "timing_ms": timing_ms, "loadavg_at_timing": load_before}

    print(f"\n{'kind':10} {'n':>5} {'digitlab':>9} {'resize':>8} {'+invert':>8}")
    for kind, row in d["kinds"].items():
        print(f"{kind:10} {row['n']:>5} {row['digitlab']:>9.1%} {row['resize_only']:>8.1%} "
              f"{row['resize_invert']:>8.1%}")
    print(f"{'all':10} {d['n']:>5} {d['accuracy']:>9.1%} {d['resize_only']:>8.1%} "
          f"{d['resize_invert']:>8.1%}")
    print(f"clean subset: {d['clean_accuracy']:.1%} of {d['clean_n']}; flagged low-confidence: "
          f"{d['flagged_share']:.1%}; wrong and not flagged: {d['wrong_and_unflagged']:.1%}")
    nums = result["numbers"]
    print(f"numbers read exactly: {nums['exact']:.1%} of {nums['n']} (separate "
          f"{nums['separate']['exact']:.1%}, touching {nums['touching']['exact']:.1%}, broken "
          f"{nums['broken']['exact']:.1%})")
    print(f"numbers with joined digits read exactly: {result['joined']:.1%} of {len(joined)}")
    print(f"numbers on ruled paper read exactly: {result['lined']['ruled']:.1%}, underlined: "
          f"{result['lined']['underlined']:.1%} ({len(lined) // 2} each); on a page turned "
          f"1.5-3 degrees: {result['slanted']['ruled']:.1%} and "
          f"{result['slanted']['underlined']:.1%} ({len(slanted) // 2} each); turned 4-15 "
          f"degrees: {result['turned']['ruled']:.1%} and {result['turned']['underlined']:.1%} "
          f"({len(turned) // 2} each)")
    for table, shade in (("photos", ""), ("shadowed", ", a shadow across the page")):
        for kind, row in result[table].items():
            if row["n"]:
                print(f"12-megapixel photos{shade}, small {kind}s: {row['exact']:.1%} of "
                      f"{row['n']} read right, {row['refused']:.1%} refused as blank, median "
                      f"{row['median_seconds']:.2f} s each")
    nd = result["non_digits"]
    print(f"non-digits flagged at {nd['threshold']}: {nd['flagged']:.1%} of {nd['n']}")
    for t, row in nd["sweep"].items():
        print(f"  threshold {t}: non-digits flagged {row['non_digits_flagged']:.0%}, "
              f"real digits flagged {row['digits_flagged']:.1%}")
    tm = result["timing_ms"]
    print(f"median ms per 200x200 PNG: decode {tm['decode']:.2f}, prepare {tm['prepare']:.2f}, "
          f"predict {tm['predict']:.2f}, total {tm['total']:.2f} (load average {load_before:.2f})")
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
