"""Adam, AdamW and the one-cycle learning rate, computed as torch.optim computes them, without
torch.optim's start-up cost.

The first time a ``torch.optim`` optimizer is made, it imports ``torch._dynamo`` (its methods
are wrapped to keep the compiler out of them): 1.0 s measured here, at the start of every run
that trains through autograd. digitlab never compiles, so :class:`FusedAdam` calls the kernel
that ``torch.optim.Adam(fused=True)`` calls, with the same state and step counting, and
:func:`one_cycle_lr` is ``OneCycleLR``'s formula. tests/test_optim.py checks both against
torch.optim bit for bit. Checkpoints keep torch.optim's state-dict format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["BETAS", "FusedAdam", "one_cycle_lr"]

BETAS = (0.9, 0.999)  # Adam's defaults, in Keras and PyTorch alike
_WARMUP_DIV, _FINAL_DIV = 25.0, 1e4  # OneCycleLR's defaults: start at max/25, end at start/1e4


class FusedAdam:
    """Adam, or AdamW with ``decoupled=True``, over ``params``: one fused kernel call per step.

    ``step(lr)`` updates every parameter that has a gradient in its ``.grad``, or, with
    ``grads``, every parameter from the tensor beside it that a trainer writes its gradients
    into (plain tensors, no autograd: the dense trainer's). ``steps`` counts the calls (the
    one-cycle rate is a function of it). The parameters must share one device and dtype (the
    kernel takes one list; torch.optim would split them into one call per kind).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, eps: float,
                 weight_decay: float = 0.0, decoupled: bool = False,
                 grads: Iterable[torch.Tensor] | None = None):
        self.params = list(params)
        if len({(p.device, p.dtype) for p in self.params}) > 1:
            raise ValueError("FusedAdam needs all parameters on one device, in one dtype")
        self.lr, self.eps, self.weight_decay, self.decoupled = lr, eps, weight_decay, decoupled
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format)
                        for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format)
                           for p in self.params]
        self.state_steps = [torch.zeros((), dtype=torch.float32, device=p.device)
                            for p in self.params]
        self.steps = 0
        self._kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        # the kernel's lists, made once when the gradients always live in the same tensors
        self._lists = None if grads is None else (self.params, list(grads), self.exp_avg,
                                                  self.exp_avg_sq, [], self.state_steps)
        self._one = torch.ones((), dtype=torch.float32)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, lr: float | None = None) -> None:
        self.steps += 1
        if self._lists is not None:  # plain tensors: no autograd to keep out (a step here
            for s in self.state_steps:  # is a few microseconds of a dense trainer's step)
                s.add_(self._one)
            self._update(self._lists, lr)
            return
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not have:
            return
        lists = ([self.params[i] for i in have], [self.params[i].grad for i in have],
                 [self.exp_avg[i] for i in have], [self.exp_avg_sq[i] for i in have], [],
                 [self.state_steps[i] for i in have])
        with torch.no_grad():  # the parameters are autograd leaves, updated in place
            torch._foreach_add_(lists[5], 1)
            self._update(lists, lr)

    def _update(self, lists: tuple, lr: float | None) -> None:
        self._kernel(*lists, amsgrad=False, lr=self.lr if lr is None else lr, beta1=BETAS[0],
                     beta2=BETAS[1], weight_decay=self.weight_decay, eps=self.eps,
                     maximize=False)

    def state_dict(self) -> dict:
        """torch.optim's format (so checkpoints written before this class still resume); like
        torch.optim's, it holds the live tensors: copy it to keep it."""
        return {"state": {i: {"step": s, "exp_avg": m, "exp_avg_sq": v}
                          for i, (s, m, v) in enumerate(zip(
                              self.state_steps, self.exp_avg, self.exp_avg_sq, strict=True))},
                "param_groups": [{"lr": self.lr, "betas": BETAS, "eps": self.eps,
                                  "weight_decay": self.weight_decay, "amsgrad": False,
                                  "fused": True, "decoupled_weight_decay": self.decoupled,
                                  "params": list(range(len(self.params)))}],
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        saved = state["state"]
        group = state["param_groups"][0]["params"]
        if len(state["param_groups"]) != 1 or len(group) != len(self.params):
            raise ValueError(f"the saved optimizer state is for {len(group)} parameters in "
                             f"{len(state['param_groups'])} groups, not {len(self.params)}")
        for i, p in enumerate(self.params):
            if i in saved and saved[i]["exp_avg"].shape != p.shape:
                raise ValueError(f"the saved optimizer state of parameter {i} has shape "
                                 f"{tuple(saved[i]['exp_avg'].shape)}, not {tuple(p.shape)}")
        for i, (s, m, v) in enumerate(zip(self.state_steps, self.exp_avg, self.exp_avg_sq,
                                          strict=True)):
            if i in saved:
                s.copy_(saved[i]["step"])
                m.copy_(saved[i]["exp_avg"])
                v.copy_(saved[i]["exp_avg_sq"])
        # torch.optim's own dicts do not count calls: the most any parameter was updated
        self.steps = state.get("steps", max((int(s) for s in self.state_steps), default=0))


def one_cycle_lr(step: int, total_steps: int, max_lr: float, pct_start: float) -> float:
    """The rate for update ``step`` (0-based) of ``total_steps``: a half cosine from max_lr/25
    up to ``max_lr`` over the first ``pct_start`` of the steps, then down to max_lr/25/1e4
    (torch.optim.lr_scheduler.OneCycleLR, same arithmetic)."""
    initial = max_lr / _WARMUP_DIV
    warmup_end = float(pct_start * total_steps) - 1
    if step <= warmup_end:
        start_step, end_step, lr_from, lr_to = 0.0, warmup_end, initial, max_lr
    else:
        start_step, end_step = warmup_end, total_steps - 1
        lr_from, lr_to = max_lr, initial / _FINAL_DIV
    pct = (step - start_step) / (end_step - start_step)
    return lr_to + (lr_from - lr_to) / 2.0 * (math.cos(math.pi * pct) + 1)
