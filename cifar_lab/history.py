"""The record of a run: per-epoch metrics and the setting they came from."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_write, load_json, save_json


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
