"""Checkpoints: a model's weights and the state needed to resume its training, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write


CHECKPOINT_FORMAT = "cifar_lab-checkpoint-1"


def describe_model(model: nn.Module) -> dict:
    """The class and config of a model, as checkpoints record it."""
    config = json.loads(json.dumps(getattr(model, "config", None), default=str))  # as it reads back from JSON
    return {"class": type(model).__name__, "config": config}


def describe_data(data: object) -> str:
    """The data in words, as runs record it: no paths of this machine (a repr would hold its folder)."""
    return data.describe() if hasattr(data, "describe") else repr(data)


def save_checkpoint(path: str | Path, model: nn.Module, **state) -> Path:
    """Save the model's weights (and any extra state: optimizer, epoch, history...) atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "model": describe_model(model), "model_state": model.state_dict(), **state}
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
        saved, wanted = payload["model"], describe_model(model)
        if saved["class"] != wanted["class"]:
            raise RuntimeError(f"{path} holds a {saved['class']} (config {saved['config']}), "
                               f"not a {wanted['class']}; build the matching model first")
        try:
            model.load_state_dict(payload["model_state"])
        except RuntimeError as e:
            raise RuntimeError(f"{path} holds a {saved['class']} of another shape (saved config {saved['config']}, "
                               f"this model {wanted['config']}): {str(e).splitlines()[0]}") from e
    return payload
