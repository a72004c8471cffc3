"""The hand-written dense trainer against autograd and torch.optim.Adam, in float64."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from digitlab.config import PRESETS, ModelConfig, TrainConfig
from digitlab.fastdense import (
    _MASKED,
    DenseNet,
    _ThreadPicker,
    can_train,
    checked_onednn,
    fit_dense,
    onednn_linear,
)
from digitlab.models import build_model


class Quiet:
    def on_epoch_start(self, epoch, steps): ...
    def on_step(self, step, running_loss): ...
    def on_epoch_end(self, stats): ...


def reference(model, x, y, config):
    """The plain way: autograd, nn.Module, torch.optim.Adam, the same shuffling stream.
    Returns each epoch's training loss, the mean over its batches' examples."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    shuffle = torch.Generator().manual_seed(config.seed)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=shuffle)
        xs, ys = x[order], y[order]
        total = 0.0
        for i in range(0, len(x), config.batch_size):
            batch = ys[i:i + config.batch_size]
            loss = torch.nn.functional.cross_entropy(model(xs[i:i + config.batch_size]), batch)
            total += loss.item() * len(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(total / len(x))
    return losses


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_agrees_with_autograd_and_adam_in_float64():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((70, 6, 6))  # 70 is not a multiple of the batch: a partial last batch
    y = rng.integers(0, 10, 70)
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=3, batch_size=16)
    model = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    ours = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    ours.load_state_dict(model.state_dict())
    losses = reference(model, x, y, config)
    result = fit_dense(ours, x, y, config, None, None, Quiet(), dtype=torch.float64)
    assert not result.interrupted and len(result.history) == 3
    assert np.allclose([h.loss for h in result.history], losses, rtol=0, atol=1e-12)
    difference = (weights(model) - weights(ours)).abs().max().item()
    assert difference < 1e-12, difference
    assert (weights(model) - weights(build_model(ModelConfig("mlp", (6, 6), (9, 7))).double())
            ).abs().max() > 1e-3, "training moved the weights"


def test_forward_and_gradients_match_autograd():
    torch.manual_seed(1)
    model = build_model(ModelConfig("mlp", (4, 4), (5,))).double()
    net = DenseNet(model, torch.float64)
    assert net.width == 16 and net.n_out == 10
    x = net.inputs(8)
    x[:, :-1] = torch.rand(8, 16, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    out = torch.empty(8, net.width, dtype=torch.float64)
    logits = net.forward(x, out=out)
    assert logits is out and torch.allclose(logits[:, :10], model(x[:, :-1]), atol=1e-14)
    assert (logits[:, 10:] == _MASKED).all()
    net.backward(x, torch.nn.functional.one_hot(y, net.width).double(), logits)
    torch.nn.functional.cross_entropy(model(x[:, :-1]), y).backward()
    grads = torch.cat([torch.cat([m.weight.grad.T, m.bias.grad[None]]).flatten()
                       for m in model.modules() if isinstance(m, torch.nn.Linear)])
    assert torch.allclose(net.unpadded(net.grads), grads, atol=1e-14)
    assert (net.G[-1][:, 10:] == 0).all()  # the padding's gradient is exactly zero


@pytest.mark.skipif(checked_onednn() is None, reason="a build without oneDNN")
def test_onednn_products_give_what_mm_gives():
    """In float32 the large products go to oneDNN where it is chosen (Zen 5): here the first
    layer's forward (33x785x128 multiply-adds) and the second layer's forward and input
    gradient (33x129x512); logits and gradients match the torch.mm path's to float32
    rounding (and are not its bits)."""
    torch.manual_seed(2)
    model = build_model(ModelConfig("mlp", (28, 28), (128, 512)))
    fast, plain = DenseNet(model), DenseNet(model)
    fast._linear, plain._linear = checked_onednn(), None
    assert [fast._onednn(33, s) for s in fast.sizes] == [True, True, False]
    x = fast.inputs(33)
    x[:, :-1] = torch.rand(33, 784)
    targets = torch.nn.functional.one_hot(torch.randint(0, 10, (33,)), fast.width).float()
    for net in (fast, plain):
        net.backward(x, targets, net.forward(x))
    assert torch.allclose(fast.forward(x), plain.forward(x), rtol=1e-5, atol=1e-5)
    assert torch.allclose(fast.grads, plain.grads, rtol=1e-4, atol=1e-7)
    assert fast.grads.abs().max() > 1e-3 and not torch.equal(fast.grads, plain.grads)


def test_the_onednn_probe_leaves_the_random_stream_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checked_onednn()
    assert torch.equal(torch.rand(3), expected)


def test_onednn_only_on_amd_family_26_and_later(monkeypatch):
    import digitlab.fastdense as fastdense

    monkeypatch.setattr(fastdense.platform, "machine", lambda: "arm64")
    assert fastdense._amd_family() is None and onednn_linear.__wrapped__() is None
    for family, chosen in ((None, False), (23, False), (25, False), (26, True), (27, True)):
        monkeypatch.setattr(fastdense, "_amd_family", lambda f=family: f)
        assert (onednn_linear.__wrapped__() is not None) is (chosen and checked_onednn()
                                                              is not None), family
    monkeypatch.setattr(fastdense.torch.backends.mkldnn, "is_available", lambda: False)
    assert checked_onednn() is None and onednn_linear.__wrapped__() is None


AMD_ZEN5 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"


@pytest.mark.parametrize("cpuinfo, family", [
    (AMD_ZEN5 + "\n" + AMD_ZEN5.replace(": 0", ": 1"), 26),
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n", 25),
    ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n", None),
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\n", None),  # no family line
    (None, None),  # no /proc/cpuinfo (not Linux)
])
def test_the_amd_family_is_read_from_cpuinfo(monkeypatch, cpuinfo, family):
    import io

    import digitlab.fastdense as fastdense

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/cpuinfo"
        if cpuinfo is None:
            raise FileNotFoundError(path)
        return io.StringIO(cpuinfo)

    monkeypatch.setattr(fastdense.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(fastdense, "open", fake_open, raising=False)
    assert fastdense._amd_family() == family


def test_the_output_padding_never_moves(monkeypatch):
    """The output layer's extra columns keep zero weights and the masking bias through
    training, with zero Adam moments; the unpadded layout round-trips."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 5, 5)), rng.integers(0, 10, 64)
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=2, batch_size=16)
    states = []
    model = build_model(ModelConfig("mlp", (5, 5), (6,)))
    fit_dense(model, x, y, config, None, None, Quiet(), checkpoint=states.append)
    net = DenseNet(model)
    saved = states[-1]
    for name in ("params", "m", "v"):
        flat = torch.zeros_like(net.params)
        net.load_unpadded(flat, saved[name])
        assert torch.equal(net.unpadded(flat), saved[name])
    assert len(saved["params"]) == sum((i + 1) * o for i, o in net.sizes)
    assert torch.equal(net.unpadded(net.params), saved["params"])  # the trained weights
    assert saved["m"].abs().sum() > 0
    # train once more from the saved state, and look at the padding inside the trainer
    seen = []
    import digitlab.fastdense as fastdense

    class Watching(fastdense.DenseNet):
        def backward(self, *args, **kwargs):
            super().backward(*args, **kwargs)
            seen.append((self.W[-1][:-1, 10:].abs().max().item(), self.W[-1][-1, 10:].tolist(),
                         self.G[-1][:, 10:].abs().max().item()))
    monkeypatch.setattr(fastdense, "DenseNet", Watching)
    # (threads given: no thread picker, whose check at the start would add two backward passes)
    fit_dense(model, x, y, replace(config, epochs=3, threads=2), None, None, Quiet(),
              resume=saved)
    assert len(seen) == 4 and all(s == (0.0, [_MASKED] * 6, 0.0) for s in seen)
    with pytest.raises(ValueError, match="holds 71 weights; this network has 226"):
        net.load_unpadded(torch.zeros_like(net.params), saved["params"][:71])


@pytest.mark.parametrize("bad", [10, 15, -1])
def test_labels_outside_the_classes_are_refused(bad):
    """Labels 10-15 would land in the output padding; they are refused as 16 and up are."""
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 5, 5)), rng.integers(0, 10, 32)
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=1, batch_size=16)
    model = build_model(ModelConfig("mlp", (5, 5), (6,)))
    for train_labels, val_labels in ((np.where(y == 3, bad, y), y), (y, np.where(y == 3, bad, y))):
        with pytest.raises(ValueError, match="labels must be 0 to 9"):
            fit_dense(model, x, train_labels, config, x, val_labels, Quiet())


def test_used_only_where_it_is_exact():
    mlp = build_model(PRESETS["seed-mlp"].model_config((28, 28)))
    assert can_train(mlp, TrainConfig.from_preset("seed-mlp"))
    assert not can_train(build_model(PRESETS["mlp-dropout"].model_config((28, 28))),
                         TrainConfig.from_preset("mlp-dropout"))
    assert not can_train(build_model(PRESETS["cnn"].model_config((28, 28))),
                         TrainConfig.from_preset("cnn"))
    assert not can_train(mlp, TrainConfig.from_preset("seed-mlp", schedule="onecycle"))


@pytest.mark.parametrize("preset", ["seed-20x20"])
def test_float32_training_learns(preset):
    from digitlab.data import load_dataset
    data = load_dataset("digits20")
    config = TrainConfig.from_preset(preset, epochs=5, seed=0)
    torch.manual_seed(0)
    model = build_model(PRESETS[preset].model_config((20, 20)))
    history = fit_dense(model, data.x_train, data.y_train, config, data.x_test,
                        data.y_test, Quiet()).history
    assert history[-1].val_accuracy > 0.85 and history[-1].loss < history[0].loss


def test_pixels_train_exactly_as_floats(monkeypatch):
    """8-bit pixels, made into floats a chunk at a time (a chunk here smaller than the data
    and not a whole number of batches' worth of the last one), train bit for bit as the
    float images do."""
    import digitlab.fastdense
    from digitlab.data import load_dataset
    monkeypatch.setattr(digitlab.fastdense, "_CHUNK_ROWS", 1000)
    data = load_dataset("digits20")
    config = TrainConfig.from_preset("seed-20x20", epochs=2, seed=3)
    weights, validation = [], []
    for x, xv in ((data.train_pixels, data.test_pixels), (data.x_train, data.x_test)):
        torch.manual_seed(0)
        model = build_model(PRESETS["seed-20x20"].model_config((20, 20)))
        result = fit_dense(model, x, data.y_train, config, xv, data.y_test, Quiet())
        weights.append(torch.cat([p.flatten() for p in result.model.parameters()]))
        validation.append([(h.val_loss, h.val_accuracy) for h in result.history])
    assert torch.equal(weights[0], weights[1])
    assert validation[0] == validation[1] and validation[0][0][0] is not None


def test_running_loss_shown_during_an_epoch_ends_at_the_epochs_loss():
    class Watching(Quiet):
        def __init__(self):
            self.shown = []

        def on_epoch_start(self, epoch, steps):
            self.shown.append([])

        def on_step(self, step, running_loss):
            if step % 2:  # asked now and then, as the progress bar does
                self.shown[-1].append(running_loss())

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x, y = rng.random((70, 6, 6)), rng.integers(0, 10, 70)
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=2, batch_size=16)
    model = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    reference_model = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    reference_model.load_state_dict(model.state_dict())
    watching = Watching()
    history = fit_dense(model, x, y, config, None, None, watching, dtype=torch.float64).history
    losses = reference(reference_model, x, y, config)
    for shown, stats, loss in zip(watching.shown, history, losses, strict=True):
        assert len(shown) == 3  # steps 1, 3, 5 of 5
        assert abs(shown[-1] - stats.loss) < 1e-12 and abs(stats.loss - loss) < 1e-12


def test_inputs_zero_in_every_training_row_are_left_out_exactly(monkeypatch):
    """Inputs zero in all training rows are left out of the products and of Adam: their
    weights stay as they were, bit for bit, the others train as autograd and torch.optim.Adam
    train the whole network (float64), validation on rows where they are lit uses their
    weights, and checkpoints keep the whole layout with zero moments for them."""
    import digitlab.fastdense as fastdense
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((70, 6, 6)), rng.integers(0, 10, 70)
    x[:, 0, :] = x[:, :, 5] = 0  # 11 of 36 inputs never lit
    xv, yv = rng.random((20, 6, 6)), rng.integers(0, 10, 20)  # all lit
    dead = torch.as_tensor((x.reshape(70, -1) == 0).all(0))
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=3, batch_size=16)
    model = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    ours = build_model(ModelConfig("mlp", (6, 6), (9, 7))).double()
    ours.load_state_dict(model.state_dict())
    before = ours.net[0].weight.detach().clone()
    losses = reference(model, x, y, config)
    sizes, states = [], []

    class Watching(fastdense.DenseNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sizes.append(self.sizes[0])
    monkeypatch.setattr(fastdense, "DenseNet", Watching)
    result = fit_dense(ours, x, y, config, xv, yv, Quiet(), dtype=torch.float64,
                       checkpoint=states.append)
    assert sizes == [(25, 9)]
    assert np.allclose([h.loss for h in result.history], losses, rtol=0, atol=1e-12)
    assert (weights(model) - weights(ours)).abs().max().item() < 1e-12
    after = ours.net[0].weight.detach()
    assert torch.equal(after[:, dead], before[:, dead])
    assert (after[:, ~dead] - before[:, ~dead]).abs().max() > 1e-3
    expected = torch.nn.functional.cross_entropy(model(torch.as_tensor(xv).flatten(1)),
                                                 torch.as_tensor(yv)).item()
    assert abs(result.history[-1].val_loss - expected) < 1e-12
    saved = states[-1]
    first = torch.cat([after.T, ours.net[0].bias.detach()[None]]).flatten()
    assert torch.equal(saved["params"][:first.numel()], first)
    for name in ("m", "v"):
        moments = saved[name][:first.numel()].view(37, 9)[:-1]
        assert (moments[dead] == 0).all() and (moments[~dead] != 0).all()


class Machine:
    """A fake clock and thread settings for the thread picker: a step takes ``speeds[way]``
    seconds, where way 0 is all threads and way i one thread on core i - 1."""

    def __init__(self, speeds):
        self.speeds, self.now, self.threads, self.pinned = dict(speeds), 0.0, 2, {0}
        self.log = []

    def clock(self):
        return self.now

    def set_threads(self, n):
        self.threads = n

    def pin(self, cores):
        self.pinned = set(cores)

    def way(self):
        return 0 if self.threads == 2 else 1 + sorted(self.pinned)[0]

    def run(self, picker, windows):
        """``windows`` windows of steps at the current speeds; the ways they ran on."""
        ran = []
        for _ in range(windows):
            way = self.way()
            assert way == picker.current  # the settings are what the picker says
            self.now += _ThreadPicker.WINDOW * self.speeds[way]
            ran.append(way)
            picker.window_done()
        return ran


def picker_on(machine):
    picker = _ThreadPicker(2, {0}, [0, 1], clock=machine.clock, set_threads=machine.set_threads,
                           pin=machine.pin)
    picker.start()
    return picker


def test_the_thread_picker_tries_each_way_then_keeps_the_fastest():
    machine = Machine({0: 1e-3, 1: 0.5e-3, 2: 2e-3})  # the worker's core is busy elsewhere
    picker = picker_on(machine)
    ran = machine.run(picker, 6)
    assert ran == [0, 0, 1, 2, 1, 1]  # warm-up, a window each way, then one thread on core 0
    assert machine.pinned == {0} and machine.threads == 1
    picker.pause()  # between epochs: all threads, the thread back on its own cores
    assert (machine.threads, machine.pinned) == (2, {0})
    picker.start()
    assert (machine.threads, machine.pinned) == (1, {0})


def test_the_thread_picker_stays_on_all_threads_while_they_are_fastest():
    machine = Machine({0: 1e-3, 1: 1.3e-3, 2: 1.3e-3})
    picker = picker_on(machine)
    assert machine.run(picker, 4) == [0, 0, 1, 2]
    refresh = _ThreadPicker.REFRESH / (_ThreadPicker.WINDOW * 1e-3)  # in windows
    ran = machine.run(picker, int(2.5 * refresh))
    # a try of one thread only every REFRESH seconds, each lost: back to all threads
    tries = [i for i, way in enumerate(ran) if way]
    assert len(tries) == 2 and all(ran[i + 1] == 0 for i in tries)
    assert refresh - 1 <= tries[0] <= refresh + 1 and refresh <= tries[1] - tries[0] <= refresh + 2


def test_the_thread_picker_leaves_all_threads_once_a_core_slows_and_comes_back():
    machine = Machine({0: 1e-3, 1: 1.3e-3, 2: 1.3e-3})
    picker = picker_on(machine)
    machine.run(picker, 6)
    machine.speeds.update({0: 2.5e-3, 2: 2.6e-3})  # core 1 busy with other work
    ran = machine.run(picker, 3)
    assert ran[:2] == [0, 1] or ran[:3] == [0, 2, 1]  # one thread, on the free core
    # the tries of the other ways lose, so they come less and less often
    ran = machine.run(picker, 300)
    tries = [i for i, way in enumerate(ran) if way != 1]
    gaps = np.diff(tries)
    longest = _ThreadPicker.MAX_WAIT / (_ThreadPicker.WINDOW * 1.3e-3)
    assert len(tries) >= 5 and all(b >= a for a, b in zip(gaps, gaps[1:], strict=False))
    assert longest <= gaps[-1] <= longest + 2
    machine.speeds.update({0: 1e-3, 2: 1.3e-3})  # free again: all threads win a try
    ran = machine.run(picker, int(3 * longest))
    assert ran[-1] == 0 and ran[-10:].count(0) >= 9


def test_switching_threads_mid_training_gives_the_same_weights(monkeypatch):
    """The picker's check holds here, and training with a way change every window ends with the
    weights of training on all threads throughout (on one thread: the same arithmetic)."""
    rng = np.random.default_rng(1)
    x, y = rng.random((2000, 6, 6)).astype(np.float32), rng.integers(0, 10, 2000)
    config = TrainConfig.from_preset("seed-mlp", "digits20", epochs=2)

    def trained(threads):
        torch.manual_seed(0)
        model = build_model(ModelConfig("mlp", (6, 6), (24, 12)))
        fit_dense(model, x, y, replace(config, threads=threads), None, None, Quiet())
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the picker's case, whatever this machine's default
    try:
        fixed = trained(2)
        ways = switching(monkeypatch)
        home = os.sched_getaffinity(0)
        assert torch.equal(trained(None), fixed)
        assert len(set(ways)) >= 2 and os.sched_getaffinity(0) == home
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def switching(monkeypatch) -> list:
    """Make the thread picker take another way every 8 steps; the ways it took."""
    ways = []

    def every_window(self):  # another way each window
        self._switch((self.current + 1) % self._count)
        ways.append(self.current)
    monkeypatch.setattr(_ThreadPicker, "WINDOW", 8)
    monkeypatch.setattr(_ThreadPicker, "window_done", every_window)
    return ways
