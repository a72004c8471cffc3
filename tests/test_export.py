"""ONNX export: the CLI writes a model that ONNX Runtime runs like PyTorch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from digits import on_paper, png

from digitlab.checkpoint import bundled_path, load_model
from digitlab.export import OnnxBackend, export_onnx
from digitlab.recognize import Recognizer

BIN = Path(sys.executable).parent / "digitlab"


def test_export_command(tmp_path):
    run = tmp_path / "run"
    assert subprocess.run([str(BIN), "train", "--model", "seed-20x20", "--epochs", "2",
                           "--no-plots", "--out", str(run)], capture_output=True).returncode == 0
    done = subprocess.run([str(BIN), "export", str(run), "--format", "onnx", "--check", "500"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (run / "model.onnx").stat().st_size > 1000
    assert "500 digits20 test digits" in done.stdout and "same digit for 500" in done.stdout


def test_bundled_model_through_onnx_runtime(tmp_path):
    loaded = load_model(bundled_path())
    x = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    report = export_onnx(loaded, tmp_path / "m.onnx", x)
    assert report.max_abs_difference < 1e-5 and report.same_answers == 64
    torch_rec = Recognizer(loaded)
    onnx_rec = Recognizer(loaded, backend=OnnxBackend(tmp_path / "m.onnx"))
    for digit in (0, 3, 8):
        data = png(on_paper([digit], k=1))
        a, b = torch_rec.predict(data), onnx_rec.predict(data)
        assert a.digit == b.digit == digit
        assert np.abs(np.array(a.probabilities) - b.probabilities).max() < 1e-5
