"""The dense trainer's thread picker on a machine whose cores are shared: `digitlab train` of
the seed MLPs with its default threads (the picker) against `--threads 2` (two threads
throughout, as before the picker), alone and beside a busy process pinned to each core in
turn (what a laptop running something else sees; on a virtual machine the host's other
tenants do it unseen).

    .venv/bin/python bench/busycore.py [--repeats 2] [--nets seed-mlp seed-wide]

Every run trains seed 0, so both ways must give the same test accuracy (they train the same
weights; checked). Runs of the two ways alternate, so both share the machine's noise. For
machines with two or more cores; prints a table and writes bench/results/busycore.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, machine_line, write_result
from speed import HERE, digitlab_train

WAYS = {"picker": [], "2 threads": ["--threads", "2"]}
BUSY = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy(core: int | None):
    """A process spinning on ``core`` for the duration (none for None)."""
    if core is None:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", BUSY, str(core)])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, each case")
    parser.add_argument("--nets", nargs="+", default=["seed-mlp", "seed-wide"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "busycore.json")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs at least two cores")
    cases = [None, cores[0], cores[1]]
    result = {"machine": machine(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets:
            for core in cases:
                runs: dict[str, list[dict]] = {way: [] for way in WAYS}
                for r in range(args.repeats):
                    for way, extra in WAYS.items():
                        with busy(core):
                            run = digitlab_train(["--model", net, "--seed", "0", *extra],
                                                 Path(tmp))
                        runs[way].append(run)
                        print(f"{net:10s} busy core {core!s:4s} run {r + 1}/{args.repeats} "
                              f"{way:9s}: {run['wall_seconds']:.2f} s "
                              f"({run['test_accuracy']:.4f})", flush=True)
                accuracies = {run["test_accuracy"] for rows in runs.values() for run in rows}
                if len(accuracies) != 1:
                    raise SystemExit(f"{net}: the ways trained different models: {accuracies}")
                result["cases"].append({"net": net, "busy_core": core, "runs": runs,
                                        "test_accuracy": accuracies.pop()})
    result["loadavg_end"] = os.getloadavg()
    print(f"\n{'recipe':10s} {'busy core':>9s} {'picker s':>9s} {'2 threads s':>11s} "
          f"{'ratio':>6s}")
    for case in result["cases"]:
        picker, fixed = (statistics.median(r["wall_seconds"] for r in case["runs"][way])
                         for way in WAYS)
        case["median_seconds"] = {"picker": picker, "2 threads": fixed}
        print(f"{case['net']:10s} {case['busy_core']!s:>9s} {picker:9.2f} {fixed:11.2f} "
              f"{fixed / picker:5.2f}x")
    print(machine_line(result["machine"], result["loadavg_end"]))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
