"""Batch recognition at scale: 10,000 image files through the local engine and through Ray.

    .venv/bin/python bench/batch.py [--files 10000] [--two-nodes]

Makes the files once (user-style PNG and JPEG renderings of MNIST test digits, bench/
userstyle.py), then times `digitlab predict DIR --out ...` whole process on the local engine
(one process per core) and on a local Ray (Ray Data, one actor per CPU), and checks the two
outputs agree. With --two-nodes it starts a Ray head and a second Ray node on this machine
(`ray start --head`, `ray start --address`), runs the batch against that cluster and reports
Ray Data's own count of reading tasks per node. Writes bench/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cache_dir, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BIN = Path(sys.executable).parent
DIGITLAB = BIN / "digitlab"


def make_files(folder: Path, count: int) -> None:
    import userstyle

    from digitlab.data import load_mnist
    cache = cache_dir()
    mnist, _ = load_mnist(cache)
    images = np.rint(mnist.x_test * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    kinds = [("clean",), ("colour",), ("jpeg",), ("light",), ("rotation",)]
    for i in range(count):
        sample = userstyle.digit_sample(images[i % len(images)], int(mnist.y_test[i % len(
            images)]), kinds[i % len(kinds)], rng)
        (folder / f"{i:05d}{sample.suffix}").write_bytes(sample.data)


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of ``cmd``, and what it said on stderr."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stderr


def rows(path: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq
    table = pq.read_table(path) if path.is_dir() else None
    if table is not None:
        return {r["file"]: r for r in table.to_pylist()}
    return {r["file"]: r for r in map(json.loads, path.open())}


def spread(stderr: str) -> str | None:
    """Ray Data's own count of reading tasks per node, as digitlab reports it."""
    found = re.search(r"reading tasks per node: (.*)", stderr)
    return found[1].strip() if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="image files to make and read")
    parser.add_argument("--two-nodes", action="store_true",
                        help="also run on a Ray head plus a second Ray node on this machine")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "batch.json",
                        help="where the JSON goes")
    args = parser.parse_args()
    result: dict = {"files": args.files, "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        started = time.perf_counter()
        make_files(folder, args.files)
        print(f"made {args.files} files in {time.perf_counter() - started:.0f} s", flush=True)
        local, _ = timed([str(DIGITLAB), "predict", str(folder), "--out", str(tmp / "l.jsonl")])
        result["local"] = {"seconds": local, "files_per_second": args.files / local}
        print(f"local engine: {local:.1f} s, {args.files / local:.0f} files/s", flush=True)
        ray_s, said = timed([str(DIGITLAB), "predict", str(folder), "--out",
                       str(tmp / "r.parquet"), "--engine", "ray"])
        result["ray"] = {"seconds": ray_s, "files_per_second": args.files / ray_s,
                         "tasks_per_node": spread(said)}
        print(f"Ray engine (local Ray): {ray_s:.1f} s, {args.files / ray_s:.0f} files/s",
              flush=True)
        a, b = rows(tmp / "l.jsonl"), rows(tmp / "r.parquet")
        same = sum(a[f]["digit"] == b[f]["digit"] for f in a)
        worst = max((abs(a[f][f"p{d}"] - b[f][f"p{d}"]) for f in a if a[f]["digit"] is not None
                     for d in range(10)), default=0.0)
        result["agreement"] = {"same_digit": same, "of": len(a), "max_probability_diff": worst}
        print(f"same answers: {same} of {len(a)}; largest probability difference {worst:.1e}")
        if args.two_nodes:
            ray_bin = str(BIN / "ray")
            port = "6390"
            # `ray start --head` turns on token authentication; every client must ask for it
            os.environ["RAY_AUTH_MODE"] = "token"
            subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=1",
                            "--include-dashboard=false"], check=True, capture_output=True)
            subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"],
                           check=True, capture_output=True)
            try:
                two, said = timed([str(DIGITLAB), "predict", str(folder), "--out",
                                   str(tmp / "two.parquet"), "--engine", "ray", "--address",
                                   f"127.0.0.1:{port}"])
                result["two_nodes"] = {"seconds": two, "files_per_second": args.files / two,
                                       "tasks_per_node": spread(said)}
                print(f"two Ray nodes: {two:.1f} s; tasks per node "
                      f"{result['two_nodes']['tasks_per_node']}")
            finally:
                subprocess.run([ray_bin, "stop", "--force"], capture_output=True)
    result["loadavg_end"] = os.getloadavg()
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
