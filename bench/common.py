"""What the benchmarks share: where digitlab caches MNIST, and how a result is written."""

from __future__ import annotations

import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """digitlab's user cache, as the CLI finds it ($XDG_CACHE_HOME/digitlab or
    ~/.cache/digitlab): the benchmarks read the MNIST that `digitlab data fetch` put there."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitlab"


def write_result(result: dict, path: Path) -> None:
    """The benchmark's figures as JSON at ``path`` (bench/results/ by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
