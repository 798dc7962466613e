"""A small synthetic CIFAR-10 in the real on-disk format, for tests and quick mode (no download)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..data import CLASSES, FOLDER, META_FILE, TEST_FILES, TRAIN_FILES
from ..files import atomic_write


def make_fake_cifar10(root: str | Path,
                      train_per_batch: int = 200,  # images in each of the 5 training batch files
                      test_size: int = 200,  # images in the test batch file
                      seed: int = 0,
                      ) -> Path:
    """Write a small synthetic CIFAR-10 in the real on-disk format; returns the batch folder.

    Each class has its own colour and stripe direction plus noise, so a model can learn it.
    """
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]

    def images_for(labels: np.ndarray) -> np.ndarray:
        out = np.empty((len(labels), 3, 32, 32), dtype=np.float64)
        for i, c in enumerate(labels):
            angle = np.pi * c / len(CLASSES)
            stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.6 + rng.uniform(0, 2 * np.pi))
            colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53) % 256], dtype=np.float64)
            out[i] = 0.5 * colour[:, None, None] + 60 * stripes + rng.normal(0, 40, (3, 32, 32)) + 64
        return np.clip(out, 0, 255).astype(np.uint8).reshape(len(labels), -1)  # (N, 3072), channel-planar

    def write(name: str, n: int) -> None:
        labels = rng.integers(0, len(CLASSES), n)
        dump_batch(folder / name, {b"batch_label": name.encode(), b"labels": labels.tolist(),
                                  b"data": images_for(labels), b"filenames": [f"fake_{i}.png".encode() for i in range(n)]})

    for name in TRAIN_FILES:
        write(name, train_per_batch)
    write(TEST_FILES[0], test_size)
    (folder / "fake_cifar10").write_text("written by cifar_lab.make_fake_cifar10: synthetic, not CIFAR-10\n")
    dump_batch(folder / META_FILE, {b"label_names": [c.encode() for c in CLASSES],
                                   b"num_cases_per_batch": train_per_batch, b"num_vis": 3072})
    return folder


class _Python2StrPickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str`, as the original batch files do: loaders reading with
    encoding="latin1" (torchvision) then get str keys, and encoding="bytes" (Keras) gets bytes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def dump_batch(path: Path, obj: dict) -> None:
    """Write a batch dict as the original files do: a protocol-2 pickle whose byte strings read as Python 2 str."""
    # atomic: parallel runs (sweeps, torchrun ranks) may write the same synthetic files at once
    atomic_write(path, lambda f: _Python2StrPickler(f, protocol=2).dump(obj))
