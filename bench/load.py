"""Load benchmark for the service: wrk (Debian's, a C load generator that costs little CPU)
posting real digit images to a real `digitlab serve` on 127.0.0.1.

    .venv/bin/python bench/load.py [--seconds 60] [--workers 2]

Runs 32 and then 4 concurrent clients, each for --seconds, posting canvas-style PNGs of MNIST
test digits (280x280, as the draw-a-digit page sends them) in turn. Reports requests/s,
p50/p99 latency, errors and the server's memory (RSS of all its processes) at start and end;
writes bench/results/load.json. Targets on these 2 cores, generator included: >=1000
requests/s with p99 <=50 ms at 32 clients; p99 <=10 ms at 4 clients.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DIGITLAB = Path(sys.executable).parent / "digitlab"

LUA = r"""
-- post the prepared images in turn; count non-2xx answers as errors
local bodies = {}
local n = 0
init = function(args)
  for i = 1, tonumber(args[1]) do
    local f = io.open(args[2] .. "/" .. i .. ".png", "rb")
    bodies[i] = f:read("*all")
    f:close()
  end
end
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "image/png"}, bodies[n])
end
"""


def images(folder: Path, count: int) -> None:
    """Canvas-style PNGs: MNIST test digits drawn large, dark on white, as the page sends."""
    sys.path.insert(0, str(HERE))
    import userstyle

    from digitlab.data import load_mnist
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlab"
    mnist, _ = load_mnist(cache)
    rng = np.random.default_rng(0)
    digits = np.rint(mnist.x_test[:count] * 255).astype(np.uint8)
    for i, d in enumerate(digits, 1):
        ink = userstyle.ink_layer(d, 180, rng)
        cover = userstyle._place(ink, 280, 280, rng, centred=True)
        rgb = np.uint8(np.rint(255 * (1 - cover)))
        buf = io.BytesIO()
        Image.fromarray(rgb, "L").save(buf, "PNG")
        (folder / f"{i}.png").write_bytes(buf.getvalue())


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)],
                                                    capture_output=True, text=True
                                                    ).stdout.split()]
    total = 0
    for p in pids:
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return total / 1024


def parse(output: str) -> dict:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    out = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
           "requests": int(re.search(r"(\d+) requests in", output)[1])}
    for pct in ("50", "99"):
        out[f"p{pct}_ms"] = ms(re.search(rf"\s{pct}(?:\.000)?%\s+(\S+)", output)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    out["errors"] = (int(errors[1]) if errors else 0) + (
        sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "load.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images(folder, args.images)
        (folder / "post.lua").write_text(LUA)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(DIGITLAB), "serve", "--port", str(port), "--workers",
                                   str(args.workers)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # all workers up
        result = {"workers": args.workers, "seconds": args.seconds,
                  "memory_start_mb": rss_mb(server.pid), "loadavg_start": os.getloadavg()}
        try:
            for clients in (32, 4):
                done = subprocess.run(
                    ["wrk", "-t", "1", "-c", str(clients), "-d", f"{args.seconds}s",
                     "--latency", "-s", str(folder / "post.lua"), url, "--",
                     str(args.images), str(folder)], capture_output=True, text=True, check=True)
                result[f"clients_{clients}"] = parse(done.stdout)
                r = result[f"clients_{clients}"]
                print(f"{clients:>2} clients: {r['requests_per_second']:.0f} requests/s, "
                      f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                      f"errors {r['errors']} of {r['requests']}", flush=True)
            result["memory_end_mb"] = rss_mb(server.pid)
            result["healthz_after"] = urllib.request.urlopen(url + "/healthz").status
        finally:
            server.terminate()
            server.wait(timeout=20)
    result["loadavg_end"] = os.getloadavg()
    print(f"server memory {result['memory_start_mb']:.0f} MB at start, "
          f"{result['memory_end_mb']:.0f} MB at end; load average "
          f"{result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
