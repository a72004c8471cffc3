"""Speed benchmark: digitlab against the tutorials' own tf.keras programs, on this machine,
in one run; plus the fast recipe, the best model and inference.

    .venv/bin/python bench/speed.py                     # seeds, fast recipe, inference
    .venv/bin/python bench/speed.py --best-seeds 3      # also the best model (about 12 min each)
    .venv/bin/python bench/speed.py --skip-reference --fast-seeds 0 --best-runs RUN...

The reference runs in its own virtual environment, bench/.venv-tf (tensorflow-cpu, made on
first use; never a dependency of digitlab). Each pair trains the same network on the same
data with the same epochs, batch size and Adam settings, whole process against whole process
(import, data, training with the tutorial's per-epoch validation, evaluation, saving), each
repeated and interleaved so both sides share the machine's noise; the figure is the ratio of
medians. Prints a table and writes bench/results/speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cache_dir, machine, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = Path(sys.executable)
DIGITLAB = PYTHON.parent / "digitlab"
TF_VENV = HERE / ".venv-tf"
TF_PIN = "tensorflow-cpu==2.21.0"
NETS = {"seed-mlp": 8.0, "seed-wide": 5.0, "seed-20x20": 5.0}  # target ratios


def ensure_tf() -> Path:
    python = TF_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {TF_VENV} with {TF_PIN} (first run only) ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(TF_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", TF_PIN], check=True)
    return python


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; its wall seconds, peak memory (MB) and output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, output


def mnist_dir() -> Path:
    cache = cache_dir()
    subprocess.run([str(DIGITLAB), "data", "fetch", "mnist"], check=True,
                   capture_output=True)
    return cache / "mnist"


def reference(tf_python: Path, net: str, work: Path) -> dict:
    out = work / f"ref-{net}-{time.monotonic_ns()}.json"
    wall, mem, _ = timed([str(tf_python), str(HERE / "reference" / "keras_tutorials.py"),
                          "--net", net, "--mnist", str(mnist_dir()), "--digits20",
                          str(ROOT / "src" / "digitlab" / "_data" / "digits20.npz"),
                          "--out", str(out)], env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    result = json.loads(out.read_text())
    return {**result, "wall_seconds": wall, "peak_mb": mem}


def digitlab_train(args: list[str], work: Path) -> dict:
    out = work / f"run-{time.monotonic_ns()}"
    wall, mem, _ = timed([str(DIGITLAB), "train", *args, "--no-plots", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    device = json.loads((out / "config.json").read_text())["train"]["device"]
    return {"wall_seconds": wall, "peak_mb": mem, "train_seconds": metrics["train_seconds"],
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "test_accuracy": metrics["test_accuracy"], "run": str(out), "device": device}


def run_record(run: Path) -> dict:
    """The figures of a run trained earlier (its wall time is not known: training's only)."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {"wall_seconds": None, "peak_mb": None, "train_seconds": metrics["train_seconds"],
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "test_accuracy": metrics["test_accuracy"], "run": str(run)}


def evaluate_runs(runs: list[str], tta: bool) -> float:
    """Test accuracy of a run, or of several as an ensemble, by `digitlab evaluate`."""
    done = subprocess.run([str(DIGITLAB), "evaluate", *runs, "--json", *(["--tta"] if tta else [])],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["accuracy"]


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def pairs(tf_python: Path, repeats: int, work: Path) -> dict:
    out = {}
    for net, target in NETS.items():
        refs, ours = [], []
        for r in range(repeats):
            refs.append(reference(tf_python, net, work))
            ours.append(digitlab_train(["--model", net, "--seed", str(r)], work))
            print(f"{net:10} run {r + 1}/{repeats}: tf.keras {refs[-1]['wall_seconds']:.1f} s "
                  f"({refs[-1]['test_accuracy']:.4f}), digitlab {ours[-1]['wall_seconds']:.1f} "
                  f"s ({ours[-1]['test_accuracy']:.4f})", flush=True)
        ratio = med(refs, "wall_seconds") / med(ours, "wall_seconds")
        out[net] = {
            "reference": refs, "digitlab": ours, "target_ratio": target,
            "ratio_whole_process": ratio,
            "ratio_training": med(refs, "train_seconds") / med(ours, "train_seconds"),
            "accuracy_gap": statistics.mean(r["test_accuracy"] for r in ours)
            - statistics.mean(r["test_accuracy"] for r in refs),
        }
    return out


def inference(rows: list[tuple[str, str, str, bool]], work: Path) -> dict:
    """Each row (label, model: a run or "bundled", engine: torch, numpy or onnx, whether to
    time a cold `digitlab predict` with it): single-image p50/p99 and batch throughput on the
    MNIST test set through Recognizer, in its own process with default threads."""
    code = r"""
import json, sys, time, numpy as np
from digitlab.recognize import Recognizer
from digitlab.data import load_dataset
model, engine = (None if sys.argv[1] == "bundled" else sys.argv[1]), sys.argv[2]
if engine == "onnx":
    from digitlab.checkpoint import load_model
    from digitlab.export import OnnxBackend
    from digitlab._bundled import bundled_path
    from digitlab.runlist import model_file
    loaded = load_model(bundled_path() if model is None else model_file(model))
    rec = Recognizer(loaded, backend=OnnxBackend.for_model(loaded))
else:
    rec = Recognizer.load(model, engine=engine)
assert ("torch" in sys.modules) == (engine != "numpy")
x = load_dataset("mnist", sys.argv[3]).x_test
one = x[:1]
for _ in range(50): rec.probabilities(one)
times = []
for i in range(2000):
    t = time.perf_counter(); rec.probabilities(x[i:i + 1]); times.append(time.perf_counter() - t)
t = time.perf_counter()
for i in range(0, len(x), 1000): rec.probabilities(x[i:i + 1000])
batch = time.perf_counter() - t
print(json.dumps({"single_p50_ms": float(np.median(times) * 1000),
                  "single_p99_ms": float(np.percentile(times, 99) * 1000),
                  "batch_images_per_second": len(x) / batch}))
"""
    cache = str(cache_dir())
    png = work / "seven.png"
    sys.path.insert(0, str(ROOT / "tests"))
    from digits import on_paper  # the same handwriting the tests read
    on_paper([7]).save(png)
    out = {}
    for label, model, engine, cold in rows:
        done = subprocess.run([str(PYTHON), "-c", code, model, engine, cache],
                              capture_output=True, text=True, check=True)
        row = {"model": model, "engine": engine, **json.loads(done.stdout)}
        if cold:  # predict runs the bundled model, and a run's, in NumPy
            chosen = [] if model == "bundled" else ["--model", model]
            colds = [timed([str(DIGITLAB), "predict", str(png), *chosen])[0] for _ in range(5)]
            row["cold_start_seconds"] = statistics.median(colds)
        out[label] = row
        print(f"inference {label}: single p50 {row['single_p50_ms']:.3f} ms, batch "
              f"{row['batch_images_per_second']:,.0f} images/s"
              + (f", cold start {row['cold_start_seconds']:.2f} s" if cold else ""),
              flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each seed recipe, each side")
    parser.add_argument("--fast-seeds", type=int, default=3, help="seeds of the fast recipe")
    parser.add_argument("--best-seeds", type=int, default=0,
                        help="seeds of the best model (about 25 minutes each)")
    parser.add_argument("--best-runs", type=Path, nargs="*", default=[], metavar="RUN",
                        help="best-model runs trained before, evaluated with the new ones")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the runs in DIR (default: a temporary folder, removed)")
    parser.add_argument("--skip-reference", action="store_true",
                        help="skip the tf.keras programs and digitlab's seed recipes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "speed.json",
                        help="where the JSON goes")
    args = parser.parse_args()
    info = machine()
    result: dict = {"date": time.strftime("%Y-%m-%d"), "machine": info,
                    "loadavg_start": info["loadavg_start"]}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep
          else tempfile.TemporaryDirectory()) as tmp:
        work = Path(tmp)
        if not args.skip_reference:
            result["pairs"] = pairs(ensure_tf(), args.repeats, work)
        fast = [digitlab_train(["--recipe", "fast", "--seed", str(s)], work)
                for s in range(args.fast_seeds)]
        result["fast"] = fast
        best = [digitlab_train(["--model", "best", "--seed", str(s)], work)
                for s in range(args.best_seeds)]
        best += [run_record(run) for run in args.best_runs]
        for r in best:
            r["tta_test_accuracy"] = evaluate_runs([r["run"]], tta=True)
        result["best"] = best
        if len(best) > 1:
            runs = [r["run"] for r in best]
            result["best_ensemble"] = {"members": len(runs),
                                       "test_accuracy": evaluate_runs(runs, tta=False),
                                       "tta_test_accuracy": evaluate_runs(runs, tta=True)}
        mlp = digitlab_train(["--model", "seed-mlp", "--epochs", "1"], work)["run"]
        rows = [("seed-mlp, PyTorch", mlp, "torch", False),
                ("seed-mlp, NumPy", mlp, "numpy", True),
                ("bundled digitnet, NumPy", "bundled", "numpy", True),
                ("bundled digitnet, PyTorch", "bundled", "torch", False)]
        if importlib.util.find_spec("onnxruntime"):
            rows.append(("bundled digitnet, ONNX Runtime", "bundled", "onnx", False))
        result["inference"] = inference(rows, work)
    result["loadavg_end"] = os.getloadavg()
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report(result)
    write_result(result, args.out)
    return 0


def report(result: dict) -> None:
    if "pairs" in result:
        print(f"\n{'recipe':11} {'tf.keras s':>10} {'digitlab s':>10} {'ratio':>6} {'target':>6} "
              f"{'train ratio':>11} {'tf acc':>7} {'dl acc':>7} {'tf MB':>6} {'dl MB':>6}")
        for net, p in result["pairs"].items():
            refs, ours = p["reference"], p["digitlab"]
            ref_acc = statistics.mean(r["test_accuracy"] for r in refs)
            our_acc = statistics.mean(r["test_accuracy"] for r in ours)
            print(f"{net:11} {med(refs, 'wall_seconds'):>10.1f} {med(ours, 'wall_seconds'):>10.1f}"
                  f" {p['ratio_whole_process']:>5.1f}x {p['target_ratio']:>5.0f}x "
                  f"{p['ratio_training']:>10.1f}x {ref_acc:>7.4f} {our_acc:>7.4f} "
                  f"{med(refs, 'peak_mb'):>6.0f} {med(ours, 'peak_mb'):>6.0f}")
    for name in ("fast", "best"):
        for i, r in enumerate(result[name]):
            wall = "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.1f} s wall, "
            tta = f", {r['tta_test_accuracy']:.4f} with --tta" if "tta_test_accuracy" in r else ""
            print(f"{name} {i + 1}: {r['test_accuracy']:.4f} test accuracy{tta}, {wall}"
                  f"{r['train_seconds']:.1f} s training ({Path(r['run']).name})")
    if "best_ensemble" in result:
        e = result["best_ensemble"]
        print(f"best, ensemble of {e['members']}: {e['test_accuracy']:.4f} test accuracy, "
              f"{e['tta_test_accuracy']:.4f} with --tta")
    info = result["machine"]
    devices = sorted({r["device"] for p in result.get("pairs", {}).values()
                      for r in p["digitlab"]} | {r["device"] for r in result["fast"]})
    print(f"machine: {info['cpu']}, {info['cores']} cores"
          + (f", digitlab on {', '.join(devices)}" if devices else "")
          + (f", {' '.join(f'{k}={v}' for k, v in info['blas_env'].items())}"
             if info["blas_env"] else ""))
    print(f"{info['started']} to {result['finished']}; load average "
          f"{result['loadavg_start'][0]:.2f} at start, {result['loadavg_end'][0]:.2f} at end")


if __name__ == "__main__":
    sys.exit(main())
