"""The optimiser and learning-rate schedule of a run, built from its training options."""
from __future__ import annotations

import itertools

import torch
from torch.optim.swa_utils import AveragedModel
from torch import nn


def make_optimizer(model: nn.Module, opt: dict) -> torch.optim.Optimizer:
    """SGD (momentum 0.9), Adam or AdamW over the trainable parameters; weight decay skips biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": opt["weight_decay"]},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    kwargs = {"lr": opt["lr"], "foreach": True}  # one kernel per step for all parameters, not one per tensor
    if opt["optimizer"] == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, nesterov=opt["nesterov"], **kwargs)
    cls = torch.optim.AdamW if opt["optimizer"] == "adamw" else torch.optim.Adam
    return cls(groups, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, opt: dict, steps_per_epoch: int):
    """The LR schedule (or None) and whether it steps every batch (True) or every epoch (False)."""
    name, epochs = opt["scheduler"], opt["epochs"]
    if name == "onecycle":
        steps, warmup = epochs * steps_per_epoch, opt["warmup_fraction"]
        if warmup * steps == 1:  # torch's OneCycleLR divides by zero when the warm-up is exactly one step
            warmup *= 1 + 1e-6
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=opt["lr"], total_steps=steps,
                                                   pct_start=warmup, div_factor=opt["div_factor"],
                                                   final_div_factor=opt["final_div_factor"]), True
    if name == "step":
        step_size = opt["step_size"] or max(epochs // 3, 1)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=opt["gamma"]), False
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=opt["plateau_factor"],
                                                          patience=opt["plateau_patience"]), False
    return None, False


def triangle(steps: int, start: float = 0.2, peak_at: float = 0.23, end: float = 0.07):
    """A per-step LR multiplier rising linearly from `start` to 1 at `peak_at` of the steps, then falling to `end`."""
    peak = max(int(peak_at * steps), 1)

    def factor(step: int) -> float:
        if step < peak:
            return start + (1 - start) * step / peak
        return 1 + (end - 1) * min((step - peak) / max(steps - peak, 1), 1.0)
    return factor


class Lookahead:
    """Lookahead-style weight averaging: every `every` steps a slow copy moves toward the weights, which jump to it.

    `step(n, decay)` with decay 0 leaves the weights alone; near 1 it holds them close to the slow copy,
    damping the last steps' noise. `finish()` leaves the slow copy in the model.
    """

    def __init__(self, model: nn.Module, every: int = 5):
        self.every = every
        self.live = [t for t in model.state_dict().values() if t.dtype.is_floating_point]
        self.slow = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def step(self, step: int, decay: float) -> None:
        """After optimisation step `step` (from 1): every `every`-th one, slow += (1 - decay) (live - slow); live = slow."""
        if step % self.every == 0:
            torch._foreach_lerp_(self.slow, self.live, 1 - decay)
            torch._foreach_copy_(self.live, self.slow)

    @torch.no_grad()
    def finish(self) -> None:
        """Put the slow weights into the model."""
        torch._foreach_copy_(self.live, self.slow)


def update_average(averaged: AveragedModel, model: nn.Module, decay: float, steps: int) -> int:
    """One step of the weights' moving average, on the device and with no read-back; returns the steps so far."""
    # AveragedModel.update_parameters reads its step counter back twice a step: a host sync on a GPU
    pairs = list(zip(itertools.chain(averaged.module.parameters(), averaged.module.buffers()),
                     itertools.chain(model.parameters(), model.buffers())))
    floats = [(m, v) for m, v in pairs if m.dtype.is_floating_point and steps > 0]
    with torch.no_grad():
        for mean, live in pairs:
            if steps == 0 or not mean.dtype.is_floating_point:
                mean.copy_(live)
        if floats:  # mean = decay * mean + (1 - decay) * live, in one call per dtype and device
            torch._foreach_lerp_([m for m, _ in floats], [v for _, v in floats], 1 - decay)
        averaged.n_averaged.add_(1)  # kept for checkpoints, never read in the loop
    return steps + 1
