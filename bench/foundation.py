"""Foundation benchmark: every preset's recipe trained through the real CLI on real data.

For each run: whole-process wall seconds, training seconds and seconds per epoch (from the
run's metrics.json), test accuracy, the last epoch's training accuracy (Keras-style running
mean), and the process's peak memory. Prints a table, checks the foundation issue's accuracy
gates (mean over seeds), writes bench/results/foundation.json, and exits 1 if a gate fails.

    .venv/bin/python bench/foundation.py                # all presets, 3 seeds for the seeds
    .venv/bin/python bench/foundation.py --presets seed-mlp --seeds 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import machine, machine_line

HERE = Path(__file__).resolve().parent
DIGITLAB = Path(sys.executable).parent / "digitlab"

# (preset, dataset, seeds by default, gate on the mean: (what, threshold))
PLAN = {
    "seed-mlp": ("mnist", 3, ("test_accuracy", 0.973)),
    "seed-wide": ("mnist", 3, ("test_accuracy", 0.973)),
    "seed-20x20": ("digits20", 3, ("train_accuracy", 0.99)),
    "mlp-dropout": ("mnist", 1, None),
    "cnn": ("mnist", 1, ("test_accuracy", 0.990)),
}


def run_once(preset: str, dataset: str, seed: int, out: Path) -> dict:
    cmd = [str(DIGITLAB), "train", "--model", preset, "--dataset", dataset, "--seed", str(seed),
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output}")
    metrics = json.loads((out / "metrics.json").read_text())
    history = list(csv.DictReader((out / "history.csv").open()))
    return {
        "preset": preset, "dataset": dataset, "seed": seed,
        "wall_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "epochs": metrics["epochs_completed"],
        "test_accuracy": metrics["test_accuracy"],
        "train_accuracy": float(history[-1]["accuracy"]),
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=PLAN, default=list(PLAN),
                        help="presets to train (default: all)")
    parser.add_argument("--seeds", type=int, help="seeds per preset (default: the plan's)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for foundation.json")
    args = parser.parse_args()
    subprocess.run([str(DIGITLAB), "data", "fetch", "mnist"], check=True)
    info = machine()
    runs = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for preset in args.presets:
        dataset, n_seeds, _ = PLAN[preset]
        for seed in range(args.seeds or n_seeds):
            out = args.out / "runs" / f"{stamp}-{preset}-s{seed}"
            r = run_once(preset, dataset, seed, out)
            runs.append(r)
            print(f"{preset:12} seed {seed}: test {r['test_accuracy']:.4f}  "
                  f"train {r['train_accuracy']:.4f}  {r['train_seconds']:.1f} s training, "
                  f"{r['wall_seconds']:.1f} s whole process", flush=True)
    info["loadavg_end"] = os.getloadavg()

    summary, failed = {}, []
    head = (f"{'preset':12} {'data':8} {'seeds':>5} {'test acc':>9} {'train acc':>9} "
            f"{'train s':>8} {'s/epoch':>8} {'process s':>9} {'peak MB':>8}  gate")
    print("\n" + head + "\n" + "-" * len(head))
    for preset in args.presets:
        rs = [r for r in runs if r["preset"] == preset]
        mean = {k: statistics.mean(r[k] for r in rs) for k in (
            "test_accuracy", "train_accuracy", "train_seconds", "seconds_per_epoch",
            "wall_seconds", "peak_rss_mb")}
        gate = PLAN[preset][2]
        verdict = "-"
        if gate:
            ok = mean[gate[0]] >= gate[1]
            verdict = f"{'PASS' if ok else 'FAIL'} ({gate[0]} >= {gate[1]})"
            if not ok:
                failed.append(preset)
        summary[preset] = {**mean, "seeds": len(rs), "gate": verdict}
        print(f"{preset:12} {rs[0]['dataset']:8} {len(rs):>5} {mean['test_accuracy']:>9.4f} "
              f"{mean['train_accuracy']:>9.4f} {mean['train_seconds']:>8.1f} "
              f"{mean['seconds_per_epoch']:>8.2f} {mean['wall_seconds']:>9.1f} "
              f"{mean['peak_rss_mb']:>8.0f}  {verdict}")
    print("\n" + machine_line(info, info["loadavg_end"]))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "foundation.json"
    path.write_text(json.dumps({"machine": info, "runs": runs, "summary": summary}, indent=2))
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
