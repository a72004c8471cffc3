"""Batch predict on the local engine: all cores, streamed rows, bad files recorded, resume."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from digits import on_paper, png

from digitlab.batch import FIELDS, Output, answer_row, run_local
from digitlab.recognize import Recognizer

BIN = Path(sys.executable).parent / "digitlab"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i in range(24):
        (root / f"{i:02d}_{i % 10}.png").write_bytes(png(on_paper([i % 10], k=1 + i // 10)))
    (root / "broken.png").write_bytes(b"not an image")
    (root / "blank.png").write_bytes(png(on_paper([], height=60)))
    return root


def files_of(folder):
    return sorted(str(p) for p in folder.iterdir())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_local_engine_streams_every_answer(folder, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = Output(tmp_path / f"answers{suffix}")
    counts = run_local(files_of(folder), (None, "numpy", 0.7), out, workers=2, chunk=5)
    out.close()
    assert counts == {"answered": 24, "rejected": 2, "skipped": 0}
    again = Output(tmp_path / f"answers{suffix}", resume=True)
    assert again.done == set(files_of(folder))
    assert run_local(files_of(folder), (None, "numpy", 0.7), again, workers=2)["skipped"] == 26
    again.close()


def test_rows_are_the_recognizers_answers(folder, tmp_path):
    out = Output(tmp_path / "a.jsonl")
    run_local(files_of(folder), (None, "numpy", 0.7), out, workers=2, chunk=4)
    out.close()
    rows = {r["file"]: r for r in map(json.loads, (tmp_path / "a.jsonl").open())}
    rec = Recognizer.load(engine="numpy")
    for f in files_of(folder)[:6]:
        answer = rec.predict(f)
        assert rows[f]["digit"] == answer.digit
        assert abs(rows[f]["confidence"] - answer.confidence) < 1e-6
    assert rows[str(folder / "broken.png")]["error"].startswith("not an image")
    assert "blank" in rows[str(folder / "blank.png")]["error"]
    assert set(rows[f]) == set(FIELDS)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_cut_by_a_crash_is_read_again_and_resumes_cleanly(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    first = Output(path)
    first.write([answer_row("x.png", error="e"), answer_row("y.png", error="e")])
    first.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:whole.rindex(b"y.png") + 3])  # the crash: y's row cut short
    again = Output(path, resume=True)
    assert again.done == {"x.png"}
    again.write([answer_row("y.png", error="e"), answer_row("z.png", error="e")])
    again.close()
    assert path.read_bytes() == whole + (whole[whole.rindex(b"\n", 0, -1) + 1:].replace(
        b"y.png", b"z.png"))
    assert Output(path, resume=True).done == {"x.png", "y.png", "z.png"}


@pytest.mark.parametrize("name, content", [
    ("other.csv", "a,b\n1,2\n"),
    ("other.jsonl", '{"a": 1}\n'),
    ("other.jsonl", 'not json\n' + json.dumps(answer_row("x.png", error="e")) + "\n"),
    ("other.csv", b"\x89PNG\r\n\x1a\n\xff\xfe"),
    ("other.csv", "x" * 200_000 + "\n"),
    ("other.csv", "a,b"),
    ("notes.jsonl", "hello world\n"),
    ("notes.jsonl", '"\n'),
    ("notes.jsonl", "hello"),
])
def test_resume_refuses_a_file_that_is_not_its_output(tmp_path, name, content):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(ValueError, match="not an output of digitlab predict"):
        Output(path, resume=True)
    assert (path.read_bytes() if isinstance(content, bytes) else path.read_text()) == content


def test_existing_output_needs_resume(tmp_path):
    (tmp_path / "a.csv").write_text("file\n")
    with pytest.raises(FileExistsError, match="--resume"):
        Output(tmp_path / "a.csv")
    with pytest.raises(ValueError, match="must end in"):
        Output(tmp_path / "a.txt")


def test_cli_batch_with_a_list_file_and_resume(folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# ten of them\n\n" + "\n".join(files_of(folder)[:10]) + "\n")
    out = tmp_path / "answers.csv"
    done = subprocess.run([str(BIN), "predict", f"@{listing}", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "10 answered, 0 rejected" in done.stdout
    done = subprocess.run([str(BIN), "predict", str(folder), "--out", str(out), "--resume"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "14 answered, 2 rejected" in done.stdout
    assert "10 skipped" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 26 and len({r["file"] for r in rows}) == 26


def test_thousands_of_files(tmp_path):
    """A folder of 1200 files: answered in batch, each once."""
    seven = png(on_paper([7], height=40))
    for i in range(1200):
        (tmp_path / f"{i:04d}.png").write_bytes(seven)
    out = tmp_path.parent / f"{tmp_path.name}-answers.jsonl"
    done = subprocess.run([str(BIN), "predict", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    digits = [json.loads(line)["digit"] for line in out.open()]
    assert len(digits) == 1200 and set(digits) == {7}
