"""Run directories: one training run and everything needed to rebuild, judge and compare it.

    <run>/config.json   resolved settings, seed, data source, library versions
    <run>/history.csv   per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    <run>/metrics.json  test accuracy, per-class precision/recall/F1, confusion matrix, timing
    <run>/model.pt      weights + network config (see digitlab.checkpoint)

:func:`train_and_evaluate` is the whole job behind ``digitlab train``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__
from ._io import write_atomic
from .checkpoint import LoadedModel, save_model
from .config import MODEL_FILE, PRESETS, TrainConfig
from .data import Dataset
from .evaluate import Metrics, evaluate
from .models import build_model
from .npinfer import NPZ_SUFFIX, export_npz
from .runlist import RunSummary, list_runs, model_file, read_json, resume_config
from .train import EpochStats, fit, split_validation

__all__ = ["CHECKPOINT_FILE", "MODEL_FILE", "RunResult", "RunSummary", "list_runs",
           "model_file", "new_run_dir", "read_history", "read_json", "resume_config",
           "resume_run", "train_and_evaluate"]

CHECKPOINT_FILE = "checkpoint.pt"  # the training state after a recent finished epoch
CHECKPOINT_SECONDS = 5.0  # training time between two checkpoint writes, at most
HISTORY_SECONDS = 1.0  # between checkpoints, history.csv is rewritten at most this often
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


@dataclass
class RunResult:
    """What ``digitlab train`` did: where the run is and how it went."""

    run_dir: Path
    config: TrainConfig
    history: list[EpochStats]
    metrics: Metrics | None  # test-set metrics; None when stopped before the first epoch ended
    train_seconds: float
    interrupted: bool
    test_proba: np.ndarray | None = None  # (N, 10) softmax on the test set, for the plots
    stopped: str | None = None  # why training stopped on its own (a NaN loss)


def _write_text(path: Path, text: str, sync: bool = True) -> None:
    write_atomic(path, text.encode("utf-8"), sync)


def _write_json(path: Path, obj: dict) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _history_csv(history: list[EpochStats]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_FIELDS)
    for h in history:
        writer.writerow(["" if v is None else (round(v, 6) if isinstance(v, float) else v)
                         for v in (getattr(h, f) for f in HISTORY_FIELDS)])
    return out.getvalue()


def new_run_dir(root: str | Path, config: TrainConfig, now: datetime | None = None) -> Path:
    """A new, empty folder ``root/<preset>-<dataset>-<timestamp>`` (suffixed if taken)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.preset}-{config.dataset}-{stamp}"
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {base}")


def _versions() -> dict:
    return {"digitlab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def train_and_evaluate(config: TrainConfig, data: Dataset, run_dir: str | Path,
                       observer=None, command: list[str] | None = None) -> RunResult:
    """Train ``config.preset`` on ``data``, evaluate on the test part, and write the run.

    The run directory is created if needed and must not hold a model yet. config.json is
    written before training starts, the rest after it ends, also when Ctrl-C stopped it (the
    epochs that finished are kept).
    """
    run_dir = Path(run_dir)
    if (run_dir / MODEL_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model_config = PRESETS[config.preset].model_config(data.image_shape)
    model = build_model(model_config)
    x_train, y_train, x_val, y_val = split_validation(
        data.train_pixels, data.y_train, data.test_pixels, data.y_test, config)
    _write_json(run_dir / "config.json", {
        "train": asdict(config),
        "model": asdict(model_config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"name": data.name, "source": data.source, "image_shape": data.image_shape,
                 "train_size": len(x_train), "val_size": 0 if x_val is None else len(x_val),
                 "test_size": len(data.y_test)},
        "versions": _versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    })
    checkpointer = _Checkpointer(run_dir)
    result = fit(model, x_train, y_train, config, x_val, y_val, observer,
                 checkpoint=checkpointer)
    return _finish(run_dir, config, model_config, data, result, checkpointer)


class _Checkpointer:
    """Takes the training state that :func:`~digitlab.train.fit` hands over after each epoch.
    checkpoint.pt is written, atomically, after the first epoch and then once ``every``
    seconds have passed since it was last written, and by :meth:`flush`; history.csv (for
    watching the run) with it, and between those at most once a second. So a killed run
    resumes from a recent epoch (losing at most ``every`` seconds), and a run of many short
    epochs does not spend its time on files."""

    def __init__(self, run_dir: Path, every: float = CHECKPOINT_SECONDS):
        self.run_dir, self.every = run_dir, every
        self.pending: dict | None = None
        self.written_at: float | None = None
        self.history_at = -math.inf

    def __call__(self, state: dict) -> None:
        self.pending = state
        now = time.monotonic()
        if self.written_at is None or now - self.written_at >= self.every:
            self.flush()
        elif now - self.history_at >= HISTORY_SECONDS:
            self._write_history(state)

    def _write_history(self, state: dict) -> None:
        _write_text(self.run_dir / "history.csv",
                    _history_csv([EpochStats(**h) for h in state["history"]]), sync=False)
        self.history_at = time.monotonic()

    def flush(self) -> None:
        """Write the last state handed over, if it is not written yet."""
        if self.pending is None:
            return
        self._write_history(self.pending)
        buffer = io.BytesIO()
        torch.save(self.pending, buffer)
        write_atomic(self.run_dir / CHECKPOINT_FILE, buffer.getvalue())
        self.pending, self.written_at = None, time.monotonic()


def _finish(run_dir: Path, config: TrainConfig, model_config, data: Dataset,
            result, checkpointer: _Checkpointer) -> RunResult:
    if len(result.history) < config.epochs:  # stopped early: resume from its last epoch
        checkpointer.flush()
    _write_text(run_dir / "history.csv", _history_csv(result.history))
    metrics = proba = None
    seconds = sum(h.seconds for h in result.history)  # every epoch, across resumptions
    if result.history:
        metrics, proba = evaluate(result.model, data.x_test, data.y_test, config.device)
        _write_json(run_dir / "metrics.json", {
            "dataset": data.name, "split": "test", "test": metrics.to_dict(),
            "test_accuracy": metrics.accuracy, "epochs_completed": len(result.history),
            "train_seconds": seconds, "seconds_per_epoch": seconds / len(result.history),
            "interrupted": result.interrupted, "stopped": result.stopped,
        })
        meta = {"preset": config.preset, "dataset": data.name, "seed": config.seed,
                "epochs": len(result.history), "test_accuracy": metrics.accuracy,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save_model(run_dir / MODEL_FILE, result.model, model_config, meta)
        # the same weights for NumPy, for commands that would rather not import PyTorch
        export_npz(LoadedModel(result.model, model_config, meta, run_dir / MODEL_FILE),
                   (run_dir / MODEL_FILE).with_suffix(NPZ_SUFFIX),
                   source=run_dir / MODEL_FILE)
    if len(result.history) == config.epochs:
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: nothing to resume
    return RunResult(run_dir, config, result.history, metrics, seconds, result.interrupted,
                     proba, result.stopped)


def resume_run(run_dir: str | Path, data: Dataset, observer=None) -> RunResult:
    """Continue a stopped run from the checkpoint of its last finished epoch, with the
    optimizer, schedule, averaged weights and random streams as they were: the result is the
    run that was never stopped."""
    run_dir = Path(run_dir)
    config, model_config = resume_config(run_dir)
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        done = (run_dir / "metrics.json").is_file() and read_json(
            run_dir / "metrics.json").get("epochs_completed") == config.epochs
        raise ValueError(f"{run_dir} finished all {config.epochs} epochs already" if done
                         else f"{run_dir} has no checkpoint to resume from (one is written "
                         "when the first epoch ends): train again with --out to start it over")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # any unreadable checkpoint, whatever torch raises
        raise ValueError(f"{path} is damaged ({type(exc).__name__}); cannot resume") from None
    if state["epoch"] >= config.epochs:
        raise ValueError(f"{run_dir} finished all {config.epochs} epochs already")
    model = build_model(model_config)
    x_train, y_train, x_val, y_val = split_validation(
        data.train_pixels, data.y_train, data.test_pixels, data.y_test, config)
    checkpointer = _Checkpointer(run_dir)
    result = fit(model, x_train, y_train, config, x_val, y_val, observer, resume=state,
                 checkpoint=checkpointer)
    return _finish(run_dir, config, model_config, data, result, checkpointer)


def read_history(run_dir: str | Path) -> list[EpochStats]:
    """history.csv back as :class:`~digitlab.train.EpochStats` rows."""
    def number(text: str, kind=float):
        return None if text == "" else kind(text)
    with (Path(run_dir) / "history.csv").open(encoding="utf-8") as f:
        return [EpochStats(number(r["epoch"], int), number(r["loss"]), number(r["accuracy"]),
                           number(r["val_loss"]), number(r["val_accuracy"]),
                           number(r["seconds"])) for r in csv.DictReader(f)]
