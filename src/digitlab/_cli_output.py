"""What the CLI shows: progress bars and text tables. Nothing here computes a figure."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

_LOSS_EVERY = 50  # steps between refreshes of the running loss shown in the bar


class EpochBar:
    """A training observer: one bar over all steps with the ETA of the whole run, and one
    Keras-style line per finished epoch. The bar shows only on a terminal; lines always."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar: tqdm | None = None

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.epochs * steps, unit="step", dynamic_ncols=True,
                            disable=None, leave=False, file=sys.stderr)
        self.bar.set_description(f"epoch {epoch}/{self.epochs}")

    def on_step(self, step: int, running_loss) -> None:
        self.bar.update()
        if step % _LOSS_EVERY == 0 and not self.bar.disable:
            self.bar.set_postfix(loss=f"{running_loss():.4f}", refresh=False)

    def on_epoch_end(self, stats) -> None:
        line = (f"epoch {stats.epoch:>3}/{self.epochs}  {stats.seconds:5.1f}s  "
                f"loss {stats.loss:.4f}  accuracy {stats.accuracy:.4f}")
        if stats.val_loss is not None:
            line += f"  val_loss {stats.val_loss:.4f}  val_accuracy {stats.val_accuracy:.4f}"
        tqdm.write(line, file=sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class DownloadBar:
    """A fetch progress callback: a byte-count bar per downloaded file."""

    def __init__(self):
        self.bar: tqdm | None = None
        self.name = ""

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if name != self.name:
            if self.bar is not None:
                self.bar.close()
            self.name = name
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None,
                            leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.bar.close()


def format_dataset_list(infos) -> str:
    rows = [("name", "images", "train", "test", "where")]
    for i in infos:
        where = i.location or "not cached (digitlab data fetch mnist)"
        rows.append((i.name, "x".join(map(str, i.image_shape)), str(i.train_size),
                     str(i.test_size), where))
        rows += [("", "", "", "", f"also found: {other}") for other in i.also_found]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4]
                     for r in rows)


def format_metrics(m, what: str) -> str:
    lines = [f"test accuracy {m.accuracy:.2%} on {m.n} digits of the {what}"
             + (f"  (loss {m.loss:.4f})" if m.loss is not None else ""), "",
             "class  precision  recall      f1  support"]
    for c in range(len(m.support)):
        lines.append(f"{c:>5}  {m.precision[c]:9.4f}  {m.recall[c]:6.4f}  {m.f1[c]:6.4f}  "
                     f"{m.support[c]:7d}")
    lines += ["", "confusion matrix (rows: true digit, columns: predicted digit)",
              "     " + "".join(f"{c:>6}" for c in range(len(m.confusion)))]
    lines += [f"{t:>5}" + "".join(f"{v:>6}" for v in row) for t, row in enumerate(m.confusion)]
    return "\n".join(lines)


def format_prediction(answer: dict, top: int) -> str:
    probs = answer["probabilities"]
    flag = "  (low confidence)" if answer["low_confidence"] else ""
    lines = [f"{answer['file']}: predicted {answer['digit']} with confidence "
             f"{answer['confidence']:.4f}{flag}"]
    if "label" in answer:
        lines[0] += f"; true label {answer['label']}"
    best = sorted(range(len(probs)), key=lambda d: -probs[d])[:top]
    lines.append("most likely: " + ", ".join(f"{d} ({probs[d]:.4f})" for d in best))
    lines.append("softmax probabilities:")
    lines += [f"  {d}: {p:.6f}  {'#' * round(p * 40)}" for d, p in enumerate(probs)]
    return "\n".join(lines)


def format_runs(rows, root: Path) -> str:
    if not rows:
        return "no runs found"
    table = [("run", "preset", "dataset", "epochs", "train s", "test acc", "started")]
    for r in rows:
        table.append((Path(r.path).relative_to(root).as_posix(), r.preset, r.dataset,
                      f"{r.epochs}{' (stopped)' if r.interrupted else ''}",
                      "-" if r.train_seconds is None else f"{r.train_seconds:.1f}",
                      "-" if r.test_accuracy is None else f"{r.test_accuracy:.2%}",
                      r.started.replace("T", " ")[:16]))
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    right = {3, 4, 5}
    return "\n".join("  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                               for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip() for row in table)


def batch_bar(total: int):
    """A files bar for batch predict, shown on a terminal."""
    return tqdm(total=total, unit="file", dynamic_ncols=True, disable=None, file=sys.stderr)
