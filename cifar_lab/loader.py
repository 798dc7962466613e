"""Batches built on the training device from uint8 images held there: shuffling, augmentation, normalisation.

Crop with black padding and flip as torchvision's RandomCrop and RandomHorizontalFlip do, and cutout,
for all images of a batch at once, with no worker processes and no PIL.
"""
from __future__ import annotations

import numpy as np
import torch


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
