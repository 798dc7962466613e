"""Named recipes: a model and the training options it is trained with.

A recipe lists only what differs from the defaults of `options.TRAINING` (and of the data: validation
size, normalisation); `training_options` fills in the rest and checks it. The course's own recipes
(notebooks 01-04) are here; the kit adds the five reference reports' (`cifar_lab.kit.reference`, 000-004).
`cifar-lab train --recipe NAME` runs any of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from .data import CIFAR10Data
from .models import make_model
from .options import TRAINING, check, defaults, did_you_mean


@dataclass(frozen=True)
class Recipe:
    """A model by name, its options, how it is trained, and whether testing averages mirrored images."""

    model: str
    training: dict  # the training options that differ from the defaults
    model_options: dict = field(default_factory=dict)
    tta: bool = True  # flip test-time augmentation
    source: str = ""  # where the recipe is taught or comes from
    data: dict = field(default_factory=dict)  # validation size and normalisation, when not the kit's
    reported: str = ""  # the test accuracy its report gave (original files, often a GPU)
    build: Callable[..., nn.Module] | None = None  # the model's class when it is not one of make_model's


_CONV = dict(epochs=20, label_smoothing=0.1)  # the defaults' SGD, lr 0.05, weight decay 5e-4, crops and flips
RECIPES = {
    "mlp": Recipe("mlp", dict(epochs=20, optimizer="adamw", lr=0.002, weight_decay=0.05, label_smoothing=0.1,
                              crop_padding=0), tta=False, source="notebook 01"),
    "cnn": Recipe("cnn", _CONV, source="notebook 02"),
    "resnet9": Recipe("resnet9", _CONV, source="notebook 04"),
    "resnet18": Recipe("resnet18", _CONV, source="notebook 04"),
    "torchvision_resnet18": Recipe("torchvision_resnet18", _CONV, source="notebook 04"),
}
_HE = dict(epochs=20, lr=0.1, weight_decay=1e-4, label_smoothing=0.0)  # He et al.'s SGD, lr and decay; crops, flips
RECIPES.update({name: Recipe(name, _HE, source="notebook 04 (He et al. 2016)")
                for name in ("plain20", "resnet20", "plain56", "resnet56")})




def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a ValueError listing them."""
    if not isinstance(name, str) or name.lower() not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}{did_you_mean(name, RECIPES)}; valid: {', '.join(RECIPES)}")
    return RECIPES[name.lower()]


def training_options(recipe: Recipe, **overrides) -> dict:
    """Every training option: the defaults, then the recipe's, then `overrides` (None: keep), checked."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return {**defaults(TRAINING), **check({**recipe.training, **given}, TRAINING)}


def build_model(recipe: Recipe, data: CIFAR10Data | None = None, **model_options) -> nn.Module:
    """The recipe's model; ResNet-9's whitening stem is set from the training images of `data`."""
    options = {**recipe.model_options, **model_options}
    if recipe.build is not None:
        model = recipe.build(**options)
        model.config = {"name": recipe.model, **options}  # lets checkpoints say which model they hold
    else:
        model = make_model(recipe.model, **options)
    if hasattr(model, "whiten") and data is not None:
        model.whiten(next(iter(data.loader("train", batch_size=5000, crop_padding=0, flip=False)))[0])
    return model
