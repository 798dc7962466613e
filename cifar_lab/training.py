"""`fit`: the training loop of notebook 01, with the options of `options.TRAINING`.

The loop itself sits at the top of `fit`; setting up, resuming, validating and checkpointing are the
small helpers below it. Under torchrun (after `distributed.init_distributed()`) each process trains its
share of every batch in DistributedDataParallel; metrics are summed over processes, rank 0 prints and writes.
"""
from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import devices, distributed
from .checks import check_output_dir
from .checkpoints import describe_data, describe_model, load_checkpoint, save_checkpoint
from .data import CIFAR10Data
from .evaluate import predict
from .files import environment_info
from .history import History
from .optim import make_optimizer, make_scheduler
from .options import AUGMENTATION, TRAINING, check, defaults, describe


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or the kernel's stop button during `fit`; `.history` holds the finished epochs."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def fit(model: nn.Module, data: CIFAR10Data, *,
        checkpoint_dir: str | Path | None = None,  # where best.pt, last.pt and history.json go (None: nowhere)
        resume: str | Path | None = None,  # a last.pt of an unfinished run with the same options, to continue
        device: str | torch.device | None = None,  # None: CUDA, then MPS, then CPU
        progress: bool = True,  # a progress bar per epoch
        verbose: bool = True,  # one line per epoch
        **options) -> History:
    """Train any `nn.Module` mapping (B, 3, 32, 32) images to (B, classes) logits; return its `History`.

    Each epoch: shuffle, augment, forward, cross-entropy, backward, optimizer and LR step for every
    batch; then validation loss and accuracy. Ctrl-C (the kernel's stop button) saves what is done and
    raises `TrainingInterrupted`, so a notebook stops there. The options and their defaults:
    """
    t = _setup(model, data, {**defaults(), **check(options)}, device, checkpoint_dir, progress, verbose)
    start = _resume(t, resume) if resume is not None else _fresh(t)
    _announce(t, start)
    try:
        for epoch in range(start + 1, t.opt["epochs"] + 1):
            t0 = time.perf_counter()
            model.train()
            sums, seen = torch.zeros(2, device=t.device), 0  # summed loss and right answers, on the device
            for step, (images, labels) in enumerate(_bar(t, epoch), 1):
                logits, loss = train_step(t.forward, images, labels, t.criterion, t.optimizer, t.autocast, t.scaler)
                if t.averaged is not None:
                    t.averaged_steps = update_average(t.averaged, model, t.opt["ema"], t.averaged_steps)
                if t.per_step:
                    t.scheduler.step()
                sums[0] += loss.detach() * len(labels)
                sums[1] += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if step % 25 == 0 or step == len(t.train_loader):  # one host sync every 25 steps
                    _check_finite(t, sums[0].item() / seen, epoch, step)
            if _end_epoch(t, epoch, sums, seen, time.perf_counter() - t0):
                break
    except KeyboardInterrupt:
        raise _interrupted(t) from None
    except RuntimeError as e:
        if devices.is_out_of_memory(e):
            raise RuntimeError(f"the {t.device.type.upper()} device ran out of memory with batch_size="
                               f"{t.opt['batch_size']}; try batch_size={max(t.opt['batch_size'] // 2, 2)} "
                               f"or a smaller model") from e
        raise
    return _finish(t)


fit.__doc__ += "\n" + describe(TRAINING)


def train_step(forward: nn.Module, images: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
               optimizer: torch.optim.Optimizer, autocast, scaler=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step: forward and loss (under autocast), backward, optimizer step; returns (logits, loss)."""
    with autocast:
        logits = forward(images)
        loss = criterion(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # fp16: scale the loss so small gradients survive, skip steps whose gradients overflowed
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return logits, loss


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


# ---------------------------------------------------------------- the helpers of fit

@dataclass
class _Training:
    """Everything one `fit` call works with."""

    model: nn.Module
    forward: nn.Module  # the model, in DistributedDataParallel under torchrun
    opt: dict
    device: torch.device
    precision: str
    train_loader: object
    val_loader: object
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    per_step: bool
    autocast: object
    scaler: object
    averaged: AveragedModel | None
    history: History
    out: Path | None  # checkpoint folder (rank 0 only)
    progress: bool
    verbose: bool
    best_score: float | None = None
    best_state: dict | None = None
    stale: int = 0  # epochs since the best
    averaged_steps: int = 0  # steps taken into the moving average (the host's copy of its counter)

    @property
    def evaluated(self) -> nn.Module:
        """The weights validated and checkpointed: the moving average when there is one."""
        return self.averaged.module if self.averaged is not None else self.model


def _setup(model, data, opt, device, checkpoint_dir, progress, verbose) -> _Training:
    """Device, memory layout, loaders, loss, optimizer and schedule; under torchrun this rank's share."""
    if not isinstance(data, CIFAR10Data):
        raise TypeError(f"data must be the CIFAR10Data returned by load_cifar10, not {type(data).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    rank, world = distributed.rank(), distributed.world_size()
    if len(data.val_labels) < world:
        raise ValueError("the validation split is empty; load the data with val_size > 0")
    devices.set_seed(opt["seed"] + rank)
    if world > 1:
        device = torch.device("cpu") if str(device) == "cpu" else distributed.rank_device()
    device = device if isinstance(device, torch.device) else devices.get_device(device)
    devices.configure(device)
    channels_last = devices.use_channels_last(device.type, any(isinstance(m, nn.Conv2d) for m in model.modules()))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    shard = dict(rank=rank, world_size=world, device=device, channels_last=channels_last)
    train_loader = data.loader("train", opt["batch_size"], **{k: opt[k] for k in AUGMENTATION}, seed=opt["seed"],
                               **shard)
    _check_output(model, data, device)
    precision = devices.precision_for(device)
    optimizer = make_optimizer(model, opt)
    scheduler, per_step = make_scheduler(optimizer, opt, len(train_loader))
    averaged = AveragedModel(model, device=device, use_buffers=True) \
        if opt["ema"] else None  # on the device: its step counter too (no copy per step, NCCL can send it)
    params = {k: _listed(v) for k, v in opt.items()}  # as a JSON history reads back
    history = History(info=dict(params=params, seed=opt["seed"], device=str(device), precision=precision,
                                processes=world, model=describe_model(model), data=describe_data(data),
                                environment=environment_info(), status="running"))
    out = check_output_dir(checkpoint_dir, "checkpoint_dir") if checkpoint_dir is not None and rank == 0 else None
    return _Training(model, distributed.wrap(model, device), opt, device, precision, train_loader,
                     data.loader("val", 500, **shard), nn.CrossEntropyLoss(label_smoothing=opt["label_smoothing"]),
                     optimizer, scheduler, per_step, devices.autocast(device, precision),
                     devices.grad_scaler(device, precision), averaged, history, out,
                     progress and rank == 0, verbose and rank == 0)  # one process talks


def _check_output(model: nn.Module, data: CIFAR10Data, device: torch.device) -> None:
    """A plain error before training when the model does not map (B, 3, 32, 32) to (B, classes)."""
    mean, std = data.mean.view(1, 3, 1, 1).to(device), data.std.view(1, 3, 1, 1).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model((data.val_images[:2].to(device).float() / 255 - mean) / std)
    except RuntimeError as e:
        raise ValueError(f"{type(model).__name__} cannot take a batch of CIFAR-10 images (B, 3, 32, 32): "
                         f"{str(e).splitlines()[0]}") from e
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (2, data.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{type(model).__name__} maps 2 images to {shape}, but the data has {data.num_classes} "
                         f"classes: its output must be (B, {data.num_classes}) (check num_classes)")


def _resume(t: _Training, path: str | Path) -> int:
    """Load weights, optimizer, schedule, RNG and history of an unfinished run's last.pt; returns its epoch."""
    state = load_checkpoint(path, t.model, map_location="cpu")  # optimizer state moves with load_state_dict
    if "optimizer" not in state:
        raise ValueError(f"{path} holds only the weights of one epoch (best.pt), not a run to continue; "
                         f"resume from last.pt in the same folder")
    saved = state["history"]["info"]["params"]
    differ = {k: (saved.get(k), v) for k, v in t.opt.items() if _listed(saved.get(k)) != _listed(v)}
    if differ:
        raise ValueError(f"{path} comes from a run with other options; resume it with the same ones: " +
                         ", ".join(f"{k}={old!r} (not {new!r})" for k, (old, new) in differ.items()))
    if state["history"]["info"].get("status") != "running":
        raise ValueError(f"{path} belongs to a run that ended ({state['history']['info']['status']}): "
                         f"nothing to resume")
    t.optimizer.load_state_dict(state["optimizer"])
    if t.scheduler is not None and state.get("scheduler"):
        t.scheduler.load_state_dict(state["scheduler"])
    if t.averaged is not None and state.get("ema"):
        t.averaged.load_state_dict(state["ema"])
        t.averaged_steps = int(t.averaged.n_averaged)  # read once here, not in every step
    t.history = History.from_dict(state["history"])
    t.best_score, t.stale = state.get("best_score"), state.get("stale", 0)
    t.train_loader.epoch = state["epoch"]  # the batch order and augmentation of the next epoch, as uninterrupted
    torch.set_rng_state(state["rng"].cpu())  # dropout's random stream
    if state.get("cuda_rng") is not None and t.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), t.device)
    return state["epoch"]


def _listed(value):
    """A tuple as a list (a checkpoint keeps erasing_scale as a tuple, a JSON record as a list), else the value."""
    return list(value) if isinstance(value, tuple) else value


def _fresh(t: _Training) -> int:
    """0 (a new run), unless the checkpoint folder already holds a run (finished or not) that this one would overwrite."""
    last = t.out / "last.pt" if t.out is not None else None
    if last is None or not last.exists():
        return 0
    try:
        history = load_checkpoint(last)["history"]
        done, planned, status = len(history["epoch"]), history["info"]["params"]["epochs"], history["info"]["status"]
    except (RuntimeError, KeyError, TypeError):  # unreadable: nothing there to continue
        return 0
    if status == "running":
        raise ValueError(f"{t.out} holds an unfinished run ({done} of {planned} epochs done); continue it with "
                         f"resume='{last}' and the same options, or choose another checkpoint_dir (or delete "
                         f"{t.out}) to start again")
    raise ValueError(f"{t.out} holds a finished run ({done} epochs, {status}) whose best.pt and last.pt a new run "
                     f"would overwrite; choose another checkpoint_dir (in a notebook: run the course.start cell "
                     f"again for a new run folder), or delete {t.out} to replace it")


def _announce(t: _Training, start: int) -> None:
    if t.verbose:
        world = distributed.world_size()
        where = devices.describe(t.device, t.precision)
        where += f" x {world} processes ({torch.distributed.get_backend()})" if world > 1 else ""
        print(f"Training {type(t.model).__name__} on {where}: {len(t.train_loader.labels):,} images, "
              f"{len(t.train_loader)} steps of {t.opt['batch_size']} per epoch, epochs {start + 1}..{t.opt['epochs']}")
        warning = devices.cpu_only_build_warning() if t.device.type == "cpu" else None
        if warning:
            print(f"WARNING: {warning}")


def _bar(t: _Training, epoch: int):
    return progress_bar(t.train_loader, f"epoch {epoch}/{t.opt['epochs']}", t.progress)


def progress_bar(batches: Iterable, desc: str, progress: bool = True) -> Iterable:
    """The batches, under a progress bar unless progress is off or TQDM_DISABLE is set (as in exported reports)."""
    if not progress or os.environ.get("TQDM_DISABLE"):  # tqdm's notebook bar ignores TQDM_DISABLE itself
        return batches
    from tqdm.auto import tqdm
    return tqdm(batches, desc=desc, leave=False)


def _check_finite(t: _Training, loss: float, epoch: int, step: int) -> None:
    """Stop with a plain message when the loss diverged."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the training loss became {loss} at epoch {epoch}, step {step}: the "
                               f"learning rate ({t.opt['lr']}) is probably too high; try a smaller lr")


def _averages(loss: torch.Tensor, right: torch.Tensor, seen: int) -> tuple[float, float]:
    """Mean loss and accuracy from sums, added up over all processes first."""
    # float32 on the device: exact counts up to 16 million images, and MPS has no float64
    sums = torch.stack([loss.float(), right.float(), torch.tensor(float(seen), device=loss.device)])
    loss, right, seen = distributed.all_reduce_sum(sums).tolist()
    return loss / seen, right / seen


def _end_epoch(t: _Training, epoch: int, sums: torch.Tensor, seen: int, seconds: float) -> bool:
    """Validate, step the epoch schedule, record, checkpoint; True when early stopping ends the run."""
    distributed.broadcast_buffers(t.model)  # ranks saw different batches: all take rank 0's BN statistics
    if t.averaged is not None:
        distributed.broadcast_buffers(t.averaged)
    train_loss, train_acc = _averages(sums[0], sums[1], seen)
    logits, labels = predict(t.evaluated, t.val_loader)
    val_loss, val_acc = _averages(nn.functional.cross_entropy(logits, labels, reduction="sum").to(t.device),
                                  (logits.argmax(1) == labels).sum().to(t.device), len(labels))
    if t.scheduler is not None and not t.per_step:
        t.scheduler.step(val_loss) if t.opt["scheduler"] == "plateau" else t.scheduler.step()
    t.history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                     lr=t.optimizer.param_groups[0]["lr"], seconds=seconds + 0.0)
    score = val_acc if t.opt["monitor"] == "val_acc" else -val_loss  # higher is better
    improved = t.best_score is None or score > t.best_score
    if improved:
        t.best_score, t.stale = score, 0
        t.best_state = {k: v.detach().clone() for k, v in t.evaluated.state_dict().items()}
    else:
        t.stale += 1
    if t.verbose:
        print(f"epoch {epoch:3d}/{t.opt['epochs']}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  lr {t.history.lr[-1]:.2e}  {seconds:.1f}s"
              + ("  *" if improved else ""), flush=True)
    stop = t.opt["early_stopping"] is not None and t.stale >= t.opt["early_stopping"] and epoch < t.opt["epochs"]
    if stop:
        t.history.info["status"] = (f"early stopped at epoch {epoch} ({t.opt['monitor']} did not improve for "
                                    f"{t.opt['early_stopping']} epochs)")
    elif epoch == t.opt["epochs"]:
        t.history.info["status"] = "completed"
    _save(t, epoch, improved)  # last.pt of an ended run says so: it cannot be resumed
    if stop and t.verbose:
        print(t.history.info["status"])
    return stop


def _save(t: _Training, epoch: int, improved: bool) -> None:
    """best.pt when the epoch improved, last.pt (everything needed to resume) and history.json."""
    if t.out is None:
        return
    if improved:
        save_checkpoint(t.out / "best.pt", t.evaluated, epoch=epoch, best_score=t.best_score)
    save_checkpoint(t.out / "last.pt", t.model, epoch=epoch, best_score=t.best_score, stale=t.stale,
                    optimizer=t.optimizer.state_dict(), scheduler=t.scheduler.state_dict() if t.scheduler else None,
                    history=t.history.to_dict(), rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state(t.device) if t.device.type == "cuda" else None,
                    ema=t.averaged.state_dict() if t.averaged is not None else None)
    t.history.save(t.out / "history.json")


def _interrupted(t: _Training) -> TrainingInterrupted:
    """The exception that stops a notebook after Ctrl-C, saying what was kept and how to continue."""
    done = len(t.history)
    t.history.info["status"] = f"interrupted after {done} finished epochs"
    where = (f"; its checkpoints are in {t.out}: fit(..., resume='{t.out / 'last.pt'}') with the same options "
             f"continues it") if t.out is not None and done else \
        "; no epoch had finished, so there is nothing to continue: run it again" if t.out is not None else \
        "; nothing was saved (no checkpoint_dir)"
    message = f"training interrupted after {done} of {t.opt['epochs']} epochs{where}"
    if t.verbose:
        print(message)
    return TrainingInterrupted(message, t.history)


def _finish(t: _Training) -> History:
    """Averaged (then best, if asked) weights into the model; the history saved with how the run ended."""
    if t.averaged is not None:
        t.model.load_state_dict(t.averaged.module.state_dict())
    if t.opt["restore_best"] and t.best_state is not None:
        t.model.load_state_dict(t.best_state)
        scores = t.history.val_acc if t.opt["monitor"] == "val_acc" else [-v for v in t.history.val_loss]
        t.history.info["restored_best_epoch"] = t.history.epoch[scores.index(max(scores))]
    if t.out is not None:
        t.history.save(t.out / "history.json")
    return t.history
