"""Every option of the kit, written once: default, unit and bounds (like airbench's `hyp`).

`TRAINING` holds `fit`'s options, `MODEL` the options of the course's models, `DATA` how the data is
read and split (the kit's notebooks and commands add theirs, `kit.course.NOTEBOOK`, with the same `Option`). `fit`'s checks, the command line (`add_arguments`), the notebooks' parameter
checks (`check`), the recorded params and the named recipes all read these tables.
"""
from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One option: its default, what it means (with its unit), and the values allowed."""

    default: Any
    help: str
    kind: type = int  # int, float, bool or str
    low: float | None = None  # smallest value allowed
    high: float | None = None  # largest value allowed
    open_low: bool = False  # low itself is not allowed
    open_high: bool = False  # high itself is not allowed
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed (and means "off" or "automatic")
    count: int = 0  # a comma-separated list of this many positive integers ("64,128,256")

    def check(self, name: str, value: Any) -> Any:
        """`value` if allowed (a list option as a tuple of ints), else a ValueError saying what is."""
        if value is None and self.optional:
            return None
        if self.count:
            return _widths(name, value, self.count) if self.kind is int else self._numbers(name, value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {_shown(value)}")
            return value
        if self.kind is str:
            if self.choices and (not isinstance(value, str) or value.lower() not in self.choices):
                raise ValueError(f"unknown {name} {value!r}{did_you_mean(value, self.choices)}; "
                                 f"valid: {', '.join(self.choices)}")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be non-empty text, got {_shown(value)}")
            return value.lower() if self.choices else value
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        if self.kind is int and not isinstance(value, int):
            number = False
        if not number or not self._in_range(value):
            raise ValueError(f"{name} must be {self.allowed()}, got {_shown(value)}")
        return self.kind(value)

    def _numbers(self, name: str, value: Any) -> tuple[float, ...]:
        """'0.02,0.33' or a pair of numbers, each within the bounds, as a tuple of floats."""
        parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (tuple, list)) else []
        try:
            numbers = tuple(float(p) for p in parts)
        except (TypeError, ValueError):
            numbers = ()
        if len(numbers) != self.count or not all(self._in_range(v) for v in numbers) or list(numbers) != sorted(numbers):
            raise ValueError(f"{name} must be {self.allowed()}, got {value!r}")
        return numbers

    def _in_range(self, v: float) -> bool:
        low_ok = self.low is None or (v > self.low if self.open_low else v >= self.low)
        high_ok = self.high is None or (v < self.high if self.open_high else v <= self.high)
        return low_ok and high_ok

    def allowed(self) -> str:
        """The allowed values in words, e.g. 'a number > 0 and < 1'."""
        if self.count and self.kind is int:
            return f"{self.count} positive integers separated by commas"
        if self.count:
            return f"{self.count} increasing numbers in [{self.low}, {self.high}] separated by commas"
        if self.kind is bool:
            return "True or False"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = ["an integer" if self.kind is int else "a number"]
        if self.low is not None:
            words.append(f"{'>' if self.open_low else '>='} {self.low}")
        if self.high is not None:
            words.append(f"{'and ' if self.low is not None else ''}{'<' if self.open_high else '<='} {self.high}")
        return " ".join(words) + (" (or None: off)" if self.optional else "")


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_value(name: str, value: Any, kind: type = int, **bounds) -> Any:
    """One value checked like an option of the tables (e.g. `check_value("width", w, int, low=1)`)."""
    return Option(None, "", kind, **bounds).check(name, value)


def did_you_mean(name: str, known) -> str:
    """" (did you mean 'x'?)" for the known name closest to `name`, else "": every "unknown name" message uses it."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _widths(name: str, value: Any, count: int) -> tuple[int, ...]:
    """'64,128,256' (as papermill passes it) or a tuple/list of ints, as a tuple of positive ints."""
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (tuple, list)) else []
    ok = len(parts) == count and all(
        (isinstance(p, int) and not isinstance(p, bool) and p > 0) or (isinstance(p, str) and p.strip().isdigit()
                                                                      and int(p) > 0) for p in parts)
    if not ok:
        raise ValueError(f"{name} must be {count} positive integers separated by commas, like "
                         f"'{','.join(['64'] * count)}', got {value!r}")
    return tuple(int(p) for p in parts)


# ---------------------------------------------------------------- the tables

TRAINING = {  # fit's options
    "epochs": Option(10, "passes over the training split", int, low=1),
    "batch_size": Option(128, "images per optimisation step, all processes together", int, low=2),
    "optimizer": Option("sgd", "sgd (momentum 0.9), adam or adamw", str, choices=("sgd", "adam", "adamw")),
    "lr": Option(0.05, "peak learning rate (one-cycle's peak; the starting LR of the other schedules)", float,
                 low=0.0, high=10.0, open_low=True),
    "nesterov": Option(True, "SGD with Nesterov momentum", bool),
    "weight_decay": Option(5e-4, "L2 penalty on weights, not on biases or norms (decoupled in AdamW)", float,
                           low=0.0, high=1.0),
    "label_smoothing": Option(0.0, "probability mass of the loss target spread over the wrong classes", float,
                              low=0.0, high=0.5),
    "warmup_fraction": Option(0.25, "one-cycle: fraction of the steps spent raising the LR", float, low=0.0,
                              high=1.0, open_low=True, open_high=True),
    "div_factor": Option(10.0, "one-cycle: the peak LR over the starting LR", float, low=1.0),
    "final_div_factor": Option(100.0, "one-cycle: the starting LR over the final LR", float, low=1.0),
    "scheduler": Option("onecycle", "learning-rate schedule: onecycle (per step), step, plateau (per epoch) "
                        "or none", str, choices=("onecycle", "step", "plateau", "none")),
    "step_size": Option(None, "StepLR: epochs between LR drops (None: a third of the epochs)", int, low=1,
                        optional=True),
    "gamma": Option(0.1, "StepLR: LR multiplier at each drop", float, low=0.0, high=1.0, open_low=True,
                    open_high=True),
    "plateau_factor": Option(0.2, "ReduceLROnPlateau: LR multiplier when the validation loss stalls", float,
                             low=0.0, high=1.0, open_low=True, open_high=True),
    "plateau_patience": Option(2, "ReduceLROnPlateau: epochs without improvement before the LR drops", int,
                               low=0),
    "crop_padding": Option(4, "random crop after zero padding, in pixels (0: off)", int, low=0, high=16),
    "flip": Option(True, "random horizontal flip", bool),
    "cutout": Option(0, "side of a random erased square, in pixels (0: off)", int, low=0, high=32),
    "padding_mode": Option("zeros", "how the random crop pads: zeros (black) or reflect", str,
                           choices=("zeros", "reflect")),
    "brightness": Option(0.0, "colour jitter: brightness factor in [1 - b, 1 + b] (0: off)", float, low=0.0, high=1.0),
    "contrast": Option(0.0, "colour jitter: contrast factor in [1 - c, 1 + c] (0: off)", float, low=0.0, high=1.0),
    "saturation": Option(0.0, "colour jitter: saturation factor in [1 - s, 1 + s] (0: off)", float, low=0.0,
                         high=1.0),
    "hue": Option(0.0, "colour jitter: hue shift in [-h, h] of a full turn (0: off)", float, low=0.0, high=0.5),
    "rotation": Option(0.0, "random rotation up to this many degrees either way (0: off)", float, low=0.0,
                       high=180.0),
    "erasing": Option(0.0, "probability of random erasing of a rectangle, after normalisation (0: off)", float,
                      low=0.0, high=1.0),
    "erasing_scale": Option((0.02, 0.33), "random erasing: smallest and largest erased fraction of the image",
                            float, low=0.0, high=1.0, open_low=True, count=2),
    "early_stopping": Option(None, "stop after this many epochs without improvement of `monitor` (None: off)",
                             int, low=1, optional=True),
    "monitor": Option("val_acc", "what early stopping and the best checkpoint follow: val_acc or val_loss", str,
                      choices=("val_acc", "val_loss")),
    "restore_best": Option(False, "end with the weights of the best epoch (by `monitor`)", bool),
    "ema": Option(None, "decay of a moving average of the weights, validated and kept (e.g. 0.99; None: off)",
                  float, low=0.0, high=1.0, open_low=True, open_high=True, optional=True),
    "seed": Option(0, "seeds the split, initial weights, batch order, augmentation and dropout", int, low=0),
}

MODEL = {  # options of the course's models (make_model); each applies to the models named in MODEL_USERS
    "hidden": Option("1024,512", "MLP: widths of the two hidden layers", count=2),
    "dropout": Option(0.5, "MLP: drop probability after each hidden layer", float, low=0.0, high=1.0,
                      open_high=True),
    "widths": Option("32,64,128", "CNN: channels of the three conv blocks", count=3),
    "convs_per_block": Option(2, "CNN: 3x3 conv-BN-ReLU layers before each max-pool", int, low=1, high=8),
    "fc_dropout": Option(0.3, "CNN: dropout before the last layer", float, low=0.0, high=1.0, open_high=True),
    "conv_dropout": Option(0.0, "CNN: Dropout2d after each conv block", float, low=0.0, high=1.0,
                           open_high=True),
    "batchnorm": Option(True, "MLP, CNN: BatchNorm after each layer", bool),
    "pretrained": Option(False, "torchvision_resnet18: start from ImageNet weights (downloaded once)", bool),
}
MODEL_USERS = {"hidden": ("mlp",), "dropout": ("mlp",), "widths": ("cnn",), "convs_per_block": ("cnn",),
               "fc_dropout": ("cnn",), "conv_dropout": ("cnn",), "batchnorm": ("mlp", "cnn"),
               "pretrained": ("torchvision_resnet18",)}

DATA = {  # how load_cifar10 reads and splits the data
    "data_dir": Option(None, "folder holding cifar-10-batches-py/ (None: $CIFAR_LAB_DATA, else data/ of the "
                       "checkout)", str, optional=True),
    "val_size": Option(5000, "training images held out for validation", int, low=1, high=49_000),
    "normalization": Option("split", "per-channel mean/std: the training split's (split) or 0.5/0.5 (half)",
                            str, choices=("split", "half")),
    "train_size": Option(None, "training images used, of those not held out (None: all)", int, low=100,
                         optional=True),
}

FAST = {  # the fast recipe (fast.py): airbench's published methods, each one a switch for the ablation
    "epochs": Option(10.0, "passes over the training split (a fraction ends mid-epoch)", float, low=0.0, high=100.0,
                     open_low=True),
    "batch_size": Option(1024, "images per optimisation step", int, low=2),
    "lr": Option(11.5, "peak learning rate per 1,024 images of summed loss (divided by 1024 / (1 - momentum) "
                 "for torch's SGD)", float, low=0.0, high=100.0, open_low=True),
    "momentum": Option(0.85, "Nesterov momentum of SGD", float, low=0.0, high=1.0, open_high=True),
    "weight_decay": Option(0.0153, "weight decay per 1,024 images, decoupled from the learning rate", float,
                           low=0.0, high=1.0),
    "bias_scaler": Option(64.0, "learning-rate multiplier of the BatchNorm shifts (not of their weight decay)",
                          float, low=1.0, high=1000.0),
    "label_smoothing": Option(0.2, "probability mass of the loss target spread over the wrong classes", float,
                              low=0.0, high=0.5),
    "widths": Option("64,256,256", "channels of the three conv groups", count=3),
    "whiten": Option(True, "a frozen 2x2 first convolution set from the training patches' covariance "
                     "(False: a learned one)", bool),
    "whiten_bias_epochs": Option(3.0, "epochs the whitening convolution's bias trains before it freezes",
                                 float, low=0.0),
    "dirac": Option(True, "identity (Dirac) initialisation of each convolution's first input channels", bool),
    "frozen_scale": Option(True, "BatchNorm scales fixed at 1 (only the shifts learn), at a higher LR", bool),
    "activation": Option("gelu", "activation after each BatchNorm", str, choices=("gelu", "relu")),
    "lookahead": Option(True, "every 5 steps pull the weights to a slow moving average of them", bool),
    "translate": Option(2, "random translation in pixels (reflect padding, then a random crop)", int,
                        low=0, high=8),
    "alternate_flip": Option(True, "flip each image in every other epoch (random in the first) instead of "
                             "at random", bool),
    "tta": Option(2, "test-time augmentation: 0 none, 1 mirror, 2 mirror and 1-pixel translations", int,
                  low=0, high=2),
    "seed": Option(0, "seeds the initial weights, batch order and augmentation", int, low=0),
}

AUGMENTATION = ("crop_padding", "flip", "cutout", "padding_mode", "brightness", "contrast", "saturation", "hue",
                "rotation", "erasing", "erasing_scale")  # the training options the batch loader applies


def default(name: str) -> Any:
    """One option's default, checked and typed (a list option as a tuple): for the signatures that use it."""
    spec = {**TRAINING, **MODEL, **DATA}
    return spec[name].check(name, spec[name].default)


def defaults(spec: dict[str, Option] = TRAINING) -> dict[str, Any]:
    """Every option of `spec` at its default."""
    return {name: option.default for name, option in spec.items()}


def check(values: dict[str, Any], spec: dict[str, Option] = TRAINING) -> dict[str, Any]:
    """`values` checked against `spec`; an unknown name is a ValueError naming the closest known one."""
    unknown = [name for name in values if name not in spec]
    if unknown:
        name = unknown[0]
        raise ValueError(f"unknown parameter {name!r}{did_you_mean(name, spec)}; known: {', '.join(sorted(spec))}")
    return {name: spec[name].check(name, value) for name, value in values.items()}


def describe(spec: dict[str, Option] = TRAINING) -> str:
    """The options as text: name, default, meaning, allowed values (for docstrings and --help)."""
    return "\n".join(f"    {name} = {option.default!r}: {option.help} [{option.allowed()}]"
                     for name, option in spec.items())


def add_arguments(parser: argparse.ArgumentParser, spec: dict[str, Option]) -> None:
    """One command-line flag per option (`--batch-size` or `--batch_size`); an unset flag reads as None."""
    for name, option in spec.items():
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])  # as in the notebooks
        default = f"default {option.default}" if option.default is not None else "default off/automatic"
        kw: dict[str, Any] = dict(dest=name, default=None, help=f"{option.help} ({default})")
        if option.kind is bool and not option.count:
            kw["action"] = argparse.BooleanOptionalAction
            if len(flags) > 1:  # --restore_best works too, but --help lists the hyphenated pair only
                parser.add_argument(flags.pop(), **{**kw, "help": argparse.SUPPRESS})
        else:
            kw["type"] = _argument_type(name, option)
            kw["metavar"] = name.upper()
        parser.add_argument(*flags, **kw)


def _argument_type(name: str, option: Option):
    """A converter that types a flag's text and checks it, with the option's own message."""
    def convert(text: str) -> Any:
        if option.optional and text.lower() in ("none", "off"):
            return None
        value: Any = text
        if option.kind in (int, float) and not option.count:
            try:
                value = option.kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {option.allowed()}, got {text!r}") from None
        try:
            return option.check(name, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"{name} must", "must", 1)) from None
    convert.__name__ = name
    return convert
