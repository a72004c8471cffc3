"""Beyond one machine, on Ray (extra ``[scale]``, imported only here).

* :func:`run_ray`: batch recognition with Ray Data. Files are read as bytes by Ray, decoded,
  prepared and predicted by digitlab's one reading path inside ``map_batches``, with the model
  loaded once per worker (an actor class); Ray writes the results (a Parquet dataset folder,
  or CSV / JSON Lines files, at ``--out``).
* :func:`train_ensemble_ray`: the members of an ensemble trained as parallel Ray tasks, each
  with its own seed, gathered and evaluated together.

The rows are the local engine's (:mod:`digitlab.batch`): same columns, same answers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .batch import _schema, answer_row, make_recognizer, output_kind
from .images import folder_reason

__all__ = ["FolderOutput", "run_ray", "train_ensemble_ray"]


def _init(address: str | None) -> None:
    import ray
    if not ray.is_initialized():
        # a local Ray sized to this machine, or a running cluster; quiet either way
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # Ray's classes for this vary (ConnectionError, auth, ...)
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else \
                type(exc).__name__
            hint = (" (a cluster started with `ray start` uses token authentication: set "
                    "RAY_AUTH_MODE=token)") if "auth" in str(exc).lower() else ""
            raise ConnectionError(f"cannot start or join Ray at {address or 'this machine'}: "
                                  f"{reason}{hint}") from None


class _Reader:
    """A Ray Data actor: the model is loaded once, then reads batch after batch."""

    def __init__(self, settings: tuple):
        # Ray starts its workers with OMP_NUM_THREADS set to their CPUs (one here), which
        # OpenBLAS and PyTorch read as they load: one math thread per actor, one per CPU
        self.recognizer = make_recognizer(*settings)

    def __call__(self, batch: dict):
        import pyarrow as pa

        from .recognize import Rejected
        rows = []
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            try:
                rows.append(answer_row(str(path), self.recognizer.predict(bytes(data))))
            except Rejected as exc:
                rows.append(answer_row(str(path), error=str(exc)))
        # one schema for every batch, also one where every file was rejected (all-null
        # digits would otherwise be typed null, and the parts would not read as one table)
        return pa.Table.from_pylist(rows, schema=_schema())


def _unreadable(files: list[str]) -> tuple[list[str], list[dict]]:
    """Files Ray can read, and error rows for those it cannot (a missing or locked file
    would otherwise fail the whole job)."""
    readable, rows = [], []
    for f in files:
        path = Path(f)
        if not path.is_file():
            rows.append(answer_row(f, error="no such file" if not path.exists()
                                   else folder_reason(path) if path.is_dir()
                                   else "not a regular file"))
        elif not os.access(path, os.R_OK):
            rows.append(answer_row(f, error="permission denied"))
        else:
            readable.append(f)
    return readable, rows


class FolderOutput:
    """Where Ray writes: a folder named like the output file (``results.parquet/``, ...),
    holding Ray's part files; ``done`` are the files answered by earlier runs there."""

    def __init__(self, path: str | Path, resume: bool = False):
        self.path = Path(path)
        self.kind = output_kind(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path} is a file; Ray writes a folder of parts there")
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            raise FileExistsError(f"{self.path} exists; pass --resume to continue it, or "
                                  "choose another --out")
        self.done: set[str] = set()
        if resume and self.path.is_dir() and any(self.path.iterdir()):
            import ray
            read = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv,
                    "jsonl": ray.data.read_json}[self.kind]
            self.done = set(read(str(self.path)).to_pandas()["file"])

    def close(self) -> None:
        pass


def run_ray(files: list[str], settings: tuple, output: FolderOutput,
            address: str | None = None, workers: int | None = None, progress=None) -> dict:
    """Read ``files`` on Ray and have Ray write the rows to ``output.path`` (a folder of
    .parquet, .csv or .json parts). Files already in the output are skipped. Returns counts
    of answered and rejected files."""
    import ray
    _init(address)
    todo = [f for f in files if f not in output.done]
    readable, failed = _unreadable(todo)
    counts = {"answered": 0, "rejected": len(failed), "skipped": len(files) - len(todo),
              "spread": None}
    datasets = []
    if readable:
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        data = ray.data.read_binary_files(readable, include_paths=True)
        datasets.append(data.map_batches(
            _Reader, fn_constructor_args=(settings,), batch_size=64, batch_format="numpy",
            concurrency=(1, size)))
    if failed:
        import pyarrow as pa
        datasets.append(ray.data.from_arrow(pa.Table.from_pylist(failed, schema=_schema())))
    if not datasets:
        return counts
    result = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    result = result.materialize()
    counts["spread"] = _spread(result.stats())
    # counted from the blocks already made: another Ray Data pass would cost seconds
    blocks = ray.get(result.to_arrow_refs())
    rows = sum(block.num_rows for block in blocks)
    counts["answered"] = sum(block.column("error").null_count for block in blocks)
    counts["rejected"] = rows - counts["answered"]
    write = {"parquet": result.write_parquet, "csv": result.write_csv,
             "jsonl": result.write_json}[output.kind]
    write(str(output.path))
    if progress:
        progress(len(todo))
    return counts


def _spread(stats: str) -> str | None:
    """Ray Data's own count of the reading tasks per node, from its execution summary:
    "Tasks per node: 40 min, 41 max, 40 mean; 2 nodes used"."""
    reader = False
    for line in stats.splitlines():
        if line.startswith("Operator"):
            reader = "_Reader" in line
        elif reader and "Tasks per node" in line:
            return line.strip().lstrip("* ")
    return None


def train_ensemble_ray(config, data, run_dir: Path, members: int, address: str | None = None):
    """Train ``members`` copies of ``config`` with seeds seed, seed+1, ... as parallel Ray
    tasks, each writing its own run directory ``run_dir/member-<i>``; returns their results
    in seed order."""
    import ray

    from .runs import train_and_evaluate
    _init(address)
    shared = ray.put(data)  # the dataset once in the object store, not once per task

    @ray.remote(num_cpus=1)
    def member(i: int, dataset):
        from dataclasses import replace

        import torch
        torch.set_num_threads(1)
        result = train_and_evaluate(replace(config, seed=config.seed + i, threads=1), dataset,
                                    run_dir / f"member-{i}")
        return {"member": i, "seed": config.seed + i, "run": str(result.run_dir),
                "test_accuracy": result.metrics.accuracy if result.metrics else None,
                "train_seconds": result.train_seconds,
                "proba": result.test_proba.astype(np.float32)}

    return ray.get([member.remote(i, shared) for i in range(members)])
