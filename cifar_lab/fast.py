"""The fast recipe: the methods airbench published (K. Jordan, arXiv 2404.00498), on the kit's batch loader.

    cifar-lab fast                  # the full recipe (10 epochs), seed 0, results in runs/fast_DATE-TIME/
    cifar-lab fast --no-lookahead   # one method switched off, as the ablation of notebook 06 does

FastNet (models.py) with a frozen 2x2 patch-whitening stem, identity-initialised convolutions and
shift-only BatchNorm; Nesterov SGD on the summed, label-smoothed loss with a large batch, a triangular
LR schedule and lookahead-style weight averaging; 2-pixel translations and alternating flips; at the end,
test-time augmentation over mirrors and 1-pixel shifts. Every method is a switch of `options.FAST`.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn

from . import devices
from .checkpoints import describe_data
from .data import CIFAR10Data
from .evaluate import loss_and_accuracy, predict
from .files import environment_info
from .history import History
from .models import FastNet, flops_per_image
from .optim import Lookahead, triangle
from .options import FAST, check, defaults, describe
from .training import TrainingDiverged, TrainingInterrupted, progress_bar, train_step

WHITENING_IMAGES = 5000  # training images whose 2x2 patches set the whitening stem
LOOKAHEAD_EVERY = 5  # optimisation steps between lookahead updates
TTA_PASSES = {0: 1, 1: 2, 2: 6}  # forward passes per test image at each test-time augmentation level


def fast_options(**options) -> dict:
    """The fast recipe's options: `options.FAST`'s defaults with `options` checked and put over them."""
    return {**check(defaults(FAST), FAST), **check(options, FAST)}


def make_fastnet(data: CIFAR10Data, opt: dict, device: torch.device) -> FastNet:
    """FastNet as the options say, its stem whitened from the first training images if `whiten`."""
    model = FastNet(data.num_classes, opt["widths"], opt["frozen_scale"], opt["activation"], opt["dirac"])
    model.to(device)
    if opt["whiten"]:
        images = data.train_images[:WHITENING_IMAGES].to(device)
        mean, std = data.mean.view(1, 3, 1, 1).to(device), data.std.view(1, 3, 1, 1).to(device)
        model.whiten((images.float() / 255 - mean) / std)
    return model


def make_sgd(model: FastNet, opt: dict) -> torch.optim.SGD:
    """Nesterov SGD whose LR and weight decay are per 1,024 images of summed loss, BatchNorm shifts at a higher LR.

    torch's SGD multiplies weight decay by the LR, so each group's decay is divided by its LR: the decay per
    step then follows the schedule but not the group's LR multiplier.
    """
    per_kilostep = 1024 * (1 + 1 / (1 - opt["momentum"]))  # summed loss and momentum's gain, per 1,024 images
    lr = opt["lr"] / per_kilostep
    decay = opt["weight_decay"] * opt["batch_size"] / per_kilostep
    norms = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    shifts = [p for p in trainable if id(p) in norms] if opt["frozen_scale"] else []
    others = [p for p in trainable if not any(p is s for s in shifts)]
    groups = [dict(params=others, lr=lr, weight_decay=decay / lr)]
    if shifts:
        shift_lr = lr * opt["bias_scaler"]
        groups.append(dict(params=shifts, lr=shift_lr, weight_decay=decay / shift_lr))
    return torch.optim.SGD(groups, momentum=opt["momentum"], nesterov=True, foreach=True)


def train_fast(data: CIFAR10Data, *, device: str | torch.device | None = None, progress: bool = True,
               verbose: bool = True, make_optimizer: Callable | None = None, **options) -> tuple[FastNet, History]:
    """Train FastNet with the fast recipe; return the model (lookahead's slow weights) and its History.

    `make_optimizer(model, options, total_steps, steps_per_epoch)` -> (optimizer, schedule) replaces the
    recipe's SGD and triangular schedule. The history's info holds the options, `flops` (of training and of each
    epoch's validation) and `elapsed` (seconds since the start at each epoch's end). The options
    (`options.FAST`) and their defaults:
    """
    opt = fast_options(**options)
    device = device if isinstance(device, torch.device) else devices.get_device(device)
    devices.configure(device)
    devices.set_seed(opt["seed"])
    model = make_fastnet(data, opt, device)
    channels_last = devices.use_channels_last(device.type, True)
    model.to(memory_format=torch.channels_last if channels_last else torch.preserve_format)
    loader = data.loader("train", opt["batch_size"], crop_padding=opt["translate"], padding_mode="reflect",
                         flip=True, alternate_flip=opt["alternate_flip"], seed=opt["seed"], device=device,
                         channels_last=channels_last)
    val_loader = data.loader("val", 1000, device=device, channels_last=channels_last)
    total_steps = math.ceil(opt["epochs"] * len(loader))
    if make_optimizer is None:
        optimizer = make_sgd(model, opt)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, triangle(total_steps))
    else:  # another optimizer, e.g. cifar_lab.kit.muon's; its first group holds the conv filters
        optimizer, schedule = make_optimizer(model, opt, total_steps, len(loader))
    lookahead = Lookahead(model, LOOKAHEAD_EVERY) if opt["lookahead"] else None
    criterion = nn.CrossEntropyLoss(label_smoothing=opt["label_smoothing"], reduction="sum")
    precision = devices.precision_for(device)
    autocast, scaler = devices.autocast(device, precision), devices.grad_scaler(device, precision)
    per_image = flops_per_image(model)
    history = History(info=dict(params=dict(opt, widths=list(opt["widths"])), recipe="fast", device=str(device),
                                precision=precision, flops_per_image=per_image, flops=0, elapsed=[],
                                data=describe_data(data), environment=environment_info(), status="running"))
    if verbose:
        print(f"Training FastNet (fast recipe) on {devices.describe(device, precision)}: {len(loader.labels):,} "
              f"images, {total_steps} steps of {opt['batch_size']} ({opt['epochs']:g} epochs)")
    step, elapsed = 0, 0.0
    try:
        for epoch in range(1, math.ceil(opt["epochs"]) + 1):
            t0 = time.perf_counter()
            if opt["whiten"]:  # the whitening's bias learns for a few epochs, then freezes with its weights
                model.whitening.bias.requires_grad_(epoch <= opt["whiten_bias_epochs"])
            model.train()
            sums, seen = torch.zeros(2, device=device), 0
            for images, labels in _bar(loader, epoch, opt, progress):
                logits, loss = train_step(model, images, labels, criterion, optimizer, autocast, scaler)
                schedule.step()
                step += 1
                if lookahead is not None:
                    lookahead.step(step, 0.95 ** LOOKAHEAD_EVERY * (step / total_steps) ** 3)
                sums += torch.stack([loss.detach().float(), (logits.argmax(1) == labels).sum().float()])
                seen += len(labels)
                if step == total_steps:
                    break
            if step == total_steps and lookahead is not None:
                lookahead.finish()  # the slow weights are the result
            history.info["flops"] += 3 * per_image * seen  # forward and a backward of twice its cost
            _end_epoch(history, model, val_loader, epoch, opt, sums, seen, optimizer, verbose, t0, elapsed)
            elapsed += history.seconds[-1]
            history.info["elapsed"].append(elapsed)
    except KeyboardInterrupt:
        history.info["status"] = f"interrupted after {len(history)} finished epochs"
        raise TrainingInterrupted(f"training interrupted after {len(history)} epochs; the fast recipe keeps no "
                                  f"checkpoints (a run takes minutes on a GPU): run it again", history) from None
    history.info["status"] = "completed"
    return model, history


train_fast.__doc__ += "\n" + describe(FAST)


def _bar(loader, epoch: int, opt: dict, progress: bool):
    return progress_bar(loader, f"epoch {epoch}/{math.ceil(opt['epochs'])}", progress)


def _end_epoch(history: History, model: nn.Module, val_loader, epoch: int, opt: dict, sums: torch.Tensor,
               seen: int, optimizer, verbose: bool, t0: float, elapsed: float) -> None:
    """Validate (no test-time augmentation), count its FLOPs, record and print the epoch."""
    logits, labels = predict(model, val_loader)
    val_loss, val_acc = loss_and_accuracy(logits, labels)
    history.info["flops"] += history.info["flops_per_image"] * len(labels)
    train_loss, train_acc = (sums / max(seen, 1)).tolist()
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"the training loss became {train_loss} in epoch {epoch}: the learning rate "
                               f"({opt['lr']} per 1,024 images) is probably too high; try a smaller lr")
    history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                   lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
    if verbose:
        epochs = math.ceil(opt["epochs"])
        print(f"epoch {epoch:3d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  val loss {val_loss:.4f} "
              f"acc {val_acc:.4f}  lr {history.lr[-1]:.2e}  {history.seconds[-1]:.1f}s ({elapsed + history.seconds[-1]:.0f}s "
              f"in all)", flush=True)


def tta_flops(history: History, test_images: int, tta: int) -> int:
    """Forward FLOPs of testing `test_images` images at test-time augmentation level `tta`."""
    return history.info["flops_per_image"] * test_images * TTA_PASSES[tta]


def fast_flops(history: History) -> list[float]:
    """FLOPs (training and validation) done by the end of each epoch of a `train_fast` history."""
    share = [1.0] * len(history)  # every epoch trains the same images, but a fractional last one
    if history.info["params"]["epochs"] % 1:
        share[-1] = history.info["params"]["epochs"] % 1
    return [history.info["flops"] * sum(share[:i + 1]) / sum(share) for i in range(len(history))]


def fit_flops(history: History, flops_per_image: int, train_images: int, val_images: int) -> list[float]:
    """FLOPs (training and validation) done by the end of each epoch of a `fit` history (whole batches only)."""
    batch = history.info["params"]["batch_size"]
    per_epoch = flops_per_image * (3 * (train_images // batch * batch) + val_images)  # forward + backward; val
    return [per_epoch * (i + 1) for i in range(len(history))]


def first_reaching(history: History, target: float, flops: list[float]) -> dict:
    """Epoch, seconds and FLOPs at the first epoch whose validation accuracy reaches `target` (epoch None: never)."""
    for i, acc in enumerate(history.val_acc):
        if acc >= target:
            return {"epoch": history.epoch[i], "seconds": sum(history.seconds[:i + 1]), "flops": flops[i],
                    "val_acc": acc, "reached": True}
    return {"epoch": None, "seconds": sum(history.seconds), "flops": flops[-1] if flops else 0.0,
            "val_acc": max(history.val_acc, default=None), "reached": False}
