"""Named recipes: a model of the course and the training options it is taught with.

A recipe lists only what differs from the defaults of `options.TRAINING`; `training_options` fills in
the rest and checks it. Notebooks 01-04 and `python -m cifar_lab.train --model NAME` use these.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .data import CIFAR10Data
from .models import make_model
from .options import TRAINING, check, defaults


@dataclass(frozen=True)
class Recipe:
    """A model by name, its options, how it is trained, and whether testing averages mirrored images."""

    model: str
    training: dict  # the training options that differ from the defaults
    model_options: dict = field(default_factory=dict)
    tta: bool = True  # flip test-time augmentation
    source: str = ""  # where the recipe is taught or comes from


_CONV = dict(epochs=20, optimizer="sgd", lr=0.05, weight_decay=5e-4, label_smoothing=0.1, crop_padding=4)
RECIPES = {
    "mlp": Recipe("mlp", dict(epochs=20, optimizer="adamw", lr=0.002, weight_decay=0.05, label_smoothing=0.1,
                              crop_padding=0), tta=False, source="notebook 01"),
    "cnn": Recipe("cnn", _CONV, source="notebook 02"),
    "resnet9": Recipe("resnet9", _CONV, source="notebook 04"),
    "resnet18": Recipe("resnet18", _CONV, source="notebook 04"),
    "torchvision_resnet18": Recipe("torchvision_resnet18", _CONV, source="notebook 04"),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a ValueError listing them."""
    if not isinstance(name, str) or name.lower() not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
    return RECIPES[name.lower()]


def training_options(recipe: Recipe, **overrides) -> dict:
    """Every training option: the defaults, then the recipe's, then `overrides` (None: keep), checked."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return {**defaults(TRAINING), **check({**recipe.training, **given}, TRAINING)}


def build_model(recipe: Recipe, data: CIFAR10Data | None = None, **model_options) -> nn.Module:
    """The recipe's model; ResNet-9's whitening stem is set from the training images of `data`."""
    model = make_model(recipe.model, **{**recipe.model_options, **model_options})
    if hasattr(model, "whiten") and data is not None:
        model.whiten(next(iter(data.loader("train", batch_size=5000, crop_padding=0, flip=False)))[0])
    return model
