"""Surviving interruption: per-epoch checkpoints, resume equal to never stopping, SIGKILL and
SIGTERM in the real CLI, and a NaN loss stopping the run with the last good weights."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from digitlab.checkpoint import load_model
from digitlab.config import PRESETS, TrainConfig
from digitlab.data import load_dataset
from digitlab.models import build_model
from digitlab.train import fit

BIN = Path(sys.executable).parent / "digitlab"


@pytest.fixture(scope="module")
def small():
    data = load_dataset("digits20")
    pick = np.r_[0:5000:8]  # 625 digits
    return data.x_train[pick], data.y_train[pick], data.x_test[:200], data.y_test[:200]


def weights(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


class StopAt:
    """Ctrl-C at the start of an epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, epoch, steps):
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def on_step(self, step, loss): ...
    def on_epoch_end(self, stats): ...


@pytest.mark.parametrize("preset, overrides", [
    ("seed-20x20", {}),                         # the hand-written dense trainer
    ("cnn", {}),                                # autograd, dropout
    ("robust", {"batch_size": 64}),             # augmentation, one-cycle, EMA, label smoothing
])
def test_resume_equals_never_stopping(small, preset, overrides):
    x, y, xv, yv = small
    config = TrainConfig.from_preset(preset, "digits20", epochs=3, seed=7, threads=1,
                                     **overrides)

    def fresh():
        torch.manual_seed(config.seed)
        return build_model(PRESETS[preset].model_config((20, 20)))

    whole = fit(fresh(), x, y, config, xv, yv)
    states = []
    stopped = fit(fresh(), x, y, config, xv, yv, StopAt(2), checkpoint=states.append)
    assert stopped.interrupted and states[-1]["epoch"] == 1
    torch.manual_seed(12345)  # whatever the process did in between
    resumed = fit(fresh(), x, y, config, xv, yv, resume=states[-1])
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert [h.loss for h in resumed.history] == [h.loss for h in whole.history]
    assert torch.equal(weights(resumed.model), weights(whole.model)), "bit for bit"


class Poison:
    """Makes the weights NaN at the start of epoch 2, as a diverging run would."""

    def __init__(self, model):
        self.model = model

    def on_epoch_start(self, epoch, steps):
        if epoch == 2:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))

    def on_step(self, step, loss): ...
    def on_epoch_end(self, stats): ...


def test_nan_loss_stops_with_the_last_good_weights(small):
    x, y, xv, yv = small
    config = TrainConfig.from_preset("cnn", "digits20", epochs=4, threads=1)
    torch.manual_seed(0)
    model = build_model(PRESETS["cnn"].model_config((20, 20)))
    states = []
    result = fit(model, x, y, config, xv, yv, Poison(model), checkpoint=states.append)
    assert result.stopped and "epoch 2" in result.stopped and "epoch 1" in result.stopped
    assert len(result.history) == 1 and len(states) == 1
    assert torch.isfinite(weights(result.model)).all()


def run(*args, **kwargs):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


def wait_for_epochs(run_dir: Path, n: int, proc) -> None:
    history = run_dir / "history.csv"
    for _ in range(3000):
        if history.exists() and len(history.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, "finished before it could be stopped"
        time.sleep(0.01)
    raise AssertionError("no progress")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_model(tmp_path, how):
    common = ["train", "--model", "cnn", "--dataset", "digits20", "--epochs", "5", "--seed",
              "3", "--threads", "1", "--no-plots"]
    assert run(*common, "--out", str(tmp_path / "whole")).returncode == 0
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([str(BIN), *common, "--out", str(stopped)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(stopped, 2, proc)
    time.sleep(0.15)  # into the middle of the next epoch
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    if how == signal.SIGTERM:
        assert proc.returncode == 130 and "--resume" in out and "Traceback" not in err
        metrics = json.loads((stopped / "metrics.json").read_text())
        assert metrics["interrupted"] is True
        # stopped, not killed: the checkpoint is of the last finished epoch, however recent
        state = torch.load(stopped / "checkpoint.pt", weights_only=True)
        assert state["epoch"] == metrics["epochs_completed"] >= 2
    else:
        assert proc.returncode == -signal.SIGKILL
    assert (stopped / "checkpoint.pt").exists()
    assert not list(stopped.glob("*.part")), "no half-written files"
    done = run("train", "--resume", str(stopped), "--no-plots")
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    a = load_model(tmp_path / "whole" / "model.pt").model
    b = load_model(stopped / "model.pt").model
    assert torch.equal(weights(a), weights(b))
    assert not (stopped / "checkpoint.pt").exists(), "finished: nothing left to resume"
    def rows(folder):  # every column but the seconds
        return [r.split(",")[:5] for r in (folder / "history.csv").read_text().splitlines()]
    assert rows(stopped) == rows(tmp_path / "whole")
    again = run("train", "--resume", str(stopped))
    assert again.returncode == 1 and "finished all 5 epochs" in again.stderr


def test_resume_needs_a_run(tmp_path):
    done = run("train", "--resume", str(tmp_path))
    assert done.returncode == 1 and "not a run directory" in done.stderr
    assert run("train", "--resume", str(tmp_path), "--model", "cnn").returncode == 2
