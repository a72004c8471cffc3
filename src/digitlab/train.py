"""Training: Adam and cross-entropy on a preset's network, with per-epoch validation.

:func:`fit` returns what happened (history, timing, whether it was interrupted); it prints
nothing. Progress goes to an optional observer, which the CLI turns into a progress bar.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .augment import AUGMENTS, augment
from .config import TrainConfig
from .data import PIXEL_MAX
from .fastdense import can_train as can_train_fast
from .fastdense import fit_dense
from .models import predict_logits
from .optim import FusedAdam, one_cycle_lr

__all__ = ["EpochStats", "TrainResult", "fit", "resolve_device", "split_validation"]


@dataclass
class EpochStats:
    """One row of history.csv. Training loss and accuracy are running means over the epoch's
    batches (as Keras reports them); validation figures are measured after the epoch."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float


@dataclass
class TrainResult:
    """The trained model (weights of the last finished epoch) and what happened."""

    model: nn.Module
    history: list[EpochStats]
    train_seconds: float
    interrupted: bool
    stopped: str | None = None  # why training stopped early on its own (a NaN loss)


def _not_finite(stats: EpochStats) -> str | None:
    if math.isfinite(stats.loss):
        return None
    return (f"the training loss became {stats.loss} in epoch {stats.epoch}; stopped, keeping "
            f"the weights of epoch {stats.epoch - 1} (try a lower --lr)")


def resolve_device(name: str) -> str:
    """``auto`` picks a GPU where PyTorch sees one; an explicit device must be available."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda or name == "mps" and not mps:
        raise ValueError(f"device {name!r} is not available on this machine (try --device cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return name


def split_validation(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     config: TrainConfig):
    """(x_train, y_train, x_val, y_val) for the config's validation rule; val is None for
    ``none``. ``holdout`` takes a seeded random fraction, because a sorted set such as
    digits20 would otherwise lose whole classes to a tail split."""
    if config.validation == "none":
        return x, y, None, None
    if config.validation == "test":
        return x, y, x_test, y_test
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_val = config.held_out(len(x))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[train], y[train], x[val], y[val]


class _Observer:
    """What :func:`fit` reports to; subclass and override what you need."""

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...

    def on_step(self, step: int, running_loss: Callable[[], float]) -> None:
        """After each batch; call ``running_loss()`` only when showing it (it reads a tensor)."""

    def on_epoch_end(self, stats: EpochStats) -> None: ...


def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = predict_logits(model, x)
    loss = F.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def fit(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, config: TrainConfig,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        observer: _Observer | None = None, resume: dict | None = None,
        checkpoint: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` in place on images (N, H, W) and labels (N,) int64. Images are float32
    in [0, 1] or 8-bit pixels (uint8, read as pixel / 255); so are the validation images.

    Each epoch shuffles with a generator seeded from ``config.seed``. After each epoch the
    whole training state (weights, optimizer, averaged weights, random streams,
    history) goes to ``checkpoint``; passing such a state as ``resume`` continues from there
    exactly as if training had never stopped. Ctrl-C (KeyboardInterrupt) stops training and
    leaves the model with the weights of the last finished epoch; so does a loss that is no
    longer finite. Plain dense networks take the hand-written path of
    :mod:`digitlab.fastdense` (same result).
    """
    observer = observer or _Observer()
    with _cpu_settings(config.threads):
        if can_train_fast(model, config):
            return fit_dense(model, x_train, y_train, config, x_val, y_val, observer,
                             resume=resume, checkpoint=checkpoint)
        return _fit(model, x_train, y_train, config, x_val, y_val, observer, resume,
                    checkpoint)


@contextmanager
def _cpu_settings(threads: int | None):
    """Threads and denormal flushing for the duration of training, restored afterwards (both
    are process-wide and would otherwise leak into the caller's own NumPy and torch code)."""
    threads_before = torch.get_num_threads()
    flushed_before = torch.tensor(1e-40).mul(2).item() == 0.0
    if threads:
        torch.set_num_threads(threads)
    # Adam's second moments for rarely-lit border pixels decay into denormal floats, which
    # the CPU handles in microcode; flushing them to zero halves the epoch time.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushed_before)
        torch.set_num_threads(threads_before)


def _optimizer(model: nn.Module, config: TrainConfig) -> FusedAdam:
    return FusedAdam(model.parameters(), lr=config.lr, eps=config.adam_eps,
                     weight_decay=config.weight_decay, decoupled=config.optimizer == "adamw")


def _learning_rate(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The rate for each update (0-based): constant, or one cycle over the whole run."""
    if config.schedule == "onecycle":
        return lambda step: one_cycle_lr(step, total_steps, config.lr, pct_start=0.2)
    return lambda step: config.lr


def _ema_update(decay: float):
    """An exponential moving average whose decay warms up as (1 + t) / (10 + t): averaging
    from the first step at the full decay would keep batch norm's initial statistics (variance
    1) for thousands of steps and make the averaged model useless early on."""
    @torch.no_grad()
    def update(averaged: list, current: list, steps) -> None:
        t = float(steps)
        weight = 1.0 - min(decay, (1.0 + t) / (10.0 + t))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (batches seen): take the current count
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
    return update


def _floats(x: torch.Tensor) -> torch.Tensor:
    """Images as floats: 8-bit pixels made pixel / 255 as :func:`digitlab.data.to_float` makes
    them (the same float32 numbers); float images as they are."""
    return x if x.is_floating_point() else x.to(torch.float32).div_(PIXEL_MAX)


def _native_bf16(device: torch.device) -> bool:
    """bfloat16 autocast pays only where the hardware has bf16 arithmetic."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch.cpu's checks (private, but the only ones; torch._C._cpu lost them in 2.13)
        checks = (getattr(torch.cpu, name, None) for name in
                  ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(check is not None and check() for check in checks)
    return False


def _fit(model, x_train, y_train, config, x_val, y_val, observer, resume=None,
         checkpoint=None) -> TrainResult:
    device = torch.device(config.device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    # 8-bit pixels stay so (a quarter of the memory to shuffle each epoch) until a batch is taken
    x = torch.as_tensor(x_train, device=device)
    y = torch.as_tensor(y_train, device=device)
    validating = x_val is not None
    if validating:
        xv = _floats(torch.as_tensor(x_val, device=device))
        yv = torch.as_tensor(y_val, device=device)
    shuffle = torch.Generator().manual_seed(config.seed)
    augmenting = AUGMENTS[config.augment]
    jitter = torch.Generator().manual_seed(config.seed + 1)  # the augmentation's own stream
    n, bs = len(x), config.batch_size
    steps = -(-n // bs)
    optimizer, rate = _optimizer(model, config), _learning_rate(config, config.epochs * steps)
    ema = AveragedModel(model, multi_avg_fn=_ema_update(config.ema),
                        use_buffers=True) if config.ema else None
    evaluated = ema.module if ema else model  # what is validated and kept
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=config.bf16 and _native_bf16(device))
    parts = {"model": model, "optimizer": optimizer, "ema": ema}
    history = _restore(resume, parts, shuffle, jitter) if resume else []
    finished = copy.deepcopy(evaluated.state_dict())
    start, interrupted, stopped = time.perf_counter(), False, None
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            t0 = time.perf_counter()
            observer.on_epoch_start(epoch, steps)
            order = torch.randperm(n, generator=shuffle).to(device)
            xs, ys = x[order], y[order]  # one gather per epoch; the batches are then views
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            for step, i in enumerate(range(0, n, bs), 1):
                xb, yb = _floats(xs[i:i + bs]), ys[i:i + bs]
                if augmenting:
                    xb = augment(xb, augmenting, jitter)
                with autocast:
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step(rate(optimizer.steps))
                if ema:
                    ema.update_parameters(model)
                loss_sum += loss.detach() * len(yb)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen = min(i + bs, n)
                observer.on_step(step, lambda: loss_sum.item() / seen)  # noqa: B023 (called now)
            stats = EpochStats(epoch, loss_sum.item() / n, correct.item() / n, None, None,
                               time.perf_counter() - t0)
            if stopped := _not_finite(stats):
                break
            if validating:
                stats.val_loss, stats.val_accuracy = _validate(evaluated, xv, yv)
            history.append(stats)
            finished = copy.deepcopy(evaluated.state_dict())
            if checkpoint:
                checkpoint(_state(history, parts, shuffle, jitter))
            observer.on_epoch_end(stats)
    except KeyboardInterrupt:
        interrupted = True
    model.load_state_dict(finished)  # the last finished epoch's (averaged) weights
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return TrainResult(model, history, time.perf_counter() - start, interrupted, stopped)


def _state(history, parts: dict, shuffle, jitter) -> dict:
    """Everything needed to continue after the last epoch exactly as if never stopped (a
    copy: state_dict() hands out the live tensors, which training goes on changing)."""
    return {"kind": "autograd", "epoch": len(history),
            "history": [dataclasses.asdict(h) for h in history],
            **{k: copy.deepcopy(v.state_dict()) for k, v in parts.items() if v is not None},
            "shuffle": shuffle.get_state(), "jitter": jitter.get_state(),
            "torch_rng": torch.get_rng_state()}


def _restore(state: dict, parts: dict, shuffle, jitter) -> list[EpochStats]:
    if state.get("kind") != "autograd":
        raise ValueError("the checkpoint was written by another trainer")
    for key, part in parts.items():
        if part is not None:
            part.load_state_dict(state[key])
    if "schedule" in state:  # written with torch.optim's OneCycleLR, which kept the position
        parts["optimizer"].steps = state["schedule"]["last_epoch"]
    shuffle.set_state(state["shuffle"])
    jitter.set_state(state["jitter"])
    torch.set_rng_state(state["torch_rng"])
    return [EpochStats(**h) for h in state["history"]]
