"""The Muon record (airbench94_muon, K. Jordan 2024: 94.01% on CIFAR-10 in 8 epochs), in the kit's own code.

    cifar-lab fast --optimizer muon              # batch 2,000, 8 epochs, no lookahead: the record's settings

Muon steps the conv filters: Nesterov momentum orthogonalised per filter bank by a few Newton-Schulz
iterations, on weights renormalised before each step, so that every direction moves by the learning rate.
The BatchNorm shifts, the whitening bias and the head take Nesterov SGD. Every learning rate falls linearly to
zero, and the head's logits are divided by its fan-in. An experiment beyond airbench94, not a lesson: the
fast recipe's `train_fast` takes it through `make_optimizer`.
"""
from __future__ import annotations

import math

import torch

from ..models import FastNet

# The record's values, for its batch of 2,000 images and summed loss
MUON = {"filter_lr": 0.24, "filter_momentum": 0.6, "bias_lr": 0.053, "head_lr": 0.67, "momentum": 0.85,
        "weight_decay_per_image": 2e-6}
DEFAULTS = {"batch_size": 2000, "epochs": 8.0, "lookahead": False}  # the record's, where the options do not say
SGD_ONLY = ("lr", "momentum", "weight_decay", "bias_scaler")  # the fast recipe's SGD options: Muon takes MUON's


def muon_options(options: dict) -> dict:
    """The fast recipe's options for a Muon run: the record's settings where not given; SGD's own refused."""
    told = [k for k in SGD_ONLY if k in options]
    if told:
        raise ValueError(f"{told[0]} sets the sgd optimizer's steps; optimizer muon takes the record's own "
                         f"(cifar_lab.kit.muon.MUON): leave {told[0]} out, or use optimizer sgd")
    return {**DEFAULTS, **options}


def orthogonalize(g: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """A matrix with g's singular vectors and singular values near 1 (a quintic Newton-Schulz iteration).

    The coefficients are the record's: chosen for speed, they leave the singular values spread around 1
    rather than exactly 1, which trains as well.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float() / (g.norm() + 1e-7)  # every singular value <= 1, where the iteration converges
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T  # (rows <= columns): the Gram matrix x @ x.T is the smaller one
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon for the groups marked `orthogonal`, torch's Nesterov SGD (weight decay added to the gradient) for
    the others: one optimizer, so that schedules and gradient scalers treat it as any other."""

    def __init__(self, groups: list[dict], momentum: float = 0.85):
        super().__init__(groups, dict(momentum=momentum, weight_decay=0.0, orthogonal=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["orthogonal"] else p.grad.add(p, alpha=group["weight_decay"])
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"])  # Nesterov: the gradient plus the momentum ahead
                if group["orthogonal"]:
                    p.mul_(len(p) ** 0.5 / p.norm())  # weight norm fixed, so the lr alone sets the step
                    g = orthogonalize(g.reshape(len(g), -1)).reshape(p.shape)  # (out, in * kh * kw)
                p.add_(g.to(p.dtype), alpha=-group["lr"])


def make_muon(model: FastNet, opt: dict, total_steps: int, steps_per_epoch: int):
    """The record's optimizer and schedule for `train_fast(make_optimizer=make_muon)`: (Muon, LambdaLR).

    Muon on the conv filters (first group), SGD on the shifts, the head and the whitening bias, each learning
    rate falling linearly to 0 over the run, the whitening bias's over its `whiten_bias_epochs`. The head is
    rescaled as the record's: logits divided by its fan-in, weights starting at standard deviation 1.
    """
    head = model.net[-1].weight
    with torch.no_grad():
        head.div_(head.std())
    model.head_scale = 1 / head.shape[1]
    decay = MUON["weight_decay_per_image"] * opt["batch_size"]  # per step, as torch's SGD with decay / lr
    stem = [model.whitening.bias] if opt["whiten"] else []
    filters = [p for p in model.parameters() if p.ndim == 4 and p.requires_grad]
    taken = {id(p) for p in [*filters, head, *stem]}
    shifts = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    whiten_steps = max(1, math.ceil(opt["whiten_bias_epochs"] * steps_per_epoch))
    until_end = lambda step: max(0.0, 1 - step / total_steps)
    groups = [(dict(params=filters, lr=MUON["filter_lr"], momentum=MUON["filter_momentum"], orthogonal=True),
               until_end),
              (dict(params=shifts, lr=MUON["bias_lr"], weight_decay=decay / MUON["bias_lr"]), until_end),
              (dict(params=[head], lr=MUON["head_lr"], weight_decay=decay / MUON["head_lr"]), until_end),
              (dict(params=stem, lr=MUON["bias_lr"], weight_decay=decay / MUON["bias_lr"]),
               lambda step: max(0.0, 1 - step / whiten_steps))]
    groups = [(g, f) for g, f in groups if g["params"]]
    optimizer = Muon([g for g, _ in groups], momentum=MUON["momentum"])
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, [f for _, f in groups])
