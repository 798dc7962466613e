"""CIFAR-10 on disk and in memory: the original "python version" batch files, read straight into uint8
tensors, checked by content, split into train/validation/test (batches: `loader.py`)."""
from __future__ import annotations

import os
import pickle
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import socket_timeout
from .options import DATA, check, check_value, default
from .loader import DeviceLoader

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"
RECOMPRESSED_MARKER = "jpeg_recompressed"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
TEST_BATCH_MD5 = "40351d587109b95175f43aff81a1287e"  # of the official test_batch: tells the original from copies
DATA_DIR_ENV = "CIFAR_LAB_DATA"


class CifarDataError(RuntimeError):
    """The data set is missing, or one of its files is not what CIFAR-10 holds."""


def default_data_dir() -> Path:
    """$CIFAR_LAB_DATA if set, else `data/` at the top of this checkout (or of the working directory)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    return checkout / "data" if (checkout / "pyproject.toml").exists() else Path("data").resolve()


# ---------------------------------------------------------------- reading files

def unpickle(path: Path) -> dict:
    """A batch file as a dict with str keys (the files hold Python 2 byte strings)."""
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise CifarDataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); "
                             "delete the folder and download or place the archive again") from e
    if not isinstance(raw, dict):
        raise CifarDataError(f"{path} does not hold a CIFAR-10 batch (a dict), but a {type(raw).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def read_batch(path: str | Path, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as uint8 images (N, 3, 32, 32) and int64 labels (N,), checked by content."""
    path = Path(path)
    batch = unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise CifarDataError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarDataError(f"{path}: expected images as uint8 rows of 3072 values (N, 3072), "
                             f"found {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise CifarDataError(f"{path}: {len(data)} images but {labels.size} labels; the counts must match")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == labels.round())):
        raise CifarDataError(f"{path}: labels must be whole numbers 0..{num_classes - 1}, found {labels.dtype} "
                             f"values such as {labels.flat[0].item()!r}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CifarDataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are channel-planar: (N, C, H, W)
    return images, torch.from_numpy(labels.astype(np.int64))


def read_classes(path: str | Path) -> list[str]:
    """The class names stored in `batches.meta`."""
    meta = unpickle(Path(path))
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES):
        found = len(names) if isinstance(names, list) else "no"
        raise CifarDataError(f"{path}: expected {len(CLASSES)} class names under 'label_names', found {found}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _missing_message(folder: Path, why: str) -> str:
    expected = ", ".join(TRAIN_FILES + TEST_FILES + [META_FILE])
    archive = folder.parent / ARCHIVE
    if archive.exists():  # most often a download cut short
        why += f"; {archive} is there but could not be unpacked ({archive.stat().st_size:,} bytes, the full one has " \
               f"170,498,071): delete it and download it again"
    return (f"CIFAR-10 not found in {folder} ({why}).\n"
            f"Expected the files {expected} there.\n"
            f"To place them by hand: download {URL} on a machine with internet, copy it into "
            f"{folder.parent} and run `tar -xzf {ARCHIVE}` there (or pass data_dir=... / set ${DATA_DIR_ENV} "
            f"to the folder that holds {FOLDER}/).")


def download_cifar10(root: str | Path, timeout: float = 30.0) -> None:
    """Fetch the official archive into `root` and check its md5 (torchvision's own utilities)."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    try:
        with socket_timeout(timeout):  # offline: fail in seconds, never hang
            download_and_extract_archive(URL, str(root), filename=ARCHIVE, md5=ARCHIVE_MD5)
    except Exception as e:  # URLError, timeouts, md5 mismatch: all mean "no usable archive"
        raise CifarDataError(_missing_message(root / FOLDER, f"download failed: {e}")) from e


def find_cifar10(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The `cifar-10-batches-py` folder under `data_dir`, downloading it first if asked and needed."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if root.exists() and not root.is_dir():
        raise CifarDataError(f"data_dir {root} is a file; give the folder that holds (or will hold) {FOLDER}/")
    folder = root if root.name == FOLDER else root / FOLDER
    names = TRAIN_FILES + TEST_FILES + [META_FILE]
    if all((folder / n).is_file() for n in names):
        return folder
    missing = [n for n in names if not (folder / n).is_file()]
    if download:
        try:
            download_cifar10(folder.parent)
        except CifarDataError as e:
            raise CifarDataError(f"{e}\nMissing before the download: {', '.join(missing)}.") from e
        if all((folder / n).is_file() for n in names):
            return folder
    missing = [n for n in names if not (folder / n).is_file()]
    raise CifarDataError(_missing_message(folder, f"missing: {', '.join(missing)}"))


# ---------------------------------------------------------------- the data set in memory

@dataclass
class CIFAR10Data:
    """CIFAR-10 as uint8 image tensors (N, 3, 32, 32) and int64 labels, split into train/val/test."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    mean: torch.Tensor  # per channel, on the 0..1 scale, from the training split only
    std: torch.Tensor
    source: str = ""  # folder read, recorded next to every run's metrics
    origin: str = "CIFAR-10"  # which files: the official ones, a copy (such as the JPEG-q75 one), synthetic

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of 'train', 'val' or 'test'."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {name!r}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def loader(self, split: str, batch_size: int = 128, train: bool | None = None, **kwargs) -> DeviceLoader:
        """A `DeviceLoader` over one split; augmentation and shuffling only for 'train' unless told."""
        images, labels = self.split(split)
        train = (split == "train") if train is None else train
        return DeviceLoader(images, labels, self.mean, self.std, batch_size=batch_size, train=train, **kwargs)

    def describe(self) -> str:
        """Which data and how it is split, in words (for banners and reports)."""
        sizes = ", ".join(f"{len(self.split(s)[1]):,} {s}" for s in ("train", "val", "test"))
        return f"{self.origin}: {sizes}"

    def normalized(self, mean: float, std: float) -> "CIFAR10Data":
        """The same data, normalised with a fixed mean and std for every channel (0..1 scale)."""
        return dataclasses.replace(self, mean=torch.full((3,), float(mean)), std=torch.full((3,), float(std)))

    def subset(self, train_size: int) -> "CIFAR10Data":
        """The same data with only the first `train_size` training images (the split is already shuffled)."""
        check_value("train_size", train_size, int, low=1)
        images, labels = self.train_images[:train_size], self.train_labels[:train_size]
        mean, std = channel_stats(images)
        return dataclasses.replace(self, train_images=images, train_labels=labels, mean=mean, std=std)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.split(s)[1]):,}" for s in ("train", "val", "test"))
        return f"CIFAR10Data({sizes}, classes={self.num_classes}, source={self.source!r})"


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), on the 0..1 scale."""
    # from each channel's histogram of the 256 values: exact, without a float64 copy of the set (1.1 GB)
    values = torch.arange(256, dtype=torch.float64) / 255
    counts = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])])
    counts = counts.double()  # (C, 256)
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    var = (counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1)  # unbiased, as torch.std
    return mean.float(), var.sqrt().float()


def split_indices(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random train/validation indices of a set of `n` examples."""
    if not isinstance(val_size, int) or isinstance(val_size, bool) or not 1 <= val_size < n:
        raise ValueError(f"val_size must be an integer from 1 to {n - 1} (the training set has {n} images), "
                         f"not {val_size!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def check_batches(folder: Path, batches: list[torch.Tensor]) -> None:
    """The training batch files hold equally many images, and no two batch files hold the same images."""
    names = TRAIN_FILES + TEST_FILES
    counts = {n: len(x) for n, x in zip(TRAIN_FILES, batches)}
    if len(set(counts.values())) > 1:
        raise CifarDataError(f"{folder}: the training batch files should hold equally many images, found "
                             f"{', '.join(f'{n} {c:,}' for n, c in counts.items())}; a file is truncated or "
                             f"replaced: download or place the archive again")
    seen = {}
    for name, x in zip(names, batches):
        digest = hashlib.md5(x.numpy().tobytes()).hexdigest()
        if digest in seen:
            raise CifarDataError(f"{folder}: {name} holds the same images as {seen[digest]} (a copied file would "
                                 f"put the same images in training and validation or test); place the archive again")
        seen[digest] = name


def load_cifar10(data_dir: str | Path | None = None,
                 val_size: int = default("val_size"),  # images held out of the 50,000 for validation
                 seed: int = default("seed"),  # of the train/validation split
                 download: bool = True,  # fetch the official archive when the files are missing
                 subset: int | None = None,  # keep only this many training (and a tenth as many test) images
                 ) -> CIFAR10Data:
    """Load CIFAR-10 from the python-version batch files, downloading them when missing."""
    check({"val_size": val_size}, DATA)
    if subset is not None:
        check_value("subset", subset, int, low=10)  # a tenth of it is the validation split
    folder = find_cifar10(data_dir, download=download)
    classes = read_classes(folder / META_FILE)
    train = [read_batch(folder / n, len(classes)) for n in TRAIN_FILES]
    test_images, test_labels = read_batch(folder / TEST_FILES[0], len(classes))
    check_batches(folder, [x for x, _ in train] + [test_images])
    images, labels = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
        test_images, test_labels = test_images[:max(subset // 10, 1)], test_labels[:max(subset // 10, 1)]
        val_size = min(val_size, len(labels) // 10)
    train_idx, val_idx = split_indices(len(labels), val_size, seed)
    mean, std = channel_stats(images[train_idx])
    return CIFAR10Data(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                       test_images, test_labels, classes, mean, std, source=str(folder), origin=origin(folder))


def origin(folder: Path) -> str:
    """'CIFAR-10 (official files)' when test_batch is the official one, else a name saying it is a copy."""
    if (folder / "fake_cifar10").exists():
        return "synthetic CIFAR-10 look-alike"
    if (folder / RECOMPRESSED_MARKER).exists():  # written by cifar_lab.jpeg
        return "CIFAR-10 copy, JPEG-compressed once more: " + (folder / RECOMPRESSED_MARKER).read_text().strip()
    digest = hashlib.md5((folder / TEST_FILES[0]).read_bytes()).hexdigest()
    return "CIFAR-10 (official files)" if digest == TEST_BATCH_MD5 else \
        "CIFAR-10 (a copy, not the official files: e.g. the course's JPEG-q75 copy)"
