"""Load benchmark for the service: wrk (Debian's, a C load generator that costs little CPU)
posting real digit images to a real `digitlab serve` on 127.0.0.1.

    .venv/bin/python bench/load.py [--seconds 60] [--workers 2]

Runs 32 and then 4 concurrent clients, each for --seconds, posting canvas-style PNGs of MNIST
test digits (200x200, the size the draw-a-digit page sends its drawing at) in turn. Reports
requests/s, p50/p99 latency, errors and the server's memory (RSS of all its processes) at
start and end; writes bench/results/load.json. Targets on these 2 cores, generator included: >=1000
requests/s with p99 <=50 ms at 32 clients; p99 <=10 ms at 4 clients.
"""

from __future__ import annotations

import argparse
import io
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
from common import cache_dir, write_result
from PIL import Image

HERE = Path(__file__).resolve().parent
DIGITLAB = Path(sys.executable).parent / "digitlab"

ABUSE_LUA = r"""
-- normal images, and every tenth request a hostile one; count answers by status class
local entries = {}
local n = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
init = function(args)
  statuses = {}
  for line in io.lines(args[1] .. "/manifest.txt") do
    local kind, name = line:match("([^ ]+) ([^ ]+)")
    local f = io.open(args[1] .. "/" .. name, "rb")
    table.insert(entries, {kind, f:read("*all")})
    f:close()
  end
end
request = function()
  n = n % #entries + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = entries[n][1]}, entries[n][2])
end
response = function(status, headers, body)
  local k = tostring(math.floor(status / 100)) .. "xx"
  statuses[k] = (statuses[k] or 0) + 1
end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %s %d\n", k, v)) end
end
"""

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
    """Canvas-style PNGs: MNIST test digits drawn dark on white, 200x200 as the page sends."""
    sys.path.insert(0, str(HERE))
    import userstyle

    from digitlab.data import load_mnist
    cache = cache_dir()
    mnist, _ = load_mnist(cache)
    rng = np.random.default_rng(0)
    digits = np.rint(mnist.x_test[:count] * 255).astype(np.uint8)
    for i, d in enumerate(digits, 1):
        ink = userstyle.ink_layer(d, 130, rng)
        cover = userstyle._place(ink, 200, 200, rng, centred=True)
        rgb = np.uint8(np.rint(255 * (1 - cover)))
        buf = io.BytesIO()
        Image.fromarray(rgb, "L").save(buf, "PNG")
        (folder / f"{i}.png").write_bytes(buf.getvalue())


def hostile(folder: Path, count: int) -> None:
    """A manifest of bodies: the digit images, and after every nine of them one hostile
    request in turn: an upload over the size limit, a decompression bomb's header, a
    malformed multipart body, garbage, a truncated PNG, malformed JSON."""
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bodies = {
        "huge.bin": ("image/png", b"\x89PNG\r\n\x1a\n" + bytes(11 * 2**20)),
        "bomb.png": ("image/png", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
                     + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
                     + b"\0\0\0\0IEND\xaeB`\x82"),
        "multipart.bin": ("multipart/form-data;boundary=x", b"--x\r\nContent-Disp"),
        "garbage.bin": ("application/octet-stream", bytes(range(256)) * 40),
        "truncated.png": ("image/png", (folder / "1.png").read_bytes()[:300]),
        "json.bin": ("application/json", b'{"pixels": [[1, 2], '),
    }
    for name, (_, data) in bodies.items():
        (folder / name).write_bytes(data)
    lines, bad = [], list(bodies.items())
    for i in range(1, count + 1):
        lines.append(f"image/png {i}.png")
        if i % 9 == 0:
            name, (kind, _) = bad[(i // 9) % len(bad)]
            lines.append(f"{kind} {name}")
    (folder / "manifest.txt").write_text("\n".join(lines) + "\n")


def slow_clients(port: int, stop, counts: dict) -> None:
    """Clients that send half a request body and stall, again and again."""
    import socket
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png"
                          b"\r\nContent-Length: 50000\r\n\r\n" + b"\x89PNG" * 10)
                answer = s.recv(64).decode(errors="replace")
                status = answer.split(" ")[1] if answer.startswith("HTTP/") else "closed"
                counts[status] = counts.get(status, 0) + 1
        except OSError as exc:
            counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server processes), in MB."""
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
    parser.add_argument("--seconds", type=int, default=60, help="length of each wrk run")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--images", type=int, default=200, help="distinct images posted")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the JSON goes (default bench/results/load.json or abuse.json)")
    parser.add_argument("--onnx", action="store_true", help="serve through ONNX Runtime")
    parser.add_argument("--abuse", action="store_true",
                        help="32 clients with a share of hostile requests and stalled bodies")
    args = parser.parse_args()
    args.out = args.out or HERE / "results" / (
        ("abuse" if args.abuse else "load") + ("-onnx" if args.onnx else "") + ".json")
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images(folder, args.images)
        (folder / "post.lua").write_text(LUA)
        (folder / "abuse.lua").write_text(ABUSE_LUA)
        if args.abuse:
            hostile(folder, args.images)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(DIGITLAB), "serve", "--port", str(port), "--workers",
                                   str(args.workers), "--body-timeout", "5",
                                   *(["--onnx"] if args.onnx else [])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # all workers up
        result = {"workers": args.workers, "seconds": args.seconds, "onnx": args.onnx,
                  "memory_idle_mb": rss_mb(server.pid)}
        # a short warm-up first: the first requests grow the allocators' pools once; memory
        # is then measured from there, so growth at the end would be a leak
        subprocess.run(["wrk", "-t", "1", "-c", "32", "-d", "5s", "-s", str(folder / "post.lua"),
                        url, "--", str(args.images), str(folder)], capture_output=True,
                       check=True)
        result.update(memory_start_mb=rss_mb(server.pid), loadavg_start=os.getloadavg())
        try:
            if args.abuse:
                import threading
                stop, stalled = threading.Event(), {}
                threads = [threading.Thread(target=slow_clients, args=(port, stop, stalled))
                           for _ in range(4)]
                for t in threads:
                    t.start()
                done = subprocess.run(
                    ["wrk", "-t", "1", "-c", "32", "-d", f"{args.seconds}s", "--latency",
                     "-s", str(folder / "abuse.lua"), url, "--", str(folder)],
                    capture_output=True, text=True, check=True)
                stop.set()
                for t in threads:
                    t.join(timeout=70)
                statuses = dict(re.findall(r"STATUS (\S+) (\d+)", done.stdout))
                r = parse(done.stdout)
                r.update(statuses={k: int(v) for k, v in statuses.items()},
                         stalled_clients=stalled)
                result["abuse"] = r
                print(f"32 clients, hostile mix: {r['requests_per_second']:.0f} requests/s, "
                      f"p99 {r['p99_ms']:.1f} ms; answers by class {r['statuses']}; stalled "
                      f"bodies {stalled}", flush=True)
            for clients in (() if args.abuse else (32, 4)):
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
    print(f"server memory {result['memory_idle_mb']:.0f} MB idle, "
          f"{result['memory_start_mb']:.0f} MB after a 5 s warm-up, "
          f"{result['memory_end_mb']:.0f} MB at end; load average "
          f"{result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}")
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
