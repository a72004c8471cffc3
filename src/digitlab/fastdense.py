"""A hand-written trainer for the dense presets: the same network, loss, Adam and data order
as :func:`digitlab.train.fit`, several times faster on a CPU.

For networks this small, PyTorch's per-operation bookkeeping (autograd's graph, module
calls, the optimizer's Python loop over parameters) costs more than the arithmetic. Here
the forward and backward passes are written out with matrix products into buffers allocated
once (the large float32 products through oneDNN, see :func:`onednn_linear`), all weights and
biases live in one flat tensor updated by a single fused Adam call per step, the epoch's
shuffled rows are gathered a few thousand at a time into a reused buffer and made floats
there (8-bit pixels stay 8-bit until then), nothing is read back to Python inside an epoch,
the loop runs in inference mode (no autograd bookkeeping on any operation: 4% of a step), and
on two cores the steps run on one thread while the other core is busy with other work
(:class:`_ThreadPicker`).
Inputs that are zero in every training row (67 of MNIST's 784 pixels, on its border) are left
out of the first layer's products and of Adam's update: their weights would only ever get
zero gradients, so Adam would never move them (no weight decay here), and they stay exactly
as they are. That is 8% less arithmetic for the 784-128-64-10 network, and the same result.
tests/test_fastdense.py checks it against autograd and ``torch.optim.Adam`` in float64
(agreement to ~1e-12), and the oneDNN products against torch.mm's in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data import PIXEL_MAX
from .models import MLP
from .optim import FusedAdam

__all__ = ["DenseNet", "can_train", "fit_dense"]

_CHUNK_ROWS = 4096  # 8-bit rows made into floats at a time: 13 MB for MNIST, reused
# The output layer is stored OUT_ALIGN columns wide: with 10 columns, its matrix products and
# the softmax take about twice as long here. The extra columns have zero weights and a bias
# of _MASKED, so their logits are _MASKED, their softmax is exactly 0, their gradients are
# exactly 0 and Adam never moves them: the 10 real columns train exactly as they would alone.
OUT_ALIGN = 16
_MASKED = -2.0 ** 100  # exact in float32 and float64
# Products of at least this many multiply-adds go to oneDNN (see onednn_linear); smaller ones
# start faster through torch.mm. Measured on a Zen 5 with batch 32: 785x128 and 257x512
# weights 25-40% faster through oneDNN, 129x256 15% slower, the smaller ones up to 2.5 times
# slower.
_ONEDNN_MIN_MACS = 2 ** 21
# AMD's first processor family whose AVX-512 units are a full 512 bits wide (Zen 5). Zen 4
# (family 25) runs AVX-512 as two 256-bit halves: there oneDNN's products were no faster than
# MKL's, and the seed-mlp and seed-wide training steps 5-10% slower through oneDNN.
_ONEDNN_FAMILY = 26


def _amd_family() -> int | None:
    """The processor family of an AMD x86-64 processor (Linux's /proc/cpuinfo says; None for
    other processors and where there is no /proc/cpuinfo)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            first = info.read().split("\n\n", 1)[0]  # the first processor's lines
    except OSError:
        return None
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    if fields.get("vendor_id") != "AuthenticAMD":
        return None
    family = fields.get("cpu family", "")
    return int(family) if family.isdigit() else None


@functools.cache
def onednn_linear():
    """oneDNN's float32 product ``linear(a, w, None, "none", [], "")`` = a @ w.T, the kernel
    PyTorch's own compiler calls for linear layers on a CPU, on AMD processors of family 26
    (Zen 5) and later; None elsewhere (:func:`checked_onednn` says why else).
    torch.mm goes to MKL, which runs 256-bit code on AMD processors; oneDNN picks its kernels
    by instruction set, AVX-512 where there is one (450 against 200 GFLOP/s for 1024x1024
    products on a Zen 5). On Intel processors MKL runs its AVX-512 code too, and elsewhere
    torch.mm has other libraries: not measured against oneDNN, so left as they are."""
    family = _amd_family()
    return checked_onednn() if family is not None and family >= _ONEDNN_FAMILY else None


def checked_onednn():
    """oneDNN's product (see :func:`onednn_linear`) where this build has it and it gives what
    ``torch.mm`` gives on a small probe; None otherwise."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        linear = torch.ops.mkldnn._linear_pointwise
        # fixed inputs: a probe must not draw from torch's global random stream
        a = torch.arange(15, dtype=torch.float32).reshape(3, 5).sin()
        w = torch.arange(20, dtype=torch.float32).reshape(4, 5).cos()
        ok = torch.allclose(linear(a, w, None, "none", [], ""), a @ w.T, rtol=1e-5, atol=1e-6)
    except (AttributeError, RuntimeError):
        return None
    return linear if ok else None


def can_train(model: nn.Module, config: TrainConfig) -> bool:
    """Whether ``model`` and ``config`` are within what this trainer does exactly: a plain
    MLP (no dropout) with constant-rate Adam and plain cross-entropy, on the CPU."""
    return (isinstance(model, MLP) and not any(isinstance(m, nn.Dropout)
                                               for m in model.modules())
            and recipe_fits(config))


def recipe_fits(config: TrainConfig) -> bool:
    """The recipe half of :func:`can_train`, known before any network is built."""
    return (config.optimizer == "adam" and config.weight_decay == 0
            and config.schedule == "constant" and config.label_smoothing == 0
            and config.augment == "none" and not config.ema and config.device == "cpu")


class DenseNet:
    """An MLP's weights in one flat tensor, with forward and backward written out.

    Each layer's weights and bias are one (in + 1, out) block whose last row is the bias, and
    every layer's input carries a last column of ones: z_l = [h_l, 1] @ W_l. So the forward
    pass is one matrix product per layer and the backward pass gets weight and bias gradients
    from one product too. h_{l+1} = relu(z_l); the last z is the logits, in a block padded to
    :attr:`width` columns (``OUT_ALIGN``); :meth:`unpadded` gives the plain layout.
    """

    def __init__(self, model: MLP, dtype: torch.dtype = torch.float32,
                 kept: torch.Tensor | None = None):
        """``kept``: the indices of the model's inputs the first layer trains on (None: all).
        The weights of the others are frozen: kept outside :attr:`params`, as the model has
        them, and only used by :meth:`first_block`, for inputs that have all of them."""
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.kept = kept
        self.model_sizes = [(m.in_features, m.out_features) for m in linears]
        self.sizes = [*self.model_sizes]
        if kept is not None:
            self.sizes[0] = (len(kept), self.sizes[0][1])
        self.n_out = self.sizes[-1][1]
        self.width = -(-self.n_out // OUT_ALIGN) * OUT_ALIGN  # of the stored output layer
        self._stored = [*self.sizes[:-1], (self.sizes[-1][0], self.width)]
        total = sum((i + 1) * o for i, o in self._stored)
        self.params = torch.zeros(total, dtype=dtype)
        self.grads = torch.zeros(total, dtype=dtype)
        self.W, self.G = self._views(self.params), self._views(self.grads)
        self._W_t = [W[:-1].T for W in self.W[1:]]  # for the backward products dz @ W^T
        with torch.no_grad():
            # the first layer's (in + 1, out) block for all of the model's inputs, whose
            # frozen rows first_block fills in (none to fill when every input is kept)
            self._frozen = None if kept is None else torch.cat(
                [linears[0].weight.T, linears[0].bias[None]]).to(dtype)
            for W, m in zip(self.W, linears, strict=True):
                weight = m.weight if W is not self.W[0] or kept is None else m.weight[:, kept]
                W[:-1, :m.out_features].copy_(weight.T)
                W[-1, :m.out_features].copy_(m.bias)
            self.W[-1][-1, self.n_out:] = _MASKED
        self._buffers: dict[int, tuple] = {}
        self._linear = onednn_linear() if dtype == torch.float32 else None

    def _onednn(self, n: int, size: tuple[int, int]) -> bool:
        """Whether the product of n rows with a layer of ``size`` (in, out) goes to oneDNN."""
        return self._linear is not None and n * (size[0] + 1) * size[1] >= _ONEDNN_MIN_MACS

    def _views(self, flat: torch.Tensor, shapes=None) -> list[torch.Tensor]:
        """Each layer's (in + 1, out) block of ``flat``, laid out as stored (``shapes``
        None) or as ``self.sizes``."""
        out, at = [], 0
        for i, o in self._stored if shapes is None else shapes:
            out.append(flat[at:at + (i + 1) * o].view(i + 1, o))
            at += (i + 1) * o
        return out

    def first_block(self, flat: torch.Tensor | None = None, weights: bool = True):
        """The first layer's (in + 1, out) block of ``flat`` (default :attr:`params`) for all
        of the model's inputs: the rows of the inputs not kept are the frozen weights
        (``weights``) or zeros (Adam's moments, which never leave zero there)."""
        block = self._views(self.params if flat is None else flat)[0]
        if self.kept is None:
            return block
        full = self._frozen.clone() if weights else torch.zeros_like(self._frozen)
        full[self.kept] = block[:-1]
        full[-1] = block[-1]
        return full

    def unpadded(self, flat: torch.Tensor, weights: bool = True) -> torch.Tensor:
        """``flat`` (laid out as :attr:`params`) without the output layer's extra columns,
        for all of the model's inputs (see :meth:`first_block`): each layer's (in + 1, out)
        block in turn, the layout checkpoints keep."""
        blocks = [self.first_block(flat, weights), *self._views(flat)[1:]]
        return torch.cat([W[:, :o].flatten()
                          for W, (_, o) in zip(blocks, self.model_sizes, strict=True)])

    def load_unpadded(self, flat: torch.Tensor, saved: torch.Tensor,
                      weights: bool = True) -> None:
        """Copy ``saved`` (laid out as :meth:`unpadded` gives) into ``flat``; with
        ``weights``, the frozen weights too."""
        expected = sum((i + 1) * o for i, o in self.model_sizes)
        if saved.numel() != expected:
            raise ValueError(f"the checkpoint holds {saved.numel()} weights; this network has "
                             f"{expected}")
        blocks = self._views(saved, self.model_sizes)
        if self.kept is not None:
            if weights:
                self._frozen.copy_(blocks[0])
            blocks[0] = blocks[0][torch.cat([self.kept, torch.tensor([len(blocks[0]) - 1])])]
        for W, S in zip(self._views(flat), blocks, strict=True):
            W[:, :S.shape[1]].copy_(S)

    def copy_to(self, model: MLP) -> None:
        """Write the weights back into ``model``'s layers."""
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        blocks = [self.first_block(), *self.W[1:]]
        with torch.no_grad():
            for W, m in zip(blocks, linears, strict=True):
                m.weight.copy_(W[:-1, :m.out_features].T)
                m.bias.copy_(W[-1, :m.out_features])

    def inputs(self, n: int, kept: bool = True) -> torch.Tensor:
        """A buffer for n inputs, the kept ones or all of the model's, with the ones column
        already in place."""
        sizes = self.sizes if kept else self.model_sizes
        return torch.ones(n, sizes[0][0] + 1, dtype=self.params.dtype)

    def _bufs(self, n: int):
        """Activations for a batch of ``n``, with the views the passes use, made once per
        batch size."""
        if n not in self._buffers:
            dtype = self.params.dtype
            z = [torch.empty(n, o, dtype=dtype) for _, o in self._stored]
            h = [torch.ones(n, o + 1, dtype=dtype) for _, o in self.sizes[:-1]]
            dh = [torch.empty(n, i, dtype=dtype) for i, _ in self.sizes[1:]]
            onednn = [self._onednn(n, size) for size in self.sizes]
            self._buffers[n] = (z, h, [a[:, :-1] for a in h], [a.T for a in h], dh, onednn)
        return self._buffers[n]

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None,
                first: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (n, :attr:`width`) for inputs (n, features + 1) whose last column is ones,
        written into ``out`` when given; the columns after the first :attr:`n_out` are
        padding (see ``OUT_ALIGN``). The inputs are the kept ones, or all of the model's
        with their ``first`` block (:meth:`first_block`)."""
        n = x.shape[0]  # (not len(x): Tensor.__len__ is a Python call, 2 us a step)
        z, h, relu_out, _, _, onednn = self._bufs(n)
        last = len(self.W) - 1
        for layer, W in enumerate(self.W[:-1]):
            if layer == 0 and first is not None:
                W = first
            inp = x if layer == 0 else h[layer - 1]
            if onednn[layer]:
                torch.clamp_min(self._linear(inp, W.T, None, "none", [], ""), 0,
                                out=relu_out[layer])
            else:
                torch.mm(inp, W, out=z[layer])
                torch.clamp_min(z[layer], 0, out=relu_out[layer])
        return torch.mm(h[last - 1] if last else x, self.W[last],
                        out=z[last] if out is None else out)

    def backward(self, x: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor,
                 x_t: torch.Tensor | None = None) -> None:
        """Gradients of the mean cross-entropy of ``logits`` (n, :attr:`width`) against
        one-hot ``targets`` as wide into ``self.grads``. ``x_t``: ``x.T``, when the caller
        keeps one."""
        n = x.shape[0]
        _, _, relu_out, h_t, dh, onednn = self._bufs(n)
        dz = torch.softmax(logits, 1).sub_(targets).mul_(1 / n)  # the mean loss's gradient
        for layer in range(len(self.sizes) - 1, -1, -1):
            inp_t = h_t[layer - 1] if layer else (x.T if x_t is None else x_t)
            torch.mm(inp_t, dz, out=self.G[layer])
            if layer:
                if onednn[layer]:  # dz @ W^T, W without its bias row
                    grad = self._linear(dz, self.W[layer][:-1], None, "none", [], "")
                else:
                    grad = torch.mm(dz, self._W_t[layer - 1], out=dh[layer - 1])
                dz = torch.ops.aten.threshold_backward.grad_input(  # relu's gradient
                    grad, relu_out[layer - 1], 0, grad_input=dh[layer - 1])


def _pin_main_thread(cores: set[int]) -> None:
    os.sched_setaffinity(0, cores)  # 0: the calling thread, on Linux


class _ThreadPicker:
    """Runs a training's steps on all of its threads, or on one thread on one core, whichever
    is faster now.

    Each product of a step is split evenly between the threads, so every step waits for the
    slower core. Where the cores are shared with other work (a virtual machine's vCPUs beside
    other tenants' threads, a laptop busy with something else), one core can run at half speed
    or less for seconds at a time: on a 2-vCPU cloud machine, a single-threaded probe often ran
    half as fast on one vCPU as on the other, and seed-wide's epochs then took 2.5-3.0 s on two
    threads against 1.35-1.4 s on one (1.0-1.05 s on two with both cores free).

    So the steps are timed :data:`WINDOW` at a time. After a first window to warm up, each way
    runs one window: all threads, then one thread on each of ``cores`` (where the threads are
    bound to cores, as the CLI binds them; otherwise one thread where the system puts it), and
    the fastest goes on. From then on a window now and then tries another way, and the faster of
    the latest two goes on: on one thread, :data:`WAIT` seconds after the last try (doubled
    after each try that lost, up to :data:`MAX_WAIT`); on all threads, as soon as a window is
    slower than one thread has ever been, or :data:`REFRESH` seconds after the last try. Only
    for steps whose arithmetic is the same on one thread as on all (:func:`_same_on_one_thread`):
    the weights come out the same whichever way each step ran.
    """

    WINDOW = 128  # steps: 30-100 ms for the seed networks at batch 32
    WAIT, MAX_WAIT = 0.15, 1.0  # seconds from a try to the next on one thread (doubling)
    REFRESH = 4.0  # seconds from a try to the next on all threads, however fast they are

    def __init__(self, threads: int, home: set[int] | None = None, cores: Sequence[int] = (),
                 clock=time.perf_counter, set_threads=torch.set_num_threads,
                 pin=_pin_main_thread):
        """``home``: the calling thread's cores, given back to it for all threads."""
        self.full, self._home, self._cores = threads, home, list(cores)
        self._clock, self._set_threads, self._pin = clock, set_threads, pin
        self.current = 0  # 0: all threads; i: one thread, on cores[i - 1] if there are cores
        self._count = 1 + max(1, len(self._cores))
        self._latest: dict[int, float] = {}  # seconds a step, in each way's latest window
        self._best: dict[int, float] = {}  # seconds a step, in each way's fastest window
        self._since, self._wait, self._turn = 0.0, self.WAIT, 0
        self._trying_from: int | None = None
        self._warm = False
        self._survey: list[int] | None = list(range(1, self._count))  # each way once, first
        self._started = 0.0

    def _use(self, way: int) -> None:
        if way == 0:
            if self._home is not None and self._cores:
                self._pin(self._home)
            self._set_threads(self.full)
        else:
            self._set_threads(1)
            if self._cores:
                self._pin({self._cores[way - 1]})

    def start(self) -> None:
        """Before a run of steps (an epoch's): the way chosen last, and its window's start."""
        self._use(self.current)
        self._started = self._clock()

    def pause(self) -> None:
        """After a run of steps: all threads for what comes between (validation, saving)."""
        self._use(0)

    def window_done(self) -> None:
        """After the last of :data:`WINDOW` steps: time them, and choose the next window's way."""
        seconds = self._clock() - self._started
        step, way = seconds / self.WINDOW, self.current
        if not self._warm:  # the first window warms up (first touches, the pool's start)
            self._warm, self._started = True, self._clock()
            return
        self._latest[way] = step
        self._best[way] = min(self._best.get(way, step), step)
        # all threads slower than one thread has been: a core is busy with other work
        slow = way == 0 and step > min((b for w, b in self._best.items() if w), default=step)
        self._since += seconds
        if self._survey:  # each way in turn
            self._switch(self._survey.pop(0))
        elif self._survey is not None:  # then the fastest
            self._survey, self._since = None, 0.0
            self._switch(min(self._latest, key=self._latest.get))
        elif self._trying_from is not None:  # a try ends: keep the faster
            before, self._trying_from = self._trying_from, None
            lost = self._latest[before] <= step
            self._wait = min(2 * self._wait, self.MAX_WAIT) if lost else self.WAIT
            self._since = 0.0
            self._switch(before if lost else way)
        elif (self._since >= self._wait and (way or slow)) or self._since >= self.REFRESH:
            others = [w for w in range(self._count) if w != way]
            self._trying_from = way
            self._switch(others[self._turn % len(others)])
            self._turn += 1
        elif way == 0 and not slow:
            self._wait = self.WAIT  # all threads at their speed: try again soon once they slow
        self._started = self._clock()

    def _switch(self, way: int) -> None:
        if way != self.current:
            self._use(way)
            self.current = way


def _same_on_one_thread(net: DenseNet, adam: FusedAdam, x: torch.Tensor,
                        targets: torch.Tensor, threads: int) -> bool:
    """Whether a step's forward and backward products and Adam's update come out the same,
    bit for bit, on one thread as on ``threads`` (the math library may split a product's sums
    differently by thread count). Leaves the network's weights and Adam's state as they were."""
    def step(count: int) -> tuple[torch.Tensor, ...]:
        torch.set_num_threads(count)
        logits = net.forward(x).clone()
        net.backward(x, targets, logits)
        g, p = net.grads.clone(), net.params.clone()
        update = FusedAdam([p], lr=adam.lr, eps=adam.eps, grads=[g])  # on copies
        update.step()
        return logits, g, p, update.exp_avg[0], update.exp_avg_sq[0]

    try:
        return all(torch.equal(a, b) for a, b in zip(step(threads), step(1), strict=True))
    finally:
        torch.set_num_threads(threads)


def _as_inputs(rows: torch.Tensor, inputs: torch.Tensor) -> None:
    """Copy ``rows`` (float, or uint8 pixels made pixel / 255 as in :func:`digitlab.data.to_float`)
    into the first rows of ``inputs``, whose ones column stays."""
    out = inputs[:len(rows), :-1]
    out.copy_(rows)
    if rows.dtype == torch.uint8:
        out.div_(PIXEL_MAX)  # in the buffer's dtype (torch.div from uint8 would be float32)


class _RunningLoss:
    """The mean cross-entropy of an epoch's first rows, from the logits its steps kept: worked
    out only when asked (the progress bar, the epoch's end), and only for new rows."""

    def __init__(self, logits: torch.Tensor, labels: torch.Tensor):
        self.logits, self.labels = logits, labels
        self.reset()

    def reset(self) -> None:
        self.total, self.done = 0.0, 0

    def through(self, rows: int) -> float:
        if rows > self.done:
            self.total += float(torch.nn.functional.cross_entropy(
                self.logits[self.done:rows], self.labels[self.done:rows], reduction="sum"))
            self.done = rows
        return self.total / rows


def _rows(images: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Images (N, H, W) as rows (N, H*W): 8-bit pixels kept so (made floats by
    :func:`_as_inputs` a chunk at a time), float images in ``dtype``."""
    x = torch.as_tensor(images).flatten(1)
    return x if x.dtype == torch.uint8 else x.to(dtype)


def _kept_inputs(x: torch.Tensor, model: MLP, resume: dict | None) -> torch.Tensor | None:
    """The indices of the inputs that are not zero in every row of ``x`` (N, F), or that a
    checkpoint's Adam moments say were trained; None when that is all of them."""
    if not len(x):
        return None
    used = (x.amax(0) != 0) | (x.amin(0) != 0)
    if resume:
        out = next(m for m in model.modules() if isinstance(m, nn.Linear)).out_features
        for moments in (resume["m"], resume["v"]):
            used |= moments[:(len(used) + 1) * out].view(-1, out)[:-1].ne(0).any(1)
    return None if used.all() else used.nonzero().flatten()


def _picker(net: DenseNet, adam: FusedAdam, x: torch.Tensor, one_hot: torch.Tensor, bs: int,
            config: TrainConfig) -> _ThreadPicker | None:
    """A :class:`_ThreadPicker` when the threads are PyTorch's default (``config.threads``
    unset: a count the user gave is kept throughout) and two (with more, one thread would
    rarely be faster than all of them, however busy one core: not measured, so left as it is),
    and a step's arithmetic is the same on one thread (checked on the first training rows)."""
    threads = torch.get_num_threads()
    if config.threads is not None or threads != 2 or len(x) < bs:
        return None
    inputs = net.inputs(bs)
    _as_inputs(x[:bs], inputs)
    with torch.inference_mode():
        same = _same_on_one_thread(net, adam, inputs, one_hot[:bs], threads)
    if not same:
        return None
    home, cores = _thread_cores()
    return _ThreadPicker(threads, home, cores[:threads])


def _thread_cores() -> tuple[set[int] | None, list[int]]:
    """The calling thread's cores, and where it is bound to one core (OpenMP's OMP_PROC_BIND,
    as the CLI sets for training: each thread of the pool on a core of its own), that core and
    then the cores of the process's other threads; no cores where the thread is not bound or
    the system does not say (then one thread runs where the system puts it)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, []
    home = os.sched_getaffinity(0)
    if len(home) != 1:
        return home, []
    cores = set()
    try:
        for task in os.listdir("/proc/self/task"):
            cores |= os.sched_getaffinity(int(task))
    except OSError:  # a thread that ended meanwhile, or no /proc
        return home, []
    return home, sorted(home) + sorted(cores - home)


def _validate(net: DenseNet, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000):
    loss = correct = 0.0
    buf, first = net.inputs(chunk, kept=False), net.first_block()
    for i in range(0, len(x), chunk):
        _as_inputs(x[i:i + chunk], buf)
        xb = buf[:len(x[i:i + chunk])]
        logits = net.forward(xb, first=first)
        loss += torch.nn.functional.cross_entropy(logits, y[i:i + chunk], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + chunk]).sum()
    return float(loss) / len(x), float(correct) / len(x)


def fit_dense(model: MLP, x_train: np.ndarray, y_train: np.ndarray, config: TrainConfig,
              x_val, y_val, observer, dtype: torch.dtype = torch.float32,
              resume: dict | None = None, checkpoint=None):
    """Train ``model`` as :func:`digitlab.train.fit` would (same shuffling stream, same
    Adam, same checkpoints and stops), faster. Returns a :class:`~digitlab.train.TrainResult`;
    the model ends with the weights of the last finished epoch."""
    # train's row and result types, imported here: train imports this module
    from .train import EpochStats, TrainResult, _not_finite

    x = _rows(x_train, dtype)
    kept = _kept_inputs(x, model, resume)
    net = DenseNet(model, dtype, kept)
    if kept is not None:  # the training rows without the inputs that are zero in all of them
        x = torch.from_numpy(np.take(x.numpy(), kept.numpy(), axis=1))
    y = torch.as_tensor(y_train, dtype=torch.long)
    validating = x_val is not None
    if validating:
        xv = _rows(x_val, dtype)
        yv = torch.as_tensor(y_val, dtype=torch.long)
    for labels in (y, yv) if validating else (y,):  # the padding would take 10-15 silently
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < net.n_out:
            raise ValueError(f"labels must be 0 to {net.n_out - 1}, not "
                             f"{int(labels.min())} to {int(labels.max())}")
    one_hot = torch.nn.functional.one_hot(y, net.width).to(dtype)  # 0 in the padding
    adam = FusedAdam([net.params], lr=config.lr, eps=config.adam_eps, grads=[net.grads])
    m, v, step = adam.exp_avg[0], adam.exp_avg_sq[0], adam.state_steps[0]  # as checkpointed
    shuffle = torch.Generator().manual_seed(config.seed)
    history = []
    if resume:
        if resume.get("kind") != "dense":
            raise ValueError("the checkpoint was written by another trainer")
        for mine, saved in ((net.params, "params"), (m, "m"), (v, "v")):
            net.load_unpadded(mine, resume[saved], weights=saved == "params")
        step.copy_(resume["step"])
        shuffle.set_state(resume["shuffle"])
        history = [EpochStats(**h) for h in resume["history"]]
    n, bs = len(x), config.batch_size
    steps = -(-n // bs)
    ts, ys = torch.empty_like(one_hot), torch.empty_like(y)
    chunk = bs * max(1, _CHUNK_ROWS // bs)  # rows gathered and made into floats at a time
    picked = torch.empty(min(chunk, n), x.shape[1], dtype=x.dtype)
    inputs = net.inputs(min(chunk, n))
    in_views: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    # every step's logits, kept for the epoch's loss and accuracy: no host sync inside it
    logits = torch.empty(n, one_hot.shape[1], dtype=dtype)
    batch_logits, batch_targets = logits.split(bs), ts.split(bs)
    running = _RunningLoss(logits, ys)
    finished = net.params.clone()
    start, interrupted, stopped = time.perf_counter(), False, None
    picker = _picker(net, adam, x, one_hot, bs, config)
    window = _ThreadPicker.WINDOW
    try:
        with torch.inference_mode():  # no autograd bookkeeping in the loop
            for epoch in range(len(history) + 1, config.epochs + 1):
                t0 = time.perf_counter()
                observer.on_epoch_start(epoch, steps)
                order = torch.randperm(n, generator=shuffle)
                torch.index_select(one_hot, 0, order, out=ts)
                torch.index_select(y, 0, order, out=ys)
                running.reset()
                if picker:
                    picker.start()
                for k, i in enumerate(range(0, n, bs)):
                    if i % chunk == 0:  # the next chunk's rows, in this epoch's order
                        chosen = order[i:i + chunk]
                        _as_inputs(torch.index_select(x, 0, chosen, out=picked[:len(chosen)]),
                                   inputs)
                    rows = (i % chunk, min(bs, n - i))
                    if rows not in in_views:
                        xb = inputs[rows[0]:sum(rows)]
                        in_views[rows] = xb, xb.T
                    xb, xb_t = in_views[rows]
                    net.backward(xb, batch_targets[k], net.forward(xb, out=batch_logits[k]), xb_t)
                    adam.step()
                    if picker and k % window == window - 1:
                        picker.window_done()
                    observer.on_step(k + 1, lambda: running.through(i + rows[1]))  # noqa: B023
                if picker:
                    picker.pause()
                stats = EpochStats(epoch, running.through(n),
                                   float((logits.argmax(1) == ys).sum()) / n, None, None,
                                   time.perf_counter() - t0)
                if stopped := _not_finite(stats):
                    break
                if validating:
                    stats.val_loss, stats.val_accuracy = _validate(net, xv, yv)
                history.append(stats)
                finished.copy_(net.params)
                if checkpoint:
                    checkpoint({"kind": "dense", "epoch": epoch,
                                "history": [dataclasses.asdict(h) for h in history],
                                "params": net.unpadded(net.params),
                                "m": net.unpadded(m, weights=False),
                                "v": net.unpadded(v, weights=False), "step": step.clone(),
                                "shuffle": shuffle.get_state()})
                observer.on_epoch_end(stats)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if picker:
            picker.pause()  # the thread count and the cores the caller had
    net.params.copy_(finished)
    net.copy_to(model)
    return TrainResult(model.eval(), history, time.perf_counter() - start, interrupted,
                       stopped)
