"""NumPy-only inference against PyTorch: the same probabilities, without importing torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from digits import on_paper, png

from digitlab._bundled import bundled_path
from digitlab.checkpoint import LoadedModel, load_model
from digitlab.config import PRESETS
from digitlab.models import build_model
from digitlab.npinfer import NumpyNet, export_npz
from digitlab.recognize import Recognizer


@pytest.mark.parametrize("preset, shape", [("seed-mlp", (28, 28)), ("seed-20x20", (20, 20)),
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


def test_predict_starts_without_torch(tmp_path):
    path = tmp_path / "seven.png"
    on_paper([7]).save(path)
    code = ("import sys, json, io, contextlib; from digitlab.cli import main; "
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): code = main(['predict', sys.argv[1], "
            "'--json'])\n"
            "print(code, json.loads(out.getvalue())[0]['digit'], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True)
    assert done.stdout.split() == ["0", "7", "False"], done.stderr
