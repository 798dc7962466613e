"""A copy of a CIFAR-10 folder with every image JPEG-compressed once more: to measure what compression costs.

    python -m cifar_lab.jpeg data/ data/jpeg_again/        # then train with -p data_dir data/jpeg_again

The course's data copy is JPEG-q75; training the same recipe on it and on this copy (compressed once more)
gives the slope: how many points of test accuracy one more round of compression takes away.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from .data import FOLDER, META_FILE, RECOMPRESSED_MARKER, TEST_FILES, TRAIN_FILES, find_cifar10, unpickle
from .fake import dump_batch
from .notebooks import shown_path


def jpeg_roundtrip(rows: np.ndarray, quality: int = 75) -> np.ndarray:
    """Each image of (N, 3072) channel-planar uint8 rows, JPEG-encoded at `quality` and decoded again."""
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3): PIL wants channels last
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)  # PIL's default 4:2:0 chroma subsampling
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out.transpose(0, 3, 1, 2).reshape(len(rows), -1)  # back to (N, 3072), channel-planar


def recompress(src: str | Path, dst: str | Path, quality: int = 75) -> Path:
    """Write `dst`/cifar-10-batches-py/: the batches of `src`'s CIFAR-10 with every image JPEG-compressed once more."""
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be 1..95 (PIL's useful JPEG range), got {quality}")
    source = find_cifar10(src, download=False)
    folder = Path(dst) / FOLDER
    if folder.resolve() == source.resolve():
        raise ValueError(f"the copy would overwrite its source {source}: choose another destination")
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + TEST_FILES:
        batch = unpickle(source / name)  # str keys; a truncated file is a CifarDataError naming it
        batch["data"] = jpeg_roundtrip(np.asarray(batch["data"], dtype=np.uint8), quality)
        dump_batch(folder / name, {k.encode(): v for k, v in batch.items()})  # the original's byte-string keys
    (folder / META_FILE).write_bytes((source / META_FILE).read_bytes())
    if (source / "fake_cifar10").exists():  # a copy of the synthetic set is still synthetic
        (folder / "fake_cifar10").write_text((source / "fake_cifar10").read_text())
    (folder / RECOMPRESSED_MARKER).write_text(f"every image of {shown_path(str(source.resolve()))} JPEG-compressed at quality {quality}\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder holding cifar-10-batches-py/")
    parser.add_argument("dst", help="where to write the recompressed cifar-10-batches-py/")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality, 1..95 (default 75)")
    args = parser.parse_args(argv)
    print(f"wrote {recompress(args.src, args.dst, args.quality)}")


if __name__ == "__main__":
    main()
