import csv
import json

import numpy as np
import pytest
import torch

from digitlab.checkpoint import load_model
from digitlab.config import TrainConfig
from digitlab.data import load_dataset
from digitlab.evaluate import evaluate
from digitlab.npinfer import beside
from digitlab.runs import MODEL_FILE, new_run_dir, train_and_evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = load_dataset("digits20")
    config = TrainConfig.from_preset("cnn", "digits20", epochs=2, seed=4, threads=1)
    run_dir = new_run_dir(tmp_path_factory.mktemp("runs"), config)
    return train_and_evaluate(config, data, run_dir, command=["train", "--model", "cnn"]), data


def test_run_directory_holds_everything(run):
    result, data = run
    d = result.run_dir
    assert d.name.startswith("cnn-digits20-")
    assert {p.name for p in d.iterdir()} == {"config.json", "history.csv", "metrics.json",
                                             MODEL_FILE, "model.npz"}
    # the NumPy copy gives what the model gives (the cnn preset was validated each epoch in
    # channels-last and trained on: predict_logits must leave trainable weights behind)
    net = beside(d / MODEL_FILE)
    assert net is not None and net.meta["epochs"] == 2
    loaded = load_model(d / MODEL_FILE)
    with torch.no_grad():
        expected = torch.softmax(loaded.model(torch.as_tensor(data.x_test[:50])), 1).numpy()
    assert np.abs(net(data.x_test[:50]) - expected).max() < 1e-5
    config = json.loads((d / "config.json").read_text())
    assert config["train"]["seed"] == 4 and config["train"]["preset"] == "cnn"
    assert config["data"] == {"name": "digits20", "source": "embedded", "image_shape": [20, 20],
                              "train_size": 4500, "val_size": 500, "test_size": 1000}
    model = load_model(d / MODEL_FILE).model
    assert config["parameters"] == sum(p.numel() for p in model.parameters())
    assert config["versions"]["torch"] == torch.__version__
    rows = list(csv.DictReader((d / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    assert float(rows[1]["val_accuracy"]) == pytest.approx(result.history[1].val_accuracy,
                                                           abs=1e-6)


def test_metrics_are_the_models_test_metrics(run):
    result, data = run
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    loaded = load_model(result.run_dir / MODEL_FILE)
    again, _ = evaluate(loaded.model, data.x_test, data.y_test)
    assert metrics["test_accuracy"] == again.accuracy == result.metrics.accuracy
    assert metrics["test"]["confusion"] == again.confusion
    assert np.sum(metrics["test"]["confusion"]) == 1000
    assert metrics["epochs_completed"] == 2 and metrics["interrupted"] is False
    assert loaded.meta["test_accuracy"] == again.accuracy


def test_an_existing_run_is_never_overwritten(run):
    result, data = run
    before = (result.run_dir / MODEL_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_and_evaluate(result.config, data, result.run_dir)
    assert (result.run_dir / MODEL_FILE).read_bytes() == before


def test_run_names_do_not_collide(tmp_path):
    config = TrainConfig.from_preset("seed-20x20")
    a, b = new_run_dir(tmp_path, config), new_run_dir(tmp_path, config)
    assert a != b and a.is_dir() and b.is_dir()


def test_checkpoints_at_most_every_few_seconds(tmp_path, monkeypatch):
    """checkpoint.pt is written after the first epoch, then only once `every` seconds have
    passed, and on flush (a stopped run); history.csv with it, and between those once
    HISTORY_SECONDS have passed."""
    import digitlab.runs
    from digitlab.runs import CHECKPOINT_FILE, _Checkpointer

    def state(epochs):
        history = [{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": None,
                    "val_accuracy": None, "seconds": 0.1} for e in range(1, epochs + 1)]
        return {"epoch": epochs, "history": history}

    def saved():
        return torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epoch"]

    def history_rows():
        return len((tmp_path / "history.csv").read_text().splitlines()) - 1

    monkeypatch.setattr(digitlab.runs, "HISTORY_SECONDS", 3600)
    write = _Checkpointer(tmp_path, every=3600)
    for epochs in (1, 2, 3):
        write(state(epochs))
        assert history_rows() == 1 and saved() == 1
    write.flush()
    assert saved() == 3 and history_rows() == 3
    monkeypatch.setattr(digitlab.runs, "HISTORY_SECONDS", 0)
    write(state(4))
    assert history_rows() == 4 and saved() == 3
    every_time = _Checkpointer(tmp_path, every=0)
    every_time(state(4))
    every_time(state(5))
    assert saved() == 5
