"""The plumbing every notebook shares: parameter checks, quick mode, data, and saving results."""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .checks import check_bool, check_data_dir, check_float, check_int, check_output_dir
from .data import CIFAR10Data, load_cifar10, make_fake_cifar10
from .evaluate import EvalResult
from .files import environment_info, save_json
from .models import count_parameters, flops_per_image
from .train import History, get_device, set_seed

QUICK_ENV = "CIFAR_LAB_QUICK"  # "1": every notebook runs in quick mode (CI, nbval)
QUICK_EPOCHS = 1

# name -> check, for the parameters notebooks share (papermill -p may pass any type)
INTS = {"epochs": 1, "batch_size": 1, "seed": 0, "seeds": 1, "cutout": 0, "patience": 1, "crop_padding": 0,
        "convs_per_block": 1, "val_size": 0}
FLOATS = {"lr": (0.0, None, True), "weight_decay": (0.0, None, False), "label_smoothing": (0.0, 1.0, False),
          "dropout": (0.0, 1.0, False), "fc_dropout": (0.0, 1.0, False), "conv_dropout": (0.0, 1.0, False)}
BOOLS = ("quick", "flip", "batchnorm", "pretrained", "tta")
WIDTHS = {"hidden": 2, "widths": 3}  # comma-separated layer widths


def quick_mode(quick: bool = False) -> bool:
    """True if asked for, or if $CIFAR_LAB_QUICK is 1/true/yes."""
    return bool(quick) or os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check the notebook parameters whose names it knows; a ValueError says what is allowed."""
    for name, value in params.items():
        if name in INTS:
            check_int(name, value, INTS[name])
        elif name in FLOATS:
            low, high, strict = FLOATS[name]
            check_float(name, value, low, high, strict)
        elif name in BOOLS:
            check_bool(name, value)
        elif name in WIDTHS:
            parse_widths(name, value, WIDTHS[name])
    check_data_dir(params.get("data_dir"))
    return params


@dataclass
class Run:
    """One notebook run: its checked parameters, data, output folder, and the metrics saved so far."""

    notebook: str
    params: dict
    data: CIFAR10Data
    output_dir: Path
    quick: bool
    device: str
    metrics: dict = field(default_factory=dict)  # per trained model
    extra: dict = field(default_factory=dict)  # anything else worth keeping (saved at the top level)

    @property
    def banner(self) -> str:
        if not self.quick:
            return f"{self.notebook}: full run on {self.data!r}, device {self.device}; results in {self.output_dir}"
        bar = "!" * 78
        return (f"{bar}\n!!  QUICK MODE: synthetic CIFAR-10 look-alike, {QUICK_EPOCHS} epoch(s).\n"
                f"!!  The numbers below only show that the code runs; they say nothing about CIFAR-10.\n"
                f"!!  For real results run with quick=False and ${QUICK_ENV} unset.\n{bar}")

    def path(self, name: str) -> Path:
        """A file in this run's output folder (for figures: `run.path('curves.png')`)."""
        return self.output_dir / name

    def record(self, name: str, model: nn.Module, history: History | None, result: EvalResult,
               **extra: Any) -> dict:
        """Store one trained model's numbers and write metrics.json at once, so nothing is lost."""
        seconds = sum(history.seconds) if history else 0.0
        images = len(self.data.train_labels) * len(history) if history else 0
        self.metrics[name] = {
            "test_acc": result.accuracy, "test_loss": result.loss, "parameters": count_parameters(model),
            "flops_per_image": flops_per_image(model), "epochs": len(history) if history else 0,
            "train_seconds": seconds, "images_per_second": images / seconds if seconds else None,
            "best_val_acc": max(history.val_acc) if history else None,
            "per_class_accuracy": result.per_class_accuracy(),
            "most_confused": [list(p) for p in result.most_confused()],
            "history": history.to_dict() if history else None, **extra}
        self.save()
        return self.metrics[name]

    def save(self) -> Path:
        """Write metrics.json: every model's numbers plus parameters, data, device and versions."""
        return save_json({"notebook": self.notebook, "quick": self.quick, "params": self.params,
                          "data": repr(self.data), "device": self.device, "environment": environment_info(),
                          "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"), **self.extra, "models": self.metrics},
                         self.path("metrics.json"))


def start(notebook: str, params: dict[str, Any]) -> Run:
    """Check a notebook's parameters, seed, pick the device, load the data (synthetic in quick mode)."""
    params = check_params(dict(params))
    quick = quick_mode(params.get("quick", False))
    output_dir = check_output_dir(params.get("output_dir", f"outputs/{notebook}"))
    seed = params.get("seed", 0)
    if quick:
        params["epochs"] = min(params.get("epochs", QUICK_EPOCHS), QUICK_EPOCHS)
        root = Path(tempfile.gettempdir()) / f"cifar_lab_quick_{seed}"
        make_fake_cifar10(root, train_per_batch=100, test_size=100, seed=seed)
        data = load_cifar10(root, val_size=50, seed=seed, download=False)
    else:
        data = load_cifar10(params.get("data_dir"), val_size=params.get("val_size", 5000), seed=seed)
    set_seed(seed)
    return Run(notebook, params, data, output_dir, quick, str(get_device()))


def parse_widths(name: str, text: Any, count: int) -> tuple[int, ...]:
    """'1024,512' (a papermill string) as (1024, 512), or a ValueError saying what is allowed."""
    parts = str(text).split(",")
    if len(parts) != count or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{name} must be {count} positive integers separated by commas, like "
                         f"'{','.join(['64'] * count)}', got {text!r}")
    return tuple(int(p) for p in parts)
