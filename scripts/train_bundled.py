"""Train the model bundled inside the package (src/digitlab/_models/digitnet.pt).

The `robust` preset (digitnet, augmentation for people's digits, one-cycle AdamW, label
smoothing, weight averaging) on MNIST's 60,000 training digits, 10% held out for validation;
the MNIST test set is used once, at the end, for the recorded accuracy. Writes the model file
and digitnet.json beside it (metrics, recipe, command, versions). Run from the project root:

    .venv/bin/python scripts/train_bundled.py [--seed 0] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from digitlab.checkpoint import load_model
from digitlab.config import TrainConfig
from digitlab.data import load_mnist
from digitlab.npinfer import export_npz
from digitlab.runs import MODEL_FILE, read_json, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "digitlab" / "_models"
MAX_BYTES = 5 * 2**20


class Lines:
    def on_epoch_start(self, epoch, steps): ...
    def on_step(self, step, running_loss): ...

    def on_epoch_end(self, s):
        print(f"epoch {s.epoch:>2}  {s.seconds:5.1f}s  loss {s.loss:.4f}  acc {s.accuracy:.4f}  "
              f"val_loss {s.val_loss:.4f}  val_acc {s.val_accuracy:.4f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bundled")
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlab"
    data, _ = load_mnist(cache)
    config = TrainConfig.from_preset("robust", seed=args.seed, epochs=args.epochs)
    if (args.run / MODEL_FILE).exists():
        raise SystemExit(f"{args.run} already holds a run; remove it or pass --run")
    result = train_and_evaluate(config, data, args.run, Lines(), command=sys.argv)
    if result.interrupted or result.metrics is None:
        raise SystemExit("training stopped early; nothing bundled")
    size = (args.run / MODEL_FILE).stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"model file is {size} bytes, over {MAX_BYTES}")
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / MODEL_FILE, OUT / "digitnet.pt")
    # the same weights for NumPy-only inference (quick start of `digitlab predict`)
    export_npz(load_model(OUT / "digitnet.pt"), OUT / "digitnet.npz")
    metrics = read_json(args.run / "metrics.json")
    record = {
        "model": "digitnet.pt", "bytes": size, "preset": "robust",
        "test_accuracy": metrics["test_accuracy"], "test": metrics["test"],
        "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs_completed"],
        "config": read_json(args.run / "config.json"),
        "command": "python scripts/train_bundled.py " + " ".join(sys.argv[1:]),
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": "2 vCPU (AMD EPYC), no GPU",
    }
    (OUT / "digitnet.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"bundled {OUT / 'digitnet.pt'} ({size / 1e6:.2f} MB): MNIST test accuracy "
          f"{metrics['test_accuracy']:.2%}, trained in {metrics['train_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
