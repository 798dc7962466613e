"""`fit`: the training loop of notebook 01, with the options of `options.TRAINING`.

The loop itself sits at the top of `fit`; setting up, resuming, validating and checkpointing are the
small helpers below it. Under torchrun (after `distributed.init_distributed()`) each process trains its
share of every batch in DistributedDataParallel; metrics are summed over processes, rank 0 prints and writes.
"""
from __future__ import annotations

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
from .checkpoints import describe_data, describe_model, load_checkpoint, save_checkpoint
from .data import CIFAR10Data
from .evaluate import check_model_output, predict
from .files import check_output_dir, environment_info
from .history import History
from .optim import make_optimizer, make_scheduler, update_average
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
    run = _setup(model, data, {**defaults(), **check(options)}, device, checkpoint_dir, progress, verbose)
    start = _resume(run, resume) if resume is not None else _fresh(run)
    _announce(run, start)
    try:
        for epoch in range(start + 1, run.opt["epochs"] + 1):
            t0 = time.perf_counter()
            model.train()
            sums, seen = torch.zeros(2, device=run.device), 0  # summed loss and right answers, on the device
            batches = progress_bar(run.train_loader, f"epoch {epoch}/{run.opt['epochs']}", run.progress)
            for step, (images, labels) in enumerate(batches, 1):
                logits, loss = train_step(run.forward, images, labels, run.criterion, run.optimizer, run.autocast, run.scaler)
                if run.averaged is not None:
                    run.averaged_steps = update_average(run.averaged, model, run.opt["ema"], run.averaged_steps)
                if run.per_step:
                    run.scheduler.step()
                sums[0] += loss.detach() * len(labels)
                sums[1] += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if step % 25 == 0 or step == len(run.train_loader):  # one host sync every 25 steps
                    _check_finite(run, sums[0].item() / seen, epoch, step)
            if _end_epoch(run, epoch, sums, seen, time.perf_counter() - t0):
                break
    except KeyboardInterrupt:
        raise _interrupted(run) from None
    except RuntimeError as e:
        if devices.is_out_of_memory(e):
            raise RuntimeError(f"the {run.device.type.upper()} device ran out of memory with batch_size="
                               f"{run.opt['batch_size']}; try batch_size={max(run.opt['batch_size'] // 2, 2)} "
                               f"or a smaller model") from e
        raise
    return _finish(run)


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


# ---------------------------------------------------------------- the helpers of fit

@dataclass
class _Run:
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


def _setup(model, data, opt, device, checkpoint_dir, progress, verbose) -> _Run:
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
    if len(train_loader) == 0:
        raise ValueError(f"the training split has {len(data.train_labels)} images, fewer than one batch of "
                         f"{opt['batch_size']}: give more training images or a smaller batch_size")
    check_model_output(model, data, device)
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
    return _Run(model=model, forward=distributed.wrap(model, device), opt=opt, device=device, precision=precision,
                train_loader=train_loader, val_loader=data.loader("val", 500, **shard),
                criterion=nn.CrossEntropyLoss(label_smoothing=opt["label_smoothing"]), optimizer=optimizer,
                scheduler=scheduler, per_step=per_step, autocast=devices.autocast(device, precision),
                scaler=devices.grad_scaler(device, precision), averaged=averaged, history=history, out=out,
                progress=progress and rank == 0, verbose=verbose and rank == 0)  # one process talks


def _resume(run: _Run, path: str | Path) -> int:
    """Load weights, optimizer, schedule, RNG and history of an unfinished run's last.pt; returns its epoch."""
    try:
        state = load_checkpoint(path, run.model, map_location="cpu")  # optimizer state moves with load_state_dict
    except (OSError, RuntimeError) as e:
        raise ValueError(f"cannot continue from it: {e}; best.pt beside it still holds the best weights") from e
    if "optimizer" not in state:
        raise ValueError(f"{path} holds only the weights of one epoch (best.pt), not a run to continue; "
                         f"resume from last.pt in the same folder")
    saved = state["history"]["info"]["params"]
    differ = {k: (saved.get(k), v) for k, v in run.opt.items() if _listed(saved.get(k)) != _listed(v)}
    if differ:
        raise ValueError(f"{path} comes from a run with other options; resume it with the same ones: " +
                         ", ".join(f"{k}={old!r} (not {new!r})" for k, (old, new) in differ.items()))
    if state["history"]["info"].get("status") != "running":
        raise ValueError(f"{path} belongs to a run that ended ({state['history']['info']['status']}): "
                         f"nothing to resume")
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state.get("scheduler"):
        run.scheduler.load_state_dict(state["scheduler"])
    if run.averaged is not None and state.get("ema"):
        run.averaged.load_state_dict(state["ema"])
        run.averaged_steps = int(run.averaged.n_averaged)  # read once here, not in every step
    run.history = History.from_dict(state["history"])
    run.best_score, run.stale = state.get("best_score"), state.get("stale", 0)
    run.train_loader.epoch = state["epoch"]  # the batch order and augmentation of the next epoch, as uninterrupted
    torch.set_rng_state(state["rng"].cpu())  # dropout's random stream
    if state.get("cuda_rng") is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), run.device)
    return state["epoch"]


def _listed(value):
    """A tuple as a list (a checkpoint keeps erasing_scale as a tuple, a JSON record as a list), else the value."""
    return list(value) if isinstance(value, tuple) else value


def _fresh(run: _Run) -> int:
    """0 (a new run), unless the checkpoint folder holds any result of an earlier run (readable or not, as a
    best.pt beside a truncated or deleted last.pt): a new run never writes over one."""
    found = [n for n in ("best.pt", "last.pt", "history.json") if run.out is not None and (run.out / n).exists()]
    if not found:
        return 0
    try:
        history = load_checkpoint(run.out / "last.pt")["history"]
        done, planned, status = len(history["epoch"]), history["info"]["params"]["epochs"], history["info"]["status"]
    except (OSError, RuntimeError, KeyError, TypeError):  # missing or unreadable: the other files still count
        done, planned, status = None, None, None
    if status == "running":
        raise ValueError(f"{run.out} holds an unfinished run ({done} of {planned} epochs done); continue it with "
                         f"resume='{run.out / 'last.pt'}' and the same options, or choose another checkpoint_dir")
    raise ValueError(f"{run.out} holds the results of an earlier run ({', '.join(found)}) that a new run would "
                     f"overwrite; choose another checkpoint_dir (in a notebook: run the course.start cell again for "
                     f"a new run folder), or delete {run.out} yourself to replace it")


def _announce(run: _Run, start: int) -> None:
    if run.verbose:
        world = distributed.world_size()
        where = devices.describe(run.device, run.precision)
        where += f" x {world} processes ({torch.distributed.get_backend()})" if world > 1 else ""
        print(f"Training {type(run.model).__name__} on {where}: {len(run.train_loader.labels):,} images, "
              f"{len(run.train_loader)} steps of {run.opt['batch_size']} per epoch, epochs {start + 1}..{run.opt['epochs']}")
        warning = devices.cpu_only_build_warning() if run.device.type == "cpu" else None
        if warning:
            print(f"WARNING: {warning}")


def progress_bar(batches: Iterable, desc: str, progress: bool = True) -> Iterable:
    """The batches, under a progress bar unless progress is off or TQDM_DISABLE is set (as in exported reports)."""
    if not progress or os.environ.get("TQDM_DISABLE"):  # tqdm's notebook bar ignores TQDM_DISABLE itself
        return batches
    from tqdm.auto import tqdm
    return tqdm(batches, desc=desc, leave=False)


def _check_finite(run: _Run, loss: float, epoch: int, step: int) -> None:
    """Stop with a plain message when the loss diverged."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the training loss became {loss} at epoch {epoch}, step {step}: the "
                               f"learning rate ({run.opt['lr']}) is probably too high; try a smaller lr")


def _averages(loss: torch.Tensor, right: torch.Tensor, seen: int) -> tuple[float, float]:
    """Mean loss and accuracy from sums, added up over all processes first."""
    # float32 on the device: exact counts up to 16 million images, and MPS has no float64
    sums = torch.stack([loss.float(), right.float(), torch.tensor(float(seen), device=loss.device)])
    loss, right, seen = distributed.all_reduce_sum(sums).tolist()
    return loss / seen, right / seen


def _end_epoch(run: _Run, epoch: int, sums: torch.Tensor, seen: int, seconds: float) -> bool:
    """Validate, step the epoch schedule, record, checkpoint; True when early stopping ends the run."""
    distributed.broadcast_buffers(run.model)  # ranks saw different batches: all take rank 0's BN statistics
    if run.averaged is not None:
        distributed.broadcast_buffers(run.averaged)
    train_loss, train_acc = _averages(sums[0], sums[1], seen)
    logits, labels = predict(run.evaluated, run.val_loader)
    val_loss, val_acc = _averages(nn.functional.cross_entropy(logits, labels, reduction="sum").to(run.device),
                                  (logits.argmax(1) == labels).sum().to(run.device), len(labels))
    if run.scheduler is not None and not run.per_step:
        run.scheduler.step(val_loss) if run.opt["scheduler"] == "plateau" else run.scheduler.step()
    run.history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                     lr=run.optimizer.param_groups[0]["lr"], seconds=seconds + 0.0)
    score = val_acc if run.opt["monitor"] == "val_acc" else -val_loss  # higher is better
    improved = run.best_score is None or score > run.best_score
    if improved:
        run.best_score, run.stale = score, 0
        run.best_state = {k: v.detach().clone() for k, v in run.evaluated.state_dict().items()}
    else:
        run.stale += 1
    if run.verbose:
        print(f"epoch {epoch:3d}/{run.opt['epochs']}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  lr {run.history.lr[-1]:.2e}  {seconds:.1f}s"
              + ("  *" if improved else ""), flush=True)
    stop = run.opt["early_stopping"] is not None and run.stale >= run.opt["early_stopping"] and epoch < run.opt["epochs"]
    if stop:
        run.history.info["status"] = (f"early stopped at epoch {epoch} ({run.opt['monitor']} did not improve for "
                                    f"{run.opt['early_stopping']} epochs)")
    elif epoch == run.opt["epochs"]:
        run.history.info["status"] = "completed"
    _save(run, epoch, improved)  # last.pt of an ended run says so: it cannot be resumed
    if stop and run.verbose:
        print(run.history.info["status"])
    return stop


def _save(run: _Run, epoch: int, improved: bool) -> None:
    """best.pt when the epoch improved, last.pt (everything needed to resume) and history.json."""
    if run.out is None:
        return
    if improved:
        save_checkpoint(run.out / "best.pt", run.evaluated, epoch=epoch, best_score=run.best_score)
    save_checkpoint(run.out / "last.pt", run.model, epoch=epoch, best_score=run.best_score, stale=run.stale,
                    optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict() if run.scheduler else None,
                    history=run.history.to_dict(), rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
                    ema=run.averaged.state_dict() if run.averaged is not None else None)
    run.history.save(run.out / "history.json")


def _interrupted(run: _Run) -> TrainingInterrupted:
    """The exception that stops a notebook after Ctrl-C, saying what was kept and how to continue."""
    done = len(run.history)
    run.history.info["status"] = f"interrupted after {done} finished epochs"
    where = (f"; its checkpoints are in {run.out}: fit(..., resume='{run.out / 'last.pt'}') with the same options "
             f"continues it") if run.out is not None and done else \
        "; no epoch had finished, so there is nothing to continue: run it again" if run.out is not None else \
        "; nothing was saved (no checkpoint_dir)"
    message = f"training interrupted after {done} of {run.opt['epochs']} epochs{where}"
    if run.verbose:
        print(message)
    return TrainingInterrupted(message, run.history)


def _finish(run: _Run) -> History:
    """Averaged (then best, if asked) weights into the model; the history saved with how the run ended."""
    if run.averaged is not None:
        run.model.load_state_dict(run.averaged.module.state_dict())
    if run.opt["restore_best"] and run.best_state is not None:
        run.model.load_state_dict(run.best_state)
        scores = run.history.val_acc if run.opt["monitor"] == "val_acc" else [-v for v in run.history.val_loss]
        run.history.info["restored_best_epoch"] = run.history.epoch[scores.index(max(scores))]
    if run.out is not None:
        run.history.save(run.out / "history.json")
    return run.history
