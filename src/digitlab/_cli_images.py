"""``digitlab predict IMAGE ...`` and ``digitlab read IMAGE ...``: people's own files.

Every input gets an answer or a one-line reason; one bad file never stops the others. Exit
status 1 when any input was rejected.
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

_GLOB_CHARS = set("*?[")


def expand_sources(items: list[str]) -> list[str]:
    """Files named, the files in folders (:func:`digitlab.images.files_under`) and glob
    matches, in a stable order.
    A name that matches nothing is kept, to be answered "no such file", and so is a folder
    with nothing in it."""
    from .images import files_under
    out: list[str] = []
    for item in items:
        if item.startswith("@") and Path(item[1:]).is_file():  # a list file
            lines = Path(item[1:]).read_text(encoding="utf-8").splitlines()
            out += expand_sources([line.strip() for line in lines
                                   if line.strip() and not line.lstrip().startswith("#")])
            continue
        path = Path(item)
        if path.is_dir():
            out += files_under(path) or [item]  # an empty folder is kept, to be answered
        elif not path.exists() and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            out += [m for m in matches if Path(m).is_file()] or [item]
        else:
            out.append(item)
    return out


def _unique(folder: Path, stem: str, suffix: str, taken: set[str]) -> Path:
    name, n = f"{stem}{suffix}", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    taken.add(name)
    return folder / name


def _save_input(image: np.ndarray, path: Path) -> None:
    from .images import encode_png
    path.write_bytes(encode_png(image))


def _progress(n: int):
    from tqdm import tqdm
    return tqdm(total=n, unit="file", disable=None if n > 50 else True, leave=False,
                file=sys.stderr)


def _format_answer(name: str, a: dict, top: int) -> str:
    flag = "  (low confidence)" if a["low_confidence"] else ""
    p = a["probabilities"]
    best = sorted(range(10), key=lambda d: -p[d])[:top]
    lines = [f"{name}: {a['digit']} (confidence {a['confidence']:.3f}){flag}"]
    if top > 1:
        lines[0] += "  top: " + ", ".join(f"{d} {p[d]:.3f}" for d in best)
    lines.append("  probabilities " + " ".join(f"{d}:{v:.3f}" for d, v in enumerate(p)))
    return "\n".join(lines)


def predict_files(recognizer, sources: list[str], *, as_json: bool, top: int,
                  save_input: str | None, plot: str | None) -> int:
    from .recognize import Rejected
    results, rejected = [], 0
    folder, taken = (Path(save_input), set()) if save_input else (None, set())
    plotted: set[str] = set()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    bar = _progress(len(sources))
    for source in sources:
        entry = {"file": source, "digit": None, "confidence": None, "probabilities": None,
                 "low_confidence": None, "error": None}
        try:
            answer = recognizer.predict(source)
        except Rejected as exc:
            entry["error"] = str(exc)
            rejected += 1
            bar.write(f"digitlab: {source}: rejected: {exc}", file=sys.stderr)
        else:
            entry.update({k: v for k, v in answer.to_dict().items() if k != "box"})
            if folder:
                _save_input(answer.image, _unique(folder, Path(source).stem, ".png", taken))
            if plot:
                out = Path(plot)
                if len(sources) > 1:  # one plot per image, named after it
                    out = _unique(out.parent, f"{out.stem}-{Path(source).stem}",
                                  out.suffix or ".png", plotted)
                _plot(source, answer, out)
            if not as_json:
                bar.write(_format_answer(source, entry, top))
                if answer.low_confidence and answer.several:
                    bar.write("  this looks like several digits: `digitlab read` reads numbers")
        results.append(entry)
        bar.update()
    bar.close()
    if as_json:
        print(json.dumps(results, indent=2))
    return 1 if rejected else 0


def _plot(source: str, answer, out: Path) -> None:
    from .images import decode_image
    from .plots import plot_prediction
    image = decode_image(Path(source).read_bytes())
    plot_prediction(image, answer.image, answer.probabilities, title=source).savefig(out)


def read_files(recognizer, sources: list[str], *, as_json: bool) -> int:
    from .recognize import Rejected
    results, rejected = [], 0
    for source in sources:
        entry = {"file": source, "number": None, "digits": [], "low_confidence": None,
                 "error": None}
        try:
            reading = recognizer.read(source)
        except Rejected as exc:
            entry["error"] = str(exc)
            rejected += 1
            print(f"digitlab: {source}: rejected: {exc}", file=sys.stderr)
        else:
            entry.update(number=reading.number, low_confidence=reading.low_confidence,
                         digits=[{**d.to_dict(), "touching": d.touching}
                                 for d in reading.digits])
            if not as_json:
                flag = "  (low confidence)" if reading.low_confidence else ""
                parts = ", ".join(f"{d.digit} {d.confidence:.2f}" for d in reading.digits)
                print(f"{source}: {reading.number}{flag}  (digits: {parts})")
        results.append(entry)
    if as_json:
        print(json.dumps(results, indent=2))
    return 1 if rejected else 0
