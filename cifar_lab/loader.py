"""Batches built on the training device from uint8 images held there: shuffling, augmentation, normalisation.

Crop with black padding and flip as torchvision's RandomCrop and RandomHorizontalFlip do, and cutout,
for all images of a batch at once, with no worker processes and no PIL; or, for the fast recipe, flips
that alternate per image from epoch to epoch.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .options import check, default

# the rows of the (10, B) uniform draws each batch gets: brightness, contrast, saturation, hue; angle; erasing
JITTER_DRAWS, ROTATION_DRAW, ERASING_DRAWS = slice(0, 4), 4, slice(5, 10)


def draw_augmentation(n: int, crop_padding: int, cutout: int, size: int = 32,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Random numbers of n images' augmentation, (5, n): crop offsets dy, dx, flip (0/1), cutout centre y, x.

    Drawn on the CPU from a seeded generator for a whole epoch at once, so the device gets one copy per
    epoch instead of several small host-to-device copies (each a sync on a GPU) per step.
    """
    span = 2 * crop_padding + 1
    return torch.stack([torch.randint(0, high, (n,), generator=generator)
                        for high in (span, span, 2, size, size)])


def augment(x: torch.Tensor, crop_padding: int = 0, flip: bool = False, cutout: int = 0,
            generator: torch.Generator | None = None, random: torch.Tensor | None = None,
            padding_mode: str = "zeros") -> torch.Tensor:
    """Per-image random crop (zero padding), horizontal flip and cutout of a batch (B, C, H, W), any dtype.

    `random` holds the batch's numbers from `draw_augmentation` (drawn here from `generator` if not given).
    """
    b, c, h, w = x.shape
    dev = x.device
    r = random if random is not None else draw_augmentation(b, crop_padding, cutout, h, generator).to(dev)
    if crop_padding > 0 or flip:
        p = crop_padding
        dy, dx = r[0], r[1]  # crop offsets; 0 when p == 0
        ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
        cols = torch.where(r[2].bool()[:, None], w - 1 - xs, xs) if flip else xs.expand(b, w)  # (B, W)
        rows = dy.view(b, 1) + ys  # (B, H), in the padded image
        cols = dx.view(b, 1) + cols
        # crop and flip in one gather over the flattened padded images
        mode = "reflect" if padding_mode == "reflect" else "constant"
        padded = F.pad(x, (p, p, p, p), mode=mode).flatten(2)  # (B, C, (H+2p)*(W+2p))
        index = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, h * w)  # (B, 1, H*W)
        x = padded.gather(2, index.expand(b, c, h * w)).view(b, c, h, w)
    if cutout > 0:
        cy, cx = r[3][:, None], r[4][:, None]  # square centres, (B, 1)
        ys, xs = torch.arange(h, device=dev)[None], torch.arange(w, device=dev)[None]
        in_y = (ys - cy).abs() <= cutout // 2  # (B, H)
        in_x = (xs - cx).abs() <= cutout // 2  # (B, W)
        x = x.masked_fill(in_y[:, None, :, None] & in_x[:, None, None, :], 0)
    return x


# ---------------------------------------------------------------- augmentations on float images

_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@functools.lru_cache(maxsize=None)
def _yiq(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The RGB-to-YIQ matrix and its inverse on `device`: copied there once, not once per batch (a sync on a GPU)."""
    return _YIQ.to(device, dtype), torch.linalg.inv(_YIQ).to(device, dtype)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # (B, 1, H, W)


def color_jitter(x: torch.Tensor, u: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0) -> torch.Tensor:
    """torchvision's ColorJitter for a batch in 0..1, (B, 3, H, W); `u` (4, B) are uniform numbers in 0..1.

    Factors are drawn from [1 - amount, 1 + amount] (hue: a shift in [-hue, hue] of a turn), applied in
    a fixed order (torchvision shuffles it); the hue shift is a rotation of the chroma plane in YIQ space,
    a close and cheap stand-in for torchvision's HSV round trip.
    """
    def factor(k: int, amount: float) -> torch.Tensor:
        return (1 + amount * (2 * u[k] - 1)).view(-1, 1, 1, 1)

    if brightness:
        x = (x * factor(0, brightness)).clamp(0, 1)
    if contrast:
        f = factor(1, contrast)
        x = (f * x + (1 - f) * _gray(x).mean((2, 3), keepdim=True)).clamp(0, 1)
    if saturation:
        f = factor(2, saturation)
        x = (f * x + (1 - f) * _gray(x)).clamp(0, 1)
    if hue:
        angle = hue * (2 * u[3] - 1) * 2 * math.pi  # (B,)
        to_yiq, to_rgb = _yiq(x.device, x.dtype)
        yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
        cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
        i, q = yiq[:, 1] * cos - yiq[:, 2] * sin, yiq[:, 1] * sin + yiq[:, 2] * cos
        yiq = torch.stack([yiq[:, 0], i, q], 1)
        x = torch.einsum("ij,bjhw->bihw", to_rgb, yiq).clamp(0, 1)
    return x


def rotate(x: torch.Tensor, u: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each image turned by an angle in [-degrees, degrees] (u: (B,) in 0..1), black corners, nearest pixel."""
    angle = (2 * u - 1) * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def erase(x: torch.Tensor, u: torch.Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33),
          ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """torchvision's RandomErasing (value 0) for a batch: with probability p a rectangle of scale*area,
    aspect in `ratio`, at a random place, is zeroed. `u` (5, B): apply, area, aspect, top, left in 0..1."""
    b, _, h, w = x.shape
    area = (scale[0] + (scale[1] - scale[0]) * u[1]) * h * w
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[2])
    eh, ew = (area * aspect).sqrt().round().clamp(1, h), (area / aspect).sqrt().round().clamp(1, w)  # (B,)
    top, left = ((h - eh + 1) * u[3]).floor(), ((w - ew + 1) * u[4]).floor()
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # (B, H)
    in_x = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # (B, W)
    hit = (in_y[:, :, None] & in_x[:, None, :]) & (u[0] < p)[:, None, None]  # (B, H, W)
    return x.masked_fill(hit[:, None], 0)


class DeviceLoader:
    """Batches of normalised float images built on the device from one uint8 tensor held there.

    Iterating yields `(images, labels)` like a DataLoader; `len` is the number of batches.
    In data-parallel training (`world_size` > 1) every rank draws the same seeded order and
    takes its own share of each batch, so `batch_size` stays the images per optimisation step.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int = default("batch_size"),
                 train: bool = True,  # shuffle, augment and drop the last partial batch
                 # augmentation, train only (meanings and units: options.TRAINING)
                 crop_padding: int = default("crop_padding"), flip: bool = default("flip"),
                 cutout: int = default("cutout"), padding_mode: str = default("padding_mode"),
                 brightness: float = default("brightness"), contrast: float = default("contrast"),
                 saturation: float = default("saturation"), hue: float = default("hue"),
                 rotation: float = default("rotation"), erasing: float = default("erasing"),
                 erasing_scale: tuple[float, float] = default("erasing_scale"),
                 alternate_flip: bool = False,  # with flip: each image mirrored in every other epoch
                 seed: int = default("seed"),  # of shuffling and augmentation
                 device: str | torch.device = "cpu",
                 channels_last: bool = False,  # yield NHWC-strided batches (faster convolutions)
                 rank: int = 0,  # this process's rank in data-parallel training
                 world_size: int = 1,  # processes sharing each batch (train) or the split (evaluation)
                 ):
        if train:  # training needs 2 images a batch for BatchNorm: the option's own rule
            check({"batch_size": batch_size})
        elif not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
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
        self.crop_padding, self.flip, self.cutout, self.padding_mode = crop_padding, flip, cutout, padding_mode
        self.jitter = dict(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
        self.rotation, self.erasing, self.erasing_scale = rotation, erasing, tuple(erasing_scale)
        self.float_augmentation = any(self.jitter.values()) or rotation > 0 or erasing > 0
        self.alternate_flip = alternate_flip
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

    def _float_augment(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Colour jitter and rotation on 0..1 images, then normalisation, then erasing (torchvision's order).

        `u` holds 10 uniform draws per image (10, B): the rows named below, so the draws never change meaning.
        """
        jitter_draws, angle_draws, erasing_draws = u[JITTER_DRAWS], u[ROTATION_DRAW], u[ERASING_DRAWS]
        x = x.float() / 255
        if any(self.jitter.values()):
            x = color_jitter(x, jitter_draws, **self.jitter)
        if self.rotation > 0:
            x = rotate(x, angle_draws, self.rotation)
        x = (x * 255 - self.mean) / self.std
        return erase(x, erasing_draws, self.erasing, self.erasing_scale) if self.erasing > 0 else x

    def __iter__(self):
        n = self.dataset_size
        # every rank draws the same order (so together they cover each batch once) but its own augmentation
        order, random, uniform = None, None, None
        if self.train:  # the epoch's order and augmentation, each moved to the device in one copy
            order = torch.randperm(n, generator=_generator(self.seed, self.epoch)).to(self.device)
            random = draw_augmentation(n, self.crop_padding, self.cutout, self.images.shape[-1],
                                       _generator(self.seed, self.epoch, self.rank, 1)).to(self.device)
            if self.flip and self.alternate_flip:  # random in the first epoch, then the other way each epoch
                first = torch.randint(0, 2, (n,), generator=_generator(self.seed, self.rank, 3))  # per image
                random[2] = (first.to(self.device)[order] + self.epoch) % 2
            if self.float_augmentation:  # jitter 4, rotation 1, erasing 5 numbers per image
                uniform = torch.rand(10, n, generator=_generator(self.seed, self.epoch, self.rank, 2)).to(self.device)
        self.epoch += 1
        for i in range(len(self)):
            idx = _share(i * self.batch_size, min((i + 1) * self.batch_size, n), self.rank, self.world_size) \
                if self.train else slice(i * self.batch_size, (i + 1) * self.batch_size)
            take = order[idx] if order is not None else idx
            x = self.images[take]  # uint8: augmenting before the float conversion moves 4x fewer bytes
            if self.train:
                x = augment(x, self.crop_padding, self.flip, self.cutout, random=random[:, idx],
                            padding_mode=self.padding_mode)
            x = self.normalise(x) if uniform is None else self._float_augment(x, uniform[:, idx])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[take]


def _share(start: int, stop: int, rank: int, world: int) -> slice:
    """This rank's part of positions start..stop, as `tensor_split` would cut them."""
    q, extra = divmod(stop - start, world)
    first = start + rank * q + min(rank, extra)
    return slice(first, first + q + (rank < extra))


def _generator(*seeds: int) -> torch.Generator:
    """A torch generator seeded from several integers (seed, epoch, rank...), well mixed."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(seeds)).generate_state(1, np.uint64)[0]))
