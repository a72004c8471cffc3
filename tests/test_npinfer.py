"""NumPy-only inference against PyTorch: the same probabilities, without importing torch."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from digits import on_paper, png

from digitlab._bundled import bundled_path
from digitlab.checkpoint import LoadedModel, load_model
from digitlab.cli import main
from digitlab.config import PRESETS
from digitlab.models import build_model
from digitlab.npinfer import NumpyNet, beside, export_npz
from digitlab.recognize import Recognizer


@pytest.mark.parametrize("preset, shape", [("seed-mlp", (28, 28)), ("seed-20x20", (20, 20)),
                                           ("mlp-dropout", (28, 28)),
                                           ("cnn", (28, 28)), ("robust", (28, 28)),
                                           ("fastnet", (28, 28))])
def test_same_probabilities_as_torch(tmp_path, preset, shape):
    torch.manual_seed(0)
    config = PRESETS[preset].model_config(shape)
    model = build_model(config)
    for m in model.modules():  # batch norm with real statistics, not the initial 0 and 1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    export_npz(LoadedModel(model, config, {"preset": preset}, tmp_path / "m.pt"),
               tmp_path / "m.npz")
    net = NumpyNet(tmp_path / "m.npz")
    x = np.random.default_rng(1).random((16, *shape), dtype=np.float32)
    with torch.no_grad():
        expected = torch.softmax(model(torch.as_tensor(x)), 1).numpy()
    assert np.abs(net(x) - expected).max() < 1e-5
    # one image (one BLAS thread) and a batch that does not fill its last chunk
    for n in (1, 11):
        assert np.abs(net(x[:n]) - expected[:n]).max() < 1e-5
    assert net(x[:0]).shape == (0, 10)
    assert net.parameters == sum(p.numel() for p in model.parameters())


def test_bundled_npz_matches_the_bundled_model():
    torch_rec = Recognizer(load_model(bundled_path()))
    numpy_rec = Recognizer.load(engine="numpy")
    assert numpy_rec.model is None and numpy_rec.parameters == torch_rec.parameters
    for digit in range(10):
        data = png(on_paper([digit], k=2))
        a, b = torch_rec.predict(data), numpy_rec.predict(data)
        assert a.digit == b.digit
        assert np.abs(np.array(a.probabilities) - b.probabilities).max() < 1e-5


def test_npz_files_hold_no_code(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, __header__=np.array('{"model_config": {}}'),
             evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        NumpyNet(bad)


def _predict_in_a_new_process(image, *options):
    """`digitlab predict IMAGE --json OPTIONS` in a fresh interpreter: exit code, the answer
    and whether PyTorch was imported."""
    code = ("import sys, json, io, contextlib; from digitlab.cli import main; "
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): code = main(['predict', *sys.argv[1:], "
            "'--json'])\n"
            "answer = json.loads(out.getvalue())[0]\n"
            "print(code, answer['digit'], 'torch' in sys.modules, "
            "json.dumps(answer['probabilities']))")
    done = subprocess.run([sys.executable, "-c", code, str(image), *map(str, options)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, digit, torch_imported, probabilities = done.stdout.split(maxsplit=3)
    return int(code), int(digit), torch_imported == "True", json.loads(probabilities)


def test_predict_starts_without_torch(tmp_path):
    path = tmp_path / "seven.png"
    on_paper([7]).save(path)
    assert _predict_in_a_new_process(path)[:3] == (0, 7, False)


def test_a_runs_numpy_copy_is_used_only_while_it_matches_the_model_file(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "seed-mlp", "--dataset", "digits20", "--epochs", "1",
                 "--no-plots", "--out", str(run)]) == 0
    model, npz = run / "model.pt", run / "model.npz"
    assert beside(model) is not None
    image = tmp_path / "three.png"
    on_paper([3]).save(image)
    _, digit, torch_imported, probabilities = _predict_in_a_new_process(image, "--model", run)
    assert not torch_imported
    expected = Recognizer.load(run).predict(image)  # PyTorch
    assert digit == expected.digit
    assert np.abs(np.array(probabilities) - expected.probabilities).max() < 1e-5
    # a model file replaced by other weights (say copied over by hand): the copy is stale
    other = tmp_path / "other"
    assert main(["train", "--model", "seed-mlp", "--dataset", "digits20", "--epochs", "1",
                 "--seed", "1", "--no-plots", "--out", str(other)]) == 0
    model.write_bytes((other / "model.pt").read_bytes())
    assert beside(model) is None
    assert _predict_in_a_new_process(image, "--model", run)[2]  # PyTorch, the real weights
    with pytest.raises(ValueError, match="no NumPy copy"):
        Recognizer.load(run, engine="numpy")
    npz.write_bytes(b"not an npz")
    assert beside(model) is None


class _FakeBlas:
    """A BLAS library's thread setting as threadpoolctl shows it: one per process."""

    def __init__(self, threads: int):
        self.num_threads = threads

    def set_num_threads(self, threads: int) -> None:
        self.num_threads = threads


def test_overlapping_single_images_give_back_the_blas_threads(monkeypatch):
    """Two threads in one-image inference at once (the service's compute threads), the first
    in leaving first: BLAS stays on one thread while the second is inside, and gets its
    thread counts back when both are out (each restoring what it found left one for good)."""
    from digitlab import npinfer
    libraries = [_FakeBlas(2), _FakeBlas(4)]
    monkeypatch.setattr(npinfer, "_blas_libraries", lambda: libraries)
    one = npinfer._OneBlasThread()
    first_in, second_in, first_out = (threading.Event() for _ in range(3))
    seen = []

    def first():
        with one:
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with one:
            second_in.set()
            first_out.wait(10)
            seen.append([lib.num_threads for lib in libraries])

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [[1, 1]], "one thread while the second is still inside"
    assert [lib.num_threads for lib in libraries] == [2, 4]
    with one:  # and again, alone
        assert [lib.num_threads for lib in libraries] == [1, 1]
    assert [lib.num_threads for lib in libraries] == [2, 4]
