import os
import pickle
import random

import pytest
import torch

from digitlab.checkpoint import FORMAT_VERSION, ModelFileError, load_model, save_model
from digitlab.config import PRESETS
from digitlab.models import build_model


@pytest.fixture
def saved(tmp_path):
    config = PRESETS["cnn"].model_config((28, 28))
    torch.manual_seed(0)
    model = build_model(config)
    path = tmp_path / "model.pt"
    save_model(path, model, config, {"preset": "cnn", "test_accuracy": 0.5})
    return path, model, config


def test_round_trip_gives_the_same_network(saved):
    path, model, config = saved
    loaded = load_model(path)
    assert loaded.config == config and loaded.meta["preset"] == "cnn"
    x = torch.rand(5, 28, 28)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))
    assert not loaded.model.training
    raw = torch.load(path, weights_only=True)  # plain data, no code
    assert raw["format_version"] == FORMAT_VERSION
    assert not list(path.parent.glob("*.part"))


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_newer_or_unknown_format_is_refused(saved):
    path, *_ = saved
    _rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}"):
        load_model(path)
    _rewrite(path, format="something-else")
    with pytest.raises(ModelFileError, match="not a digitlab model"):
        load_model(path)


def test_mismatched_weights_are_refused(saved):
    path, model, config = saved
    _rewrite(path, model_config={**vars(config), "dropout": 0.5, "arch": "mlp",
                                 "hidden": [8]})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)


@pytest.mark.parametrize("damage, reason", [("truncate", "damaged: "),
                                            ("garbage", "not a PyTorch file"),
                                            ("missing", "no model file")])
def test_damaged_files(saved, damage, reason):
    path, *_ = saved
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"GIF89a" + random.Random(0).randbytes(4096))
    else:
        path.unlink()
    with pytest.raises(ModelFileError, match=reason) as refused:
        load_model(path)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 250


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "digitlab-model", "payload": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(ModelFileError, match="not loaded, as that could run code") as refused:
        load_model(path)
    assert "weights_only" not in str(refused.value)
    assert not (tmp_path / "pwned").exists()


def test_older_format_still_loads(saved):
    path, model, config = saved
    payload = torch.load(path, weights_only=True)
    del payload["digest"]
    payload["format_version"] = 1  # as digitlab 0.1 wrote them: no digest
    torch.save(payload, path)
    assert load_model(path).config == config


def test_altered_weights_are_caught(saved):
    path, *_ = saved
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key].view(-1)[0] += 1.0  # one weight changed, file otherwise valid
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="damaged or was altered"):
        load_model(path)


def test_flipped_byte_inside_the_file(saved):
    path, *_ = saved
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the tensor data
    data[middle] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_batch_norm_models_round_trip(tmp_path):
    """Scalar buffers (batch norm's counters) are covered by the digest too."""
    config = PRESETS["robust"].model_config((28, 28))
    model = build_model(config)
    save_model(tmp_path / "m.pt", model, config, {})
    assert load_model(tmp_path / "m.pt").config.arch == "digitnet"


@pytest.mark.parametrize("seed", range(20))
def test_random_garbage_is_always_a_clean_error(tmp_path, seed):
    path = tmp_path / "model.pt"
    r = random.Random(seed)
    path.write_bytes(b"PK\x03\x04" + r.randbytes(r.choice([10, 500, 5000])))
    with pytest.raises(ModelFileError):
        load_model(path)
