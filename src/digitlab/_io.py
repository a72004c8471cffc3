"""Atomic file writes and file digests, shared by the cache, run directories and model
files."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

_FILE_MODE = 0o644  # mkstemp makes files 0600; cached data and runs are meant to be shared


def write_atomic(path: str | Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it over ``path``,
    so a reader (or a crash) never sees a half-written file. ``sync``: flush it to the disk
    first (skip only for files that are rewritten again soon, such as progress)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
