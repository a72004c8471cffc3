"""One math thread per worker process, for the engines that run one process per core."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def one_thread_children() -> Iterator[None]:
    """Processes started inside this block do their arithmetic on one thread each.

    The math libraries read these variables once, when they load, and a spawned child loads
    NumPy while it unpickles its work, before any initializer runs: so they must be in the
    environment it is started with. Two workers each running a second OpenBLAS thread on two
    cores spend most of their time waiting on each other (measured: 19 files/s instead of
    several hundred). The parent's own libraries, already loaded, are unaffected.
    """
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
