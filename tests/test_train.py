import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from digitlab.config import PRESETS, TrainConfig
from digitlab.data import load_dataset, to_float
from digitlab.models import build_model
from digitlab.train import fit, resolve_device, split_validation


@pytest.fixture(scope="module")
def small():
    data = load_dataset("digits20")
    pick = np.r_[0:5000:10]  # 500 digits, 50 per class
    return data.x_train[pick], data.y_train[pick], data.x_test, data.y_test


def _train(small, seed, epochs=2, observer=None, preset="seed-20x20"):
    x, y, xt, yt = small
    config = TrainConfig.from_preset(preset, epochs=epochs, seed=seed, threads=1)
    torch.manual_seed(seed)
    model = build_model(PRESETS[preset].model_config((20, 20)))
    return fit(model, x, y, config, xt, yt, observer)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_weights_other_seed_other_weights(small):
    a, b, c = _train(small, 1), _train(small, 1), _train(small, 2)
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert [h.loss for h in a.history] == [h.loss for h in b.history]
    assert not torch.allclose(_weights(a.model), _weights(c.model))
    assert a.history[-1].loss != c.history[-1].loss


def test_history_and_learning(small):
    result = _train(small, 0, epochs=5)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4, 5]
    assert result.history[-1].loss < result.history[0].loss
    assert result.history[-1].accuracy > 0.5
    assert all(h.val_accuracy is not None and h.seconds > 0 for h in result.history)
    assert not result.interrupted and not result.model.training


def test_dropout_preset_trains_deterministically(small):
    a, b = _train(small, 3, preset="mlp-dropout"), _train(small, 3, preset="mlp-dropout")
    assert torch.equal(_weights(a.model), _weights(b.model))


def test_8bit_pixels_train_as_their_floats_would(small):
    """The autograd path takes 8-bit pixels as they are and makes each batch pixel / 255:
    the same numbers, so the same weights and history, as training on to_float's floats."""
    x, y, xt, yt = small
    x8, xt8 = (np.rint(a * 255).astype(np.uint8) for a in (x, xt))
    runs = []
    for images, test in ((x8, xt8), (to_float(x8), to_float(xt8))):
        config = TrainConfig.from_preset("mlp-dropout", epochs=1, seed=5, threads=1)
        torch.manual_seed(5)
        model = build_model(PRESETS["mlp-dropout"].model_config((20, 20)))
        runs.append(fit(model, images, y, config, test, yt))
    assert torch.equal(_weights(runs[0].model), _weights(runs[1].model))
    a, b = ([(h.loss, h.accuracy, h.val_loss, h.val_accuracy) for h in r.history] for r in runs)
    assert a == b


class StopIn:
    """Raises KeyboardInterrupt, as Ctrl-C would, at a given step of a given epoch."""

    def __init__(self, epoch, step):
        self.at, self.epoch = (epoch, step), 0

    def on_epoch_start(self, epoch, steps):
        self.epoch = epoch

    def on_step(self, step, running_loss):
        if (self.epoch, step) == self.at:
            raise KeyboardInterrupt

    def on_epoch_end(self, stats):
        pass


def test_ctrl_c_keeps_the_finished_epochs(small):
    whole = _train(small, 5, epochs=1)
    stopped = _train(small, 5, epochs=3, observer=StopIn(epoch=2, step=7))
    assert stopped.interrupted
    assert len(stopped.history) == 1
    assert stopped.history[0] == whole.history[0].__class__(
        **{**vars(whole.history[0]), "seconds": stopped.history[0].seconds})
    assert torch.equal(_weights(stopped.model), _weights(whole.model)), \
        "weights are those at the end of epoch 1, not mid-epoch 2"


def test_holdout_split_is_seeded_disjoint_and_never_the_test_set():
    x = np.arange(100, dtype=np.float32).reshape(100, 1, 1)
    y = np.repeat(np.arange(10), 10)  # sorted by class, like digits20
    xt, yt = x[:5] + 1000, y[:5]
    config = TrainConfig.from_preset("cnn", "digits20", seed=0)
    xtr, ytr, xv, yv = split_validation(x, y, xt, yt, config)
    assert len(xv) == 10 and len(xtr) == 90
    assert not set(xv.ravel()) & set(xtr.ravel())
    assert (xv < 1000).all()
    assert len(set(yv.tolist())) > 3, "random, not the sorted tail"
    again = split_validation(x, y, xt, yt, config)[2]
    other = split_validation(x, y, xt, yt, TrainConfig.from_preset("cnn", seed=1))[2]
    assert np.array_equal(xv, again) and not np.array_equal(xv, other)
    seed = TrainConfig.from_preset("seed-mlp")
    assert split_validation(x, y, xt, yt, seed)[2] is xt
    assert split_validation(x, y, xt, yt, TrainConfig.from_preset("seed-20x20"))[2] is None
    every = split_validation(x, y, xt, yt, TrainConfig.from_preset("cnn", holdout=0))
    assert len(every[0]) == 100 and every[2] is None
    assert len(split_validation(x, y, xt, yt, TrainConfig.from_preset("cnn", holdout=0.3))[2]) == 30
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_validation(x, y, xt, yt, TrainConfig.from_preset("cnn", holdout=0.999))


def test_config_from_preset_and_overrides():
    c = TrainConfig.from_preset("seed-mlp", epochs=3, lr=None, seed=7)
    assert (c.dataset, c.epochs, c.batch_size, c.lr, c.seed) == ("mnist", 3, 32, 1e-3, 7)
    assert TrainConfig.from_preset("seed-20x20").dataset == "digits20"
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.from_preset("resnet")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        TrainConfig.from_preset("seed-mlp", epochs=0)
    with pytest.raises(ValueError, match="learning rate"):
        TrainConfig.from_preset("seed-mlp", lr=-1.0)
    # --holdout: a fraction of the training set to validate on, or 0 for none at all
    assert (TrainConfig.from_preset("best").validation, TrainConfig.from_preset("best").val_fraction
            ) == ("holdout", 0.1)
    final = TrainConfig.from_preset("best", holdout=0)
    assert (final.validation, final.epochs, final.ema) == ("none", 45, 0.999)
    held = TrainConfig.from_preset("seed-mlp", holdout=0.25)
    assert (held.validation, held.val_fraction) == ("holdout", 0.25)
    for bad in (1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="validation fraction must be in"):
            TrainConfig.from_preset("best", holdout=bad)


def test_process_settings_are_restored(small):
    threads = torch.get_num_threads()
    _train(small, 0, epochs=1)  # trains with threads=1 and denormals flushed
    assert torch.get_num_threads() == threads
    assert torch.tensor(1e-40).mul(2).item() != 0.0, "denormals work again after training"


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda")


def test_autograd_training_does_not_import_the_compiler():
    """torch.optim's first optimizer imports torch._dynamo (1 s at every start here); the
    trainer's own FusedAdam does the same arithmetic without it."""
    code = """
import sys
import numpy as np
from digitlab.config import PRESETS, TrainConfig
from digitlab.data import load_dataset, to_float
from digitlab.models import build_model
from digitlab.train import fit
data = load_dataset("digits20")
config = TrainConfig.from_preset("fastnet", "digits20", epochs=1, batch_size=64)
model = build_model(PRESETS["fastnet"].model_config((20, 20)))
history = fit(model, data.x_train[:256], data.y_train[:256], config).history
assert len(history) == 1 and np.isfinite(history[0].loss)
print("torch._dynamo" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_checkpoint_from_torch_optims_one_cycle_resumes_at_its_step():
    """Runs checkpointed before digitlab.optim carry OneCycleLR's own position; resuming
    takes it from there (here the optimizer itself never updated anything)."""
    from digitlab.optim import FusedAdam
    from digitlab.train import _restore
    model = build_model(PRESETS["fastnet"].model_config((20, 20)))
    reference = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=1e-3, total_steps=50,
                                                   pct_start=0.2, cycle_momentum=False)
    for _ in range(7):
        reference.step()
        schedule.step()
    state = {"kind": "autograd", "history": [], "model": model.state_dict(),
             "optimizer": reference.state_dict(), "schedule": schedule.state_dict(),
             "shuffle": torch.Generator().get_state(), "jitter": torch.Generator().get_state(),
             "torch_rng": torch.get_rng_state()}
    ours = FusedAdam(model.parameters(), lr=1e-3, eps=1e-8)
    _restore(state, {"model": model, "optimizer": ours, "ema": None}, torch.Generator(),
             torch.Generator())
    assert ours.steps == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_bf16_is_used_exactly_where_the_cpu_has_bf16_arithmetic():
    # the presets' bf16 flag was once a silent no-op: the check it relied on had moved
    from digitlab.train import _native_bf16
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert _native_bf16(torch.device("cpu")) == native
