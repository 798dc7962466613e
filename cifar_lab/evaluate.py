"""Predictions and the numbers students read off them: accuracy, per-class accuracy, confusions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import CIFAR10Data


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def tta_logits(model: nn.Module, images: torch.Tensor, level: int = 1) -> torch.Tensor:
    """Logits averaged over test-time augmentations: 0 none, 1 the mirror image too, 2 also 1-pixel shifts.

    Level 2 (airbench's) averages, half and half, the mirrored pair with the mirrored pairs of the image
    shifted by one pixel up-left and down-right (reflect padding): 6 forward passes.
    """
    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return (model(x).float() + model(x.flip(3)).float()) / 2

    if level == 0:
        return model(images).float()
    if level == 1:
        return mirrored(images)
    h, w = images.shape[-2:]
    padded = nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    shifted = (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:, 2:])) / 2
    return (mirrored(images) + shifted) / 2


@torch.inference_mode()
def predict(model: nn.Module, loader, tta: bool | int = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, num_classes) and labels (N,) of every batch of `loader`, on the CPU.

    `tta`: True (or 1) averages the logits with those of the mirrored images; 2 adds 1-pixel shifts.
    """
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        all_logits.append(tta_logits(model, images, int(tta)))
        all_labels.append(labels)
    model.train(was_training)
    return torch.cat(all_logits).cpu(), torch.cat(all_labels).cpu()


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0..1) of logits against labels."""
    loss = nn.functional.cross_entropy(logits.float(), labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


@dataclass
class EvalResult:
    """A model's predictions on one split, with the numbers derived from them."""

    logits: torch.Tensor  # (N, num_classes)
    labels: torch.Tensor  # (N,)
    classes: list[str]
    split: str = "test"

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(1)

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @property
    def confidences(self) -> torch.Tensor:
        """Softmax probability of the predicted class."""
        return self.probabilities.max(1).values

    @property
    def accuracy(self) -> float:
        return loss_and_accuracy(self.logits, self.labels)[1]

    @property
    def loss(self) -> float:
        return loss_and_accuracy(self.logits, self.labels)[0]

    def confusion_matrix(self, normalize: bool = False) -> np.ndarray:
        """(num_classes, num_classes) counts, rows true class, columns predicted; rows sum to 1 if normalized."""
        n = len(self.classes)
        pairs = self.labels.long() * n + self.predictions.long()  # one bin per (true, predicted) pair
        cm = torch.bincount(pairs, minlength=n * n).reshape(n, n).numpy()  # (true, predicted)
        return cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm

    def per_class_accuracy(self) -> dict[str, float]:
        """Accuracy (0..1) within each true class."""
        cm = self.confusion_matrix()
        return {c: float(cm[i, i] / max(cm[i].sum(), 1)) for i, c in enumerate(self.classes)}

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The k most frequent (true class, predicted class, count) mistakes."""
        cm = self.confusion_matrix().copy()
        np.fill_diagonal(cm, 0)
        order = np.argsort(cm, axis=None)[::-1][:k]
        pairs = [np.unravel_index(i, cm.shape) for i in order]
        return [(self.classes[t], self.classes[p], int(cm[t, p])) for t, p in pairs if cm[t, p] > 0]

    def misclassified(self, k: int = 16) -> list[int]:
        """Indices of the k wrong predictions made with the highest confidence."""
        wrong = (self.predictions != self.labels).nonzero().flatten()
        order = self.confidences[wrong].argsort(descending=True)
        return wrong[order][:k].tolist()

    def calibration(self, bins: int = 10) -> tuple[float, list[tuple[float, float, int]]]:
        """Expected calibration error and, per confidence bin, (mean confidence, accuracy, images).

        A calibrated model is right on 90% of the images it gives 90% to; the error is the images-weighted
        mean gap between confidence and accuracy over the bins.
        """
        right = (self.predictions == self.labels).float()
        which = (self.confidences * bins).long().clamp(max=bins - 1)  # bin of each image, (N,)
        table = [(self.confidences[which == b].mean().item(), right[which == b].mean().item(), int((which == b).sum()))
                 for b in range(bins) if (which == b).any()]
        return sum(n * abs(c - a) for c, a, n in table) / len(self.labels), table

    def summary(self) -> dict:
        """The metrics as plain numbers, ready for JSON."""
        return {"split": self.split, "accuracy": self.accuracy, "loss": self.loss, "n": len(self.labels),
                "per_class_accuracy": self.per_class_accuracy(),
                "most_confused": [list(p) for p in self.most_confused()]}


def evaluate(model: nn.Module, data: CIFAR10Data, split: str = "test", batch_size: int = 500,
             tta: bool | int = False) -> EvalResult:
    """Predict every image of one split ('train', 'val' or 'test'); `tta` as in `predict` (test-time augmentation)."""
    loader = data.loader(split, batch_size=batch_size, train=False, device=_model_device(model))
    logits, labels = predict(model, loader, tta=tta)
    return EvalResult(logits, labels, list(data.classes), split)


def check_model_output(model: nn.Module, data: CIFAR10Data, device: torch.device) -> None:
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
