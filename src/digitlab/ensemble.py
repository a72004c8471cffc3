"""Ensembles: several members of one recipe with different seeds, their softmax averaged.

An ensemble run directory holds ``ensemble.json`` (the members, their seeds and accuracies,
and the ensemble's) and one ordinary run directory per member, ``member-<i>/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ._io import write_atomic
from .config import ENSEMBLE_FILE, TrainConfig
from .data import Dataset
from .evaluate import Metrics, classification_metrics
from .runlist import read_json

__all__ = ["ENSEMBLE_FILE", "average", "member_runs", "train_ensemble"]


def member_runs(run_dir: str | Path) -> list[str]:
    """The member run directories an ensemble's record names; ValueError if it is damaged.
    The record names them as they were given when it was trained (relative to the folder
    the command ran in, say): a member not found there is looked for in ``run_dir``, so an
    ensemble still works from another folder, or moved."""
    record = Path(run_dir) / ENSEMBLE_FILE
    try:
        named = [Path(m["run"]) for m in read_json(record)["members"]]
    except (KeyError, TypeError):
        raise ValueError(f"{record} is damaged (it names no members)") from None
    return [str(m if m.is_dir() or not (Path(run_dir) / m.name).is_dir()
                else Path(run_dir) / m.name) for m in named]


def average(probas: list[np.ndarray], labels: np.ndarray) -> tuple[Metrics, np.ndarray]:
    """The ensemble's metrics and probabilities: the members' softmax outputs averaged."""
    mean = np.mean(np.stack(probas), axis=0)
    return classification_metrics(labels, mean.argmax(1), mean.shape[1]), mean


def train_ensemble(config: TrainConfig, data: Dataset, run_dir: str | Path, members: int,
                   engine: str = "local", address: str | None = None, observer=None) -> dict:
    """Train ``members`` runs of ``config`` with seeds seed, seed+1, ... (in this process, or
    as parallel Ray tasks with ``engine="ray"``), evaluate their average on the test set and
    write ``run_dir/ensemble.json``. Returns that record."""
    run_dir = Path(run_dir)
    if (run_dir / ENSEMBLE_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds an ensemble; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if engine == "ray":
        from .scale import train_ensemble_ray
        results = train_ensemble_ray(config, data, run_dir, members, address)
    else:
        from .runs import train_and_evaluate
        results = []
        for i in range(members):
            r = train_and_evaluate(replace(config, seed=config.seed + i), data,
                                   run_dir / f"member-{i}", observer)
            results.append({"member": i, "seed": config.seed + i, "run": str(r.run_dir),
                            "test_accuracy": r.metrics.accuracy if r.metrics else None,
                            "train_seconds": r.train_seconds, "proba": r.test_proba})
    finished = [r for r in results if r["proba"] is not None]
    if not finished:
        raise ValueError("no member finished an epoch")
    metrics, _ = average([r["proba"] for r in finished], data.y_test)
    record = {"config": asdict(config), "members": [
        {k: v for k, v in r.items() if k != "proba"} for r in results],
        "engine": engine, "dataset": data.name, "test_accuracy": metrics.accuracy,
        "test": metrics.to_dict()}
    write_atomic(run_dir / ENSEMBLE_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return record
