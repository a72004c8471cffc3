"""What the benchmarks share: where digitlab caches MNIST, the machine a result was measured
on, and how a result is written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def machine() -> dict:
    """The processor, core count, Python, BLAS settings in the environment, start time and
    load average, read from the system (Linux's /proc/cpuinfo where there is one)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return {"cpu": fields.get("model name") or platform.processor() or platform.machine(),
            "cpu_family": fields.get("cpu family"), "cores": os.cpu_count(),
            "python": platform.python_version(),
            "blas_env": {k: v for k, v in os.environ.items()
                         if k.startswith(("OPENBLAS_", "MKL_", "OMP_"))},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": os.getloadavg()}


def machine_line(info: dict, loadavg_end: tuple[float, ...]) -> str:
    """A table's last line: the processor and cores of :func:`machine`'s ``info``, when the
    benchmark started, and the load average then and at ``loadavg_end``."""
    return (f"machine: {info['cpu']}, {info['cores']} cores; {info['started']}, load average "
            f"{info['loadavg_start'][0]:.2f} at start, {loadavg_end[0]:.2f} at end")


def cache_dir() -> Path:
    """digitlab's user cache, as the CLI finds it ($XDG_CACHE_HOME/digitlab or
    ~/.cache/digitlab): the benchmarks read the MNIST that `digitlab data fetch` put there."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitlab"


def write_result(result: dict, path: Path) -> None:
    """The benchmark's figures as JSON at ``path`` (bench/results/ by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
