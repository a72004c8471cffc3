"""The table of runs behind ``digitlab runs``, and the settings a run was started with, read
from each run directory's JSON files without loading PyTorch, so a listing starts in a
fraction of a second and ``train --resume`` knows how to load PyTorch before it does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ENSEMBLE_FILE, MODEL_FILE, ModelConfig, TrainConfig

__all__ = ["RunSummary", "list_runs", "model_file", "read_json", "resume_config"]


def model_file(run: str | Path) -> Path:
    """The model file of a run directory, or ``run`` itself when it is a file."""
    run = Path(run)
    return run / MODEL_FILE if run.is_dir() else run


def read_json(path: str | Path) -> dict:
    """A run's JSON file; ValueError naming the file when it is damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"{exc.msg}, line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else (
            "not text")
        raise ValueError(f"{path} is damaged (not JSON: {why})") from None


def resume_config(run_dir: str | Path) -> tuple[TrainConfig, ModelConfig]:
    """The TrainConfig and ModelConfig a run was started with (its config.json)."""
    try:
        saved = read_json(Path(run_dir) / "config.json")
        model = saved["model"]
        return TrainConfig(**saved["train"]), ModelConfig(
            **{**model, "input_shape": tuple(model["input_shape"]),
               "hidden": tuple(model["hidden"])})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{run_dir} is not a run directory I can resume ({exc})") from None


@dataclass(frozen=True)
class RunSummary:
    """One row of ``digitlab runs``."""

    path: str
    preset: str
    dataset: str
    epochs: int
    train_seconds: float | None
    test_accuracy: float | None  # None for a run stopped before its first epoch ended
    started: str
    interrupted: bool


def list_runs(root: str | Path, skipped=None) -> list[RunSummary]:
    """Every run directory directly under ``root`` (those with a config.json) and the member
    runs of the ensembles there, unsorted.
    A run whose files cannot be read is skipped rather than failing the listing, and
    ``skipped(run, reason)`` is told, when given."""
    summaries = []
    root = Path(root)
    members = [c for c in root.glob("*/member-*/config.json")
               if (c.parent.parent / ENSEMBLE_FILE).is_file()]  # an ensemble's runs
    for config_path in sorted([*root.glob("*/config.json"), *members]):
        run = config_path.parent
        try:
            config = read_json(config_path)
            metrics = read_json(run / "metrics.json") if (run / "metrics.json").exists() else {}
            summaries.append(RunSummary(
                str(run), config["train"]["preset"], config["data"]["name"],
                metrics.get("epochs_completed", 0), metrics.get("train_seconds"),
                metrics.get("test_accuracy"), config.get("started", ""),
                metrics.get("interrupted", False)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if skipped:
                skipped(run, str(exc) if isinstance(exc, (OSError, ValueError))
                        else "its config.json or metrics.json is not digitlab's")
            continue
    return summaries
