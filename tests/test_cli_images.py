"""`digitlab predict IMAGE...` and `digitlab read`: the real CLI on people-style files,
including a set of hostile ones that must each be refused with the right reason."""

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from digits import on_paper, png
from PIL import Image

BIN = Path(sys.executable).parent / "digitlab"


def run(*args, cwd=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def jpeg(im, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IEND\xaeB`\x82")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


HOSTILE = {  # file name -> (bytes, the reason it must be refused with)
    "empty.png": (b"", "empty file"),
    "truncated.png": (png(on_paper([3]))[:500], "truncated or corrupt"),
    "truncated.jpg": (jpeg(on_paper([3]))[:700], "truncated or corrupt"),
    "notes.png": (b"shopping list: milk, eggs, 7 apples\n" * 20, "not an image"),
    "scan.jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(300), "not an image"),
    "archive.gif": (_zip(), "not an image"),
    "page.webp": (b"<!DOCTYPE html><html><body>404</body></html>", "not an image"),
    "noise.bmp": (np.random.default_rng(0).bytes(5000), "not an image"),
    "tiny.png": (png(Image.new("L", (5, 5), 255)), "too small"),
    "white.png": (png(Image.new("RGB", (200, 200), "white")), "blank"),
    "black.jpg": (jpeg(Image.new("RGB", (200, 200), "black")), "blank"),
    "bomb.png": (_png_header(100_000, 100_000), "decompression-bomb"),
    "huge.png": (_png_header(9000, 7000), "megapixels, over the limit"),
    "header-only.png": (b"\x89PNG\r\n\x1a\n" + bytes(30), "corrupt PNG image"),
}


@pytest.fixture
def folder(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "seven.png").write_bytes(png(on_paper([7])))
    (good / "two on yellow.jpg").write_bytes(jpeg(on_paper([2], paper=(250, 236, 140),
                                                          ink=(25, 40, 150)), quality=40))
    (good / "ünïcode five.webp").write_bytes(png(on_paper([5], k=1)))  # PNG bytes, WebP name
    (good / ".hidden.png").write_bytes(b"skipped")
    return tmp_path


def test_predict_files_folders_and_globs(folder):
    done = run("predict", str(folder / "good"), str(folder / "good" / "*.png"), "--json")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    got = {Path(a["file"]).name: a["digit"] for a in answers}
    assert got == {"seven.png": 7, "two on yellow.jpg": 2, "ünïcode five.webp": 5}
    assert len(answers) == 4  # seven.png twice: once from the folder, once from the glob
    for a in answers:
        assert a["error"] is None and len(a["probabilities"]) == 10
        assert set(a) == {"file", "digit", "confidence", "probabilities", "low_confidence",
                          "error"}


def test_a_number_given_to_predict_points_to_read(tmp_path):
    (tmp_path / "year.png").write_bytes(png(on_paper([1, 9, 8, 4])))
    done = run("predict", str(tmp_path / "year.png"), str(tmp_path / "year.png"), "--json")
    assert done.returncode == 0 and "read" not in done.stdout, "JSON stays as documented"
    done = run("predict", str(tmp_path / "year.png"))
    assert done.returncode == 0, done.stderr
    assert "(low confidence)" in done.stdout
    assert "several digits: `digitlab read`" in done.stdout


def test_text_output_top_k_and_saved_inputs(folder, tmp_path):
    seen = tmp_path / "seen"
    done = run("predict", str(folder / "good" / "seven.png"), "--top", "3", "--save-input",
               str(seen), "--plot", str(tmp_path / "plot.png"))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{folder / 'good' / 'seven.png'}: 7 (confidence")
    assert first.count(",") == 2, "three most likely digits"
    assert "probabilities 0:" in done.stdout and "several digits" not in done.stdout
    saved = Image.open(seen / "seven.png")
    assert saved.size == (28, 28) and np.asarray(saved)[0, 0] == 0, "white on black, MNIST"
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    other = tmp_path / "other"
    other.mkdir()
    (other / "seven.png").write_bytes((folder / "good" / "seven.png").read_bytes())
    done = run("predict", str(folder / "good" / "seven.png"), str(other / "seven.png"),
               "--plot", str(tmp_path / "p.png"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("p-*")) == ["p-seven-2.png", "p-seven.png"]


def test_hostile_files_are_each_refused_with_the_right_reason(tmp_path, folder):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, (data, _) in HOSTILE.items():
        (bad / name).write_bytes(data)
    done = run("predict", str(bad), str(folder / "good" / "seven.png"),
               str(tmp_path / "missing.png"), "--json")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    answers = {Path(a["file"]).name: a for a in json.loads(done.stdout)}
    assert answers["seven.png"]["digit"] == 7, "the good file is still answered"
    assert answers["missing.png"]["error"] == "no such file"
    for name, (_, reason) in HOSTILE.items():
        entry = answers[name]
        assert entry["digit"] is None and reason in entry["error"], (name, entry["error"])
    assert len([line for line in done.stderr.splitlines() if "rejected" in line]) == \
        len(HOSTILE) + 1


def test_read_a_number(tmp_path):
    (tmp_path / "n.png").write_bytes(png(on_paper([3, 0, 5], k=4)))
    done = run("read", str(tmp_path / "n.png"), "--json")
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    assert entry["number"] == "305" and entry["error"] is None
    assert [len(d["box"]) for d in entry["digits"]] == [4, 4, 4]
    text = run("read", str(tmp_path / "n.png")).stdout
    assert text.startswith(f"{tmp_path / 'n.png'}: 305")


def test_unreadable_file(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked.png"
    locked.write_bytes(png(on_paper([1])))
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads every file: have reading it fail as it does for a user
        read_bytes = Path.read_bytes

        def refused(path):
            if path == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)
        monkeypatch.setattr(Path, "read_bytes", refused)
    from digitlab.cli import main
    assert main(["predict", str(locked), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["error"] == "permission denied"


def test_symlink_loop_in_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "one.png").write_bytes(png(on_paper([1])))
    done = run("predict", str(tmp_path / "d"), "--json")
    assert done.returncode == 0, done.stderr
    assert [a["digit"] for a in json.loads(done.stdout)] == [1]


def test_an_empty_folder_is_answered_not_passed_over(tmp_path, folder):
    from digitlab._cli_images import expand_sources
    from digitlab.recognize import Recognizer
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".DS_Store").write_bytes(b"hidden")
    good = folder / "good"
    assert expand_sources([str(empty), str(good)])[0] == str(empty)
    assert str(good) not in expand_sources([str(good)])  # a folder with files: the files
    with pytest.raises(ValueError, match="is a folder, not an image"):
        Recognizer.load(engine="numpy").predict(good)
    done = run("predict", str(empty))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"digitlab: {empty}: rejected: a folder with no files in it "
                                   "(hidden ones are skipped)")
