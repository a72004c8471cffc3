"""Reading many files: the one reading path run over folders, globs and lists of images, with
the answers streamed to CSV, JSON Lines or Parquet as they come.

Engines: :func:`run_local` uses every core of this machine (one process per core, each with
its own copy of the model); :mod:`digitlab.scale` runs the same rows on a Ray cluster. Output
is resumable: rows already written name their files, and a resumed run skips those. A crash
or Ctrl-C loses nothing already written: CSV and JSON Lines are flushed after every chunk of
files, and Parquet output is a folder of part files, each written whole by atomic rename.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ._io import write_atomic
from ._threads import one_thread_children

__all__ = ["FIELDS", "Output", "answer_row", "make_recognizer", "output_kind", "read_chunk",
           "run_local"]

FIELDS = ["file", "digit", "confidence", "low_confidence", "error"] + [f"p{d}"
                                                                       for d in range(10)]


def answer_row(file: str, answer=None, error: str | None = None) -> dict:
    """One output row: the answer's digit, confidence and 10 probabilities, or the reason the
    file was rejected."""
    row = dict.fromkeys(FIELDS)
    row["file"] = file
    if answer is None:
        row["error"] = error
        return row
    row.update(digit=answer.digit, confidence=answer.confidence,
               low_confidence=answer.low_confidence)
    row.update({f"p{d}": p for d, p in enumerate(answer.probabilities)})
    return row


def output_kind(path: Path) -> str:
    """csv, jsonl or parquet, from the output's name."""
    kind = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
            ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"--out must end in .csv, .jsonl or .parquet, not {path.name}")
    return kind


class Output:
    """Rows appended to ``path``: ``.csv``, ``.jsonl`` or ``.parquet`` (a folder of parts)."""

    def __init__(self, path: str | Path, resume: bool = False):
        self.path = Path(path)
        self.kind = output_kind(self.path)
        exists = self.path.exists()
        if exists and not resume:
            raise FileExistsError(f"{self.path} exists; pass --resume to continue it, or "
                                  "choose another --out")
        self.done = self._files_done() if exists else set()
        self._parts = len(list(self.path.glob("part-*.parquet"))) if (
            self.kind == "parquet" and exists) else 0
        if self.kind == "parquet":
            self.path.mkdir(parents=True, exist_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8", newline="")
        if self.kind == "csv":
            self._csv = csv.DictWriter(self._file, FIELDS)
            if not exists or self.path.stat().st_size == 0:
                self._csv.writeheader()

    def _files_done(self) -> set[str]:
        if self.kind == "parquet":
            import pyarrow.parquet as pq
            return {f for part in sorted(self.path.glob("part-*.parquet"))
                    for f in pq.read_table(part, columns=["file"]).column("file").to_pylist()}
        return self._text_files_done()

    def _text_files_done(self) -> set[str]:
        """The files a CSV or JSON Lines output already answers, after checking that every
        complete line is digitlab's. A last line without its newline was cut short by a
        crash: it is cut off (its file is read again), so the next row starts a line."""
        foreign = ValueError(f"{self.path} is not an output of digitlab predict; "
                             "choose another --out")
        data = self.path.read_bytes()
        complete, _, partial = data.rpartition(b"\n")
        try:
            text = complete.decode("utf-8")
            if self.kind == "csv":
                rows = csv.reader(io.StringIO(text, newline=""))
                if next(rows, FIELDS) != FIELDS or partial and not text:
                    raise foreign
                done = {row[0] for row in rows if row and row[0]}
            else:
                done = set()
                for line in text.splitlines():
                    row = json.loads(line)
                    if not isinstance(row, dict) or list(row) != FIELDS:
                        raise foreign
                    done.add(row["file"])
                if partial and not text and not partial.startswith(b'{"file": '):
                    raise foreign
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error):
            raise foreign from None
        if partial:
            with self.path.open("r+b") as f:
                f.truncate(len(complete) + 1 if text else 0)
        return done

    def write(self, rows: list[dict]) -> None:
        """Append rows, durably: after this returns they survive a crash."""
        if not rows:
            return
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), buffer)
            write_atomic(self.path / f"part-{self._parts:05d}.parquet", buffer.getvalue())
            self._parts += 1
            return
        if self.kind == "csv":
            self._csv.writerows(rows)
        else:
            self._file.writelines(json.dumps(row) + "\n" for row in rows)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self.kind != "parquet":
            self._file.close()


def _schema():
    import pyarrow as pa
    return pa.schema([("file", pa.string()), ("digit", pa.int64()), ("confidence", pa.float64()),
                      ("low_confidence", pa.bool_()), ("error", pa.string())]
                     + [(f"p{d}", pa.float64()) for d in range(10)])


# -- the local engine -------------------------------------------------------------------------

_worker_recognizer = None


def make_recognizer(model: str | None, engine: str, min_confidence: float):
    """A recognizer for a worker: the model file or run (or the bundled model, None)."""
    from .recognize import Recognizer
    return Recognizer.load(model, engine=engine, min_confidence=min_confidence)


def _start_worker(settings: tuple) -> None:
    global _worker_recognizer
    _worker_recognizer = make_recognizer(*settings)


def read_chunk(recognizer, files: list[str]) -> list[dict]:
    """Rows for ``files``: an answer each, or the reason it was rejected."""
    from .recognize import Rejected
    rows = []
    for file in files:
        try:
            rows.append(answer_row(file, recognizer.predict(file)))
        except Rejected as exc:
            rows.append(answer_row(file, error=str(exc)))
    return rows


def _work(files: list[str]) -> list[dict]:
    return read_chunk(_worker_recognizer, files)


def _chunks(files: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for f in files:
        chunk.append(f)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_local(files: list[str], settings: tuple, output: Output, workers: int | None = None,
              chunk: int = 32, progress: Callable[[int], None] | None = None) -> dict:
    """Read ``files`` on this machine with ``workers`` processes (default: one per core),
    each loading its model once (``settings``: the arguments of :func:`make_recognizer`);
    rows go to ``output`` as chunks finish. Returns counts of answered and rejected files."""
    todo = [f for f in files if f not in output.done]
    counts = {"answered": 0, "rejected": 0, "skipped": len(files) - len(todo)}
    workers = workers or os.cpu_count() or 1
    context = mp.get_context("spawn")  # a clean interpreter: no inherited threads or locks
    with one_thread_children():  # one process per core already: one thread in each
        pool = context.Pool(workers, initializer=_start_worker, initargs=(settings,))
    with pool:
        for rows in pool.imap_unordered(_work, _chunks(todo, chunk)):
            output.write(rows)
            for row in rows:
                counts["rejected" if row["error"] else "answered"] += 1
            if progress:
                progress(len(rows))
    return counts
