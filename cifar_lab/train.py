"""Training: device choice, seeding, the `History` of a run, checkpoints, and `fit`."""
from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import distributed
from .checks import check_choice, check_float, check_int
from .data import CIFAR10Data
from .evaluate import predict
from .files import atomic_write, environment_info, load_json, save_json

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "step", "plateau", "none")
MONITORS = ("val_loss", "val_acc")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def get_device(prefer: str | None = None, strict: bool = False) -> torch.device:
    """CUDA if there, else Apple MPS, else CPU; `prefer` asks for one ('cuda', 'mps', 'cpu').

    A preferred device that is missing falls back (with a warning), or raises if `strict`.
    """
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                 "cpu": True}
    if prefer is not None:
        name = check_choice("device", str(prefer).split(":")[0], available)
        if available[name]:
            return torch.device(prefer)
        message = f"device {prefer!r} was asked for but is not available on this machine"
        if strict:
            raise RuntimeError(message)
        import warnings
        warnings.warn(message + "; falling back to the best available device", stacklevel=2)
    return torch.device(next(n for n in ("cuda", "mps", "cpu") if available[n]))


# ---------------------------------------------------------------- the record of a run

@dataclass
class History:
    """Per-epoch metrics of a run, plus its setting (parameters, seed, versions, device)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # learning rate at the end of the epoch
    seconds: list[float] = field(default_factory=list)  # wall time of the epoch, validation included
    info: dict = field(default_factory=dict)  # parameters, seed, versions, device, how the run ended

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def append(self, **row: float) -> None:
        for key in self.COLUMNS:
            getattr(self, key).append(row[key])

    def __len__(self) -> int:
        return len(self.epoch)

    @property
    def best_epoch(self) -> int | None:
        """Epoch with the highest validation accuracy."""
        return self.epoch[int(np.argmax(self.val_acc))] if self.val_acc else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{k: d.get(k, [] if k != "info" else {}) for k in cls.COLUMNS + ("info",)})

    def save(self, path: str | Path) -> Path:
        """Write as JSON (or CSV if the name ends in .csv), atomically."""
        path = Path(path)
        if path.suffix == ".csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(self.COLUMNS)
            writer.writerows(zip(*(getattr(self, c) for c in self.COLUMNS)))
            return atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="w")
        return save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> "History":
        """Read a history written by `save` (JSON or CSV)."""
        path = Path(path)
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            return cls(**{c: [(int if c == "epoch" else float)(r[c]) for r in rows] for c in cls.COLUMNS})
        return cls.from_dict(load_json(path))


# ---------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = "cifar_lab-checkpoint-1"


def _describe(model: nn.Module) -> dict:
    config = json.loads(json.dumps(getattr(model, "config", None), default=str))  # as it reads back from JSON
    return {"class": type(model).__name__, "config": config}


def save_checkpoint(path: str | Path, model: nn.Module, **state) -> Path:
    """Save the model's weights (and any extra state: optimizer, epoch, history...) atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "model": _describe(model), "model_state": model.state_dict(), **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, model: nn.Module | None = None, map_location="cpu") -> dict:
    """Read a checkpoint (and load its weights into `model` if given), with plain errors for wrong files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"{path} is not a readable checkpoint: the file is corrupt or truncated "
                           f"({type(e).__name__})") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"{path} is not a cifar_lab checkpoint (written by save_checkpoint / fit)")
    if model is not None:
        saved, wanted = payload["model"], _describe(model)
        if saved["class"] != wanted["class"]:
            raise RuntimeError(f"{path} holds a {saved['class']} (config {saved['config']}), "
                               f"not a {wanted['class']}; build the matching model first")
        try:
            model.load_state_dict(payload["model_state"])
        except RuntimeError as e:
            raise RuntimeError(f"{path} holds a {saved['class']} of another shape (saved config {saved['config']}, "
                               f"this model {wanted['config']}): {str(e).splitlines()[0]}") from e
    return payload


# ---------------------------------------------------------------- optimisation pieces

def make_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.05, weight_decay: float = 5e-4,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum), Adam or AdamW over the trainable parameters; weight decay skips biases and norms."""
    name = check_choice("optimizer", name, OPTIMIZERS)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    kwargs = {"foreach": True}  # one kernel per step for all parameters, not one per tensor
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, **kwargs)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int,
                   lr: float) -> tuple[object | None, bool]:
    """The LR schedule and whether it steps every batch (True) or every epoch (False)."""
    name = check_choice("scheduler", name, SCHEDULERS)
    total = epochs * steps_per_epoch
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.25,
                                                   div_factor=10, final_div_factor=100), True
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.1), False
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, patience=2), False
    return None, False


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is native (and so faster) on this device: CUDA, or CPUs with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # builds without oneDNN's probe
            return False
    return False


def _uses_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def _averages(loss_sum, correct, count, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy from sums, the sums added up over all processes first."""
    totals = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in (loss_sum, correct, count)])
    loss_sum, correct, count = distributed.all_reduce_sum(totals).tolist()
    return loss_sum / count, correct / count


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------- the training loop

def fit(model: nn.Module, data: CIFAR10Data, epochs: int = 10,
        batch_size: int = 128,  # images per training step
        lr: float = 0.05,  # peak learning rate (of the one-cycle schedule; the constant LR without one)
        optimizer: str = "sgd",  # 'sgd' (Nesterov momentum 0.9), 'adam' or 'adamw'
        weight_decay: float = 5e-4,  # L2 penalty on weights (not on biases or BatchNorm)
        label_smoothing: float = 0.0,  # probability mass spread over the wrong classes in the loss
        scheduler: str = "onecycle",  # 'onecycle', 'cosine', 'step', 'plateau' or 'none'
        crop_padding: int = 4,  # random crop after zero padding, in pixels (0: off)
        flip: bool = True,  # random horizontal flip
        cutout: int = 0,  # side of a random erased square, in pixels (0: off)
        early_stopping: int | None = None,  # stop after this many epochs without improvement (None: off)
        monitor: str = "val_acc",  # 'val_acc' or 'val_loss': what early stopping and best checkpoint follow
        restore_best: bool = False,  # load the best epoch's weights at the end
        checkpoint_dir: str | Path | None = None,  # where best.pt, last.pt and history.json go (None: nowhere)
        resume: str | Path | None = None,  # a last.pt to continue from, same schedule
        ema: float | None = None,  # decay of an exponential moving average of the weights, validated and
                                   # kept at the end (e.g. 0.99; None: off)
        seed: int = 0,  # seeds shuffling, augmentation and dropout (dropout: seed + rank under torchrun)
        device: str | torch.device | None = None,  # None: CUDA, then MPS, then CPU
        channels_last: bool | None = None,  # NHWC memory layout (None: on for conv nets)
        bf16: bool | None = None,  # bfloat16 autocast (None: on CUDA, and on CPUs with native bf16)
        compile: bool = False,  # torch.compile the training forward pass (pays on GPUs, for long runs)
        progress: bool = True,  # tqdm progress bar
        verbose: bool = True,  # one summary line per epoch
        ) -> History:
    """Train `model` on `data` and return its `History`: the training loop of notebook 01, with options.

    Each epoch: shuffle, augment, forward, cross-entropy, backward, optimizer and LR step
    for every batch; then validation loss and accuracy. Ctrl-C / interrupting the kernel
    stops cleanly and returns the history so far (best checkpoint kept).
    Under torchrun (after `distributed.init_distributed()`) each process trains its share of
    every batch in DistributedDataParallel; metrics are summed over processes, rank 0 prints and writes.
    """
    # 1. check the parameters before spending any time
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    lr = check_float("lr", lr, strict=True)
    weight_decay = check_float("weight_decay", weight_decay)
    label_smoothing = check_float("label_smoothing", label_smoothing, maximum=1.0)
    crop_padding, cutout = check_int("crop_padding", crop_padding, 0), check_int("cutout", cutout, 0)
    monitor = check_choice("monitor", monitor, MONITORS)
    if early_stopping is not None:
        early_stopping = check_int("early_stopping", early_stopping)
    if ema is not None:
        ema = check_float("ema", ema, 0.0, 1.0)
    if not isinstance(data, CIFAR10Data):
        raise TypeError(f"data must be the CIFAR10Data returned by load_cifar10, not {type(data).__name__}")

    # 2. device, memory layout, data and seeds; under torchrun this rank's device and share of the data
    rank, world = distributed.rank(), distributed.world_size()
    progress, verbose = progress and rank == 0, verbose and rank == 0  # one process talks
    if len(data.val_labels) < world:
        raise ValueError("the validation split is empty; load the data with val_size > 0")
    set_seed(seed + rank)
    if world > 1:
        device = torch.device("cpu") if str(device) == "cpu" else distributed.rank_device()
    device = get_device(device) if not isinstance(device, torch.device) else device
    channels_last = _uses_conv(model) if channels_last is None else channels_last
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    shard = dict(rank=rank, world_size=world, device=device, channels_last=channels_last)
    train_loader = data.loader("train", batch_size, crop_padding=crop_padding, flip=flip, cutout=cutout,
                               seed=seed, **shard)
    val_loader = data.loader("val", 500, **shard)
    bf16 = bf16_supported(device) if bf16 is None else bf16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    # 3. loss, optimizer, schedule
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    sched, per_step = make_scheduler(opt, scheduler, epochs, len(train_loader), lr)
    history, start = History(), 0
    better = (lambda a, b: a > b) if monitor == "val_acc" else (lambda a, b: a < b)
    best_score, best_state, stale = None, None, 0

    # 4. resume: weights, optimizer, schedule, batch order and history of the last checkpoint
    if resume is not None:
        state = load_checkpoint(resume, model, map_location=device)
        saved_epochs = state.get("history", {}).get("info", {}).get("params", {}).get("epochs", epochs)
        if saved_epochs != epochs:
            raise ValueError(f"{resume} comes from a run of {saved_epochs} epochs; resume it with "
                             f"epochs={saved_epochs} to continue the same schedule")
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        history = History.from_dict(state["history"])
        start, best_score, stale = state["epoch"], state.get("best_score"), state.get("stale", 0)
        train_loader.epoch = start  # the batch order and augmentation of the next epoch, as uninterrupted
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"].cpu())
        if state.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    forward = distributed.wrap(model, device)  # shares the weights with `model`
    forward = torch.compile(forward) if compile else forward
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    if averaged is not None and resume is not None and state.get("ema"):
        averaged.load_state_dict(state["ema"])
    evaluated = averaged.module if averaged is not None else model  # the weights validated and checkpointed

    history.info.update(params=dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                    weight_decay=weight_decay, label_smoothing=label_smoothing,
                                    scheduler=scheduler, crop_padding=crop_padding, flip=flip, cutout=cutout,
                                    early_stopping=early_stopping, monitor=monitor, bf16=bf16, ema=ema, compile=compile),
                        seed=seed, device=str(device), processes=world, model=_describe(model), data=repr(data),
                        environment=environment_info(), status="running")
    out = Path(checkpoint_dir) if checkpoint_dir is not None and rank == 0 else None
    if verbose:
        where = f"{device}" + (f" x {world} processes ({torch.distributed.get_backend()})" if world > 1 else "")
        threads = torch.get_num_threads()
        where += f", {threads} thread{'s' * (threads > 1)}" if device.type == "cpu" else ""
        where += ", bf16 autocast" if bf16 else ""
        print(f"Training {type(model).__name__} on {where}: {len(train_loader.labels):,} images, "
              f"{len(train_loader)} steps of {batch_size} per epoch, epochs {start + 1}..{epochs}")

    # 5. the loop
    try:
        for epoch in range(start + 1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)  # summed on the device: no per-step host sync
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            bar = _progress(train_loader, progress, desc=f"epoch {epoch}/{epochs}", leave=False)
            for step, (images, labels) in enumerate(bar, 1):
                with autocast:
                    logits = forward(images)
                    loss = criterion(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                if per_step:
                    sched.step()
                loss_sum += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if step % 25 == 0 or step == len(train_loader):  # one host sync every 25 steps
                    running = loss_sum.item() / seen
                    if not math.isfinite(running):
                        raise TrainingDiverged(
                            f"the training loss became {running} at epoch {epoch}, step {step}: the learning "
                            f"rate ({lr}) is probably too high; try a smaller lr")
                    if progress:
                        bar.set_postfix(loss=f"{running:.3f}", acc=f"{correct.item() / seen:.3f}")

            # 6. validate (every rank its share, then summed), record, checkpoint
            distributed.broadcast_buffers(model)  # ranks saw different batches: all take rank 0's BN statistics
            if averaged is not None:
                distributed.broadcast_buffers(averaged)
            train_loss, train_acc = _averages(loss_sum, correct, seen, device)
            logits, labels = predict(evaluated, val_loader)
            val_loss, val_acc = _averages(nn.functional.cross_entropy(logits, labels, reduction="sum"),
                                          (logits.argmax(1) == labels).sum(), len(labels), device)
            if sched is not None and not per_step:
                sched.step(val_loss) if scheduler == "plateau" else sched.step()
            history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                           val_loss=val_loss, val_acc=val_acc, lr=opt.param_groups[0]["lr"],
                           seconds=time.perf_counter() - t0)
            score = val_acc if monitor == "val_acc" else val_loss
            improved = best_score is None or better(score, best_score)
            if improved:
                best_score, stale = score, 0
                best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
            else:
                stale += 1
            if verbose:
                print(f"epoch {epoch:3d}/{epochs}  train loss {history.train_loss[-1]:.4f} acc "
                      f"{history.train_acc[-1]:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                      f"lr {history.lr[-1]:.2e}  {history.seconds[-1]:.1f}s" + ("  *" if improved else ""))
            if out is not None:
                if improved:
                    save_checkpoint(out / "best.pt", evaluated, epoch=epoch, best_score=best_score)
                save_checkpoint(out / "last.pt", model, epoch=epoch, best_score=best_score, stale=stale,
                                optimizer=opt.state_dict(), scheduler=sched.state_dict() if sched else None,
                                history=history.to_dict(), rng=torch.get_rng_state(),  # dropout's random stream
                                cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                ema=averaged.state_dict() if averaged is not None else None)
                history.save(out / "history.json")
            if early_stopping is not None and stale >= early_stopping:
                history.info["status"] = f"early stopped at epoch {epoch} ({monitor} did not improve " \
                                         f"for {early_stopping} epochs)"
                if verbose:
                    print(history.info["status"])
                break
        else:
            history.info["status"] = "completed"
    except KeyboardInterrupt:
        history.info["status"] = f"interrupted after {len(history)} finished epochs"
        if verbose:
            print(f"Interrupted: returning the history of the {len(history)} finished epochs"
                  + (f"; best checkpoint kept in {out / 'best.pt'}" if out is not None else ""))
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(f"the GPU ran out of memory with batch_size={batch_size}; try batch_size="
                           f"{max(batch_size // 2, 1)} or a smaller model") from e

    # 7. finish: averaged (then best, if asked) weights into the model, history saved with how the run ended
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
        history.info["restored_best_epoch"] = history.best_epoch if monitor == "val_acc" else \
            history.epoch[int(np.argmin(history.val_loss))]
    if out is not None:
        history.save(out / "history.json")
    return history


if __name__ == "__main__":  # python -m cifar_lab.train ... / torchrun --nproc_per_node=N -m cifar_lab.train ...
    from cifar_lab.job import main
    raise SystemExit(main())
