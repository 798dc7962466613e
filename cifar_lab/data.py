"""CIFAR-10 on disk, in memory and in batches.

The batch files of the original "python version" are read straight into uint8
tensors; training batches are then built on the training device, all images of
a batch at once (crop with black padding and flip as torchvision's RandomCrop and
RandomHorizontalFlip do, cutout, normalisation), with no worker processes and no PIL. `textbook_loaders` keeps the usual torchvision Dataset + DataLoader
path for comparison.
"""
from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
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

def _unpickle(path: Path) -> dict:
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
    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise CifarDataError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarDataError(f"{path}: expected images as uint8 rows of 3072 values (N, 3072), "
                             f"found {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise CifarDataError(f"{path}: {len(data)} images but {labels.size} labels; the counts must match")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise CifarDataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are channel-planar: (N, C, H, W)
    return images, torch.from_numpy(labels.astype(np.int64))


def read_classes(path: str | Path) -> list[str]:
    """The class names stored in `batches.meta`."""
    meta = _unpickle(Path(path))
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES):
        found = len(names) if isinstance(names, list) else "no"
        raise CifarDataError(f"{path}: expected {len(CLASSES)} class names under 'label_names', found {found}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _missing_message(folder: Path, why: str) -> str:
    expected = ", ".join(TRAIN_FILES + TEST_FILES + [META_FILE])
    return (f"CIFAR-10 not found in {folder} ({why}).\n"
            f"Expected the files {expected} there.\n"
            f"To place them by hand: download {URL} on a machine with internet, copy it into "
            f"{folder.parent} and run `tar -xzf {ARCHIVE}` there (or pass data_dir=... / set ${DATA_DIR_ENV} "
            f"to the folder that holds {FOLDER}/).")


def download_cifar10(root: str | Path, timeout: float = 30.0) -> None:
    """Fetch the official archive into `root` and check its md5 (torchvision's own utilities)."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # offline: fail in seconds, never hang
    try:
        download_and_extract_archive(URL, str(root), filename=ARCHIVE, md5=ARCHIVE_MD5)
    except Exception as e:  # URLError, timeouts, md5 mismatch: all mean "no usable archive"
        raise CifarDataError(_missing_message(root / FOLDER, f"download failed: {e}")) from e
    finally:
        socket.setdefaulttimeout(old)


def find_cifar10(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The `cifar-10-batches-py` folder under `data_dir`, downloading it first if asked and needed."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if root.exists() and not root.is_dir():
        raise CifarDataError(f"data_dir {root} is a file; give the folder that holds (or will hold) {FOLDER}/")
    folder = root if root.name == FOLDER else root / FOLDER
    names = TRAIN_FILES + TEST_FILES + [META_FILE]
    if all((folder / n).is_file() for n in names):
        return folder
    if download:
        download_cifar10(folder.parent)
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

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of 'train', 'val' or 'test'."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {name!r}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def loader(self, split: str, batch_size: int = 128, train: bool | None = None, **kwargs) -> "DeviceLoader":
        """A `DeviceLoader` over one split; augmentation and shuffling only for 'train' unless told."""
        images, labels = self.split(split)
        train = (split == "train") if train is None else train
        return DeviceLoader(images, labels, self.mean, self.std, batch_size=batch_size, train=train, **kwargs)

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
    if not isinstance(val_size, int) or isinstance(val_size, bool) or not 0 <= val_size < n:
        raise ValueError(f"val_size must be an integer from 0 to {n - 1} (the training set has {n} images), "
                         f"not {val_size!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def load_cifar10(data_dir: str | Path | None = None,
                 val_size: int = 5000,  # images held out of the 50,000 for validation
                 seed: int = 0,  # seed of the train/validation split
                 download: bool = True,  # fetch the official archive when the files are missing
                 subset: int | None = None,  # keep only this many training (and a tenth as many test) images
                 ) -> CIFAR10Data:
    """Load CIFAR-10 from the python-version batch files, downloading them when missing."""
    folder = find_cifar10(data_dir, download=download)
    classes = read_classes(folder / META_FILE)
    train = [read_batch(folder / n, len(classes)) for n in TRAIN_FILES]
    images, labels = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
    test_images, test_labels = read_batch(folder / TEST_FILES[0], len(classes))
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
        test_images, test_labels = test_images[:max(subset // 10, 1)], test_labels[:max(subset // 10, 1)]
        val_size = min(val_size, len(labels) // 10)
    train_idx, val_idx = split_indices(len(labels), val_size, seed)
    mean, std = channel_stats(images[train_idx])
    return CIFAR10Data(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                       test_images, test_labels, classes, mean, std, source=str(folder))


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
        _dump_py2(folder / name, {b"batch_label": name.encode(), b"labels": labels.tolist(),
                                  b"data": images_for(labels), b"filenames": [f"fake_{i}.png".encode() for i in range(n)]})

    for name in TRAIN_FILES:
        write(name, train_per_batch)
    write(TEST_FILES[0], test_size)
    _dump_py2(folder / META_FILE, {b"label_names": [c.encode() for c in CLASSES],
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


def _dump_py2(path: Path, obj: dict) -> None:
    # atomic: parallel runs (sweeps, torchrun ranks) may write the same synthetic files at once
    atomic_write(path, lambda f: _Python2StrPickler(f, protocol=2).dump(obj))


# ---------------------------------------------------------------- batches on the device

def augment(x: torch.Tensor, crop_padding: int = 0, flip: bool = False, cutout: int = 0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random crop (zero padding), horizontal flip and cutout of a batch (B, C, H, W), any dtype."""
    b, c, h, w = x.shape
    dev = x.device

    def rand_int(high: int) -> torch.Tensor:  # (B,) integers in [0, high), from the seeded generator
        return torch.randint(0, high, (b,), generator=generator).to(dev)

    if crop_padding > 0 or flip:
        p = crop_padding
        dy, dx = rand_int(2 * p + 1), rand_int(2 * p + 1)  # crop offsets; 0 when p == 0
        ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
        cols = torch.where(rand_int(2).bool()[:, None], w - 1 - xs, xs) if flip else xs.expand(b, w)  # (B, W)
        rows = dy.view(b, 1) + ys  # (B, H), in the padded image
        cols = dx.view(b, 1) + cols
        # crop and flip in one gather over the flattened padded images
        padded = torch.nn.functional.pad(x, (p, p, p, p)).flatten(2)  # (B, C, (H+2p)*(W+2p))
        index = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, h * w)  # (B, 1, H*W)
        x = padded.gather(2, index.expand(b, c, h * w)).view(b, c, h, w)
    if cutout > 0:
        cy, cx = rand_int(h)[:, None], rand_int(w)[:, None]  # square centres, (B, 1)
        ys, xs = torch.arange(h, device=dev)[None], torch.arange(w, device=dev)[None]
        in_y = (ys - cy).abs() <= cutout // 2  # (B, H)
        in_x = (xs - cx).abs() <= cutout // 2  # (B, W)
        x = x.masked_fill(in_y[:, None, :, None] & in_x[:, None, None, :], 0)
    return x


class DeviceLoader:
    """Batches of normalised float images built on the device from one uint8 tensor held there.

    Iterating yields `(images, labels)` like a DataLoader; `len` is the number of batches.
    In data-parallel training (`world_size` > 1) every rank draws the same seeded order and
    takes its own share of each batch, so `batch_size` stays the images per optimisation step.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int = 128,  # images per batch
                 train: bool = True,  # shuffle, augment and drop the last partial batch
                 crop_padding: int = 4,  # random-crop padding in pixels (0: no crop); train only
                 flip: bool = True,  # random horizontal flip; train only
                 cutout: int = 0,  # side of a random zeroed square in pixels (0: none); train only
                 seed: int = 0,  # seed of shuffling and augmentation
                 device: str | torch.device = "cpu",
                 channels_last: bool = False,  # yield NHWC-strided batches (faster convolutions)
                 rank: int = 0,  # this process's rank in data-parallel training
                 world_size: int = 1,  # processes sharing each batch (train) or the split (evaluation)
                 ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if train and batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} (images per step over all processes) must be divisible "
                             f"by the {world_size} processes; try {batch_size - batch_size % world_size or world_size}")
        if not train:  # evaluation: each rank takes every world_size-th image, once
            images, labels = images[rank::world_size], labels[rank::world_size]
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.mean = (mean.float() * 255).view(1, 3, 1, 1).to(self.device)
        self.std = (std.float() * 255).view(1, 3, 1, 1).to(self.device)
        self.batch_size, self.train = batch_size, train
        self.crop_padding, self.flip, self.cutout = crop_padding, flip, cutout
        self.channels_last = channels_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0  # passes made so far; with the seed it fixes each pass's order and augmentation
                        # (a resumed run sets it to the epochs already done)
        self.drop_last = train and len(labels) >= batch_size

    @property
    def dataset_size(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        n = self.dataset_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) to float, standardised per channel."""
        return (images.float() - self.mean) / self.std

    def __iter__(self):
        n = self.dataset_size
        # every rank draws the same order (so together they cover each batch once) but its own augmentation
        order = torch.randperm(n, generator=_generator(self.seed, self.epoch)).to(self.device) if self.train else None
        augment_generator = _generator(self.seed, self.epoch, self.rank, 1)
        self.epoch += 1
        for i in range(len(self)):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            take = order[idx].tensor_split(self.world_size)[self.rank] if order is not None else idx
            x = self.images[take]  # uint8: augmenting before the float conversion moves 4x fewer bytes
            if self.train:
                x = augment(x, self.crop_padding, self.flip, self.cutout, augment_generator)
            x = self.normalise(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[take]


def _generator(*seeds: int) -> torch.Generator:
    """A torch generator seeded from several integers (seed, epoch, rank...), well mixed."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(seeds)).generate_state(1, np.uint64)[0]))


# ---------------------------------------------------------------- the textbook pipeline

def textbook_loaders(data_dir: str | Path | None = None, batch_size: int = 128, num_workers: int = 2,
                     val_size: int = 5000, seed: int = 0, download: bool = True):
    """The usual course-material path: torchvision `CIFAR10` + PIL transforms + `DataLoader`.

    Returns (train_loader, val_loader, test_loader). The files are checked by content
    (as in `load_cifar10`) instead of by md5, so that an equivalent copy loads too.
    """
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import CIFAR10

    folder = find_cifar10(data_dir, download=download)
    classes = read_classes(folder / META_FILE)
    batches = [read_batch(folder / n, len(classes)) for n in TRAIN_FILES]
    train_idx, val_idx = split_indices(sum(len(y) for _, y in batches), val_size, seed)
    mean, std = channel_stats(torch.cat([x for x, _ in batches])[train_idx])

    class ContentCheckedCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:  # read_batch above checked the content already
            return True

        def _load_meta(self) -> None:
            self.classes = classes
            self.class_to_idx = {c: i for i, c in enumerate(classes)}

    normalise = transforms.Normalize(mean.tolist(), std.tolist())
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalise])
    eval_tf = transforms.Compose([transforms.ToTensor(), normalise])
    root = str(folder.parent)
    train_set = Subset(ContentCheckedCIFAR10(root, train=True, transform=train_tf), train_idx.tolist())
    val_set = Subset(ContentCheckedCIFAR10(root, train=True, transform=eval_tf), val_idx.tolist())
    test_set = ContentCheckedCIFAR10(root, train=False, transform=eval_tf)
    kw = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    return (DataLoader(train_set, shuffle=True, drop_last=True, **kw),
            DataLoader(val_set, shuffle=False, **kw), DataLoader(test_set, shuffle=False, **kw))
