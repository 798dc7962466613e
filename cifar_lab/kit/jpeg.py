"""A copy of a CIFAR-10 folder with every image JPEG-compressed once more: to measure what compression costs.

    cifar-lab jpeg data/ data/jpeg_again/            # then train with -p data_dir ../data/jpeg_again
    cifar-lab jpeg data/ data/jpeg_shift3/ --shift 3  # the block grid moved by 3 pixels

The course's data copy is JPEG-q75; training the same recipe on it and on this copy (compressed once more)
gives the slope: how many points of test accuracy one more round of compression takes away. A second pass
on the same 8x8 grid at the same quality finds the copy's block coefficients already quantised to its steps
and changes little; with the grid moved (`shift`, odd so that 4:2:0's 2x2 chroma pairs move too) the blocks
straddle the old ones and the pass throws detail away afresh, as the copy's own first pass did.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import CifarDataError, FOLDER, META_FILE, RECOMPRESSED_MARKER, TEST_FILES, TRAIN_FILES, find_cifar10, unpickle
from .fake import dump_batch
from .notebooks import shown_path


def jpeg_roundtrip(rows: np.ndarray, quality: int = 75, shift: int = 0) -> np.ndarray:
    """Each image of (N, 3072) channel-planar uint8 rows, JPEG-encoded at `quality` and decoded again.

    `shift` > 0 moves JPEG's block grid that many pixels down and right of the image's corner: the image is
    reflect-padded to a canvas of whole 16x16 blocks, starting `shift` pixels in, and cut out again.
    """
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3): PIL wants channels last
    after = -(32 + shift) % 16  # 4:2:0 codes 16x16 blocks: pad the canvas to a whole number of them
    out = np.empty_like(images)
    for i, image in enumerate(images):
        canvas = np.pad(image, ((shift, after), (shift, after), (0, 0)), mode="reflect") if shift else image
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, format="JPEG", quality=quality)  # PIL's default 4:2:0 chroma subsampling
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))[shift:shift + 32, shift:shift + 32]
    return out.transpose(0, 3, 1, 2).reshape(len(rows), -1)  # back to (N, 3072), channel-planar


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of one shape (inf when they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def recompress(src: str | Path, dst: str | Path, quality: int = 75, shift: int = 0) -> Path:
    """Write `dst`/cifar-10-batches-py/: the batches of `src`'s CIFAR-10 with every image JPEG-compressed once more."""
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be 1..95 (PIL's useful JPEG range), got {quality}")
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 15:
        raise ValueError(f"shift must be a whole number of pixels 0..15 (the grid repeats every 16), got {shift!r}")
    source = find_cifar10(src, download=False)
    folder = Path(dst) / FOLDER
    if folder.resolve() == source.resolve():
        raise ValueError(f"the copy would overwrite its source {source}: choose another destination")
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + TEST_FILES:
        batch = unpickle(source / name)  # str keys; a truncated file is a CifarDataError naming it
        batch["data"] = jpeg_roundtrip(np.asarray(batch["data"], dtype=np.uint8), quality, shift)
        dump_batch(folder / name, {k.encode(): v for k, v in batch.items()})  # the original's byte-string keys
    (folder / META_FILE).write_bytes((source / META_FILE).read_bytes())
    if (source / "fake_cifar10").exists():  # a copy of the synthetic set is still synthetic
        (folder / "fake_cifar10").write_text((source / "fake_cifar10").read_text())
    grid = f", block grid shifted by {shift} pixels" if shift else ""
    (folder / RECOMPRESSED_MARKER).write_text(
        f"every image of {shown_path(str(source.resolve()))} JPEG-compressed at quality {quality}{grid}\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder holding cifar-10-batches-py/")
    parser.add_argument("dst", help="where to write the recompressed cifar-10-batches-py/")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality, 1..95 (default 75)")
    parser.add_argument("--shift", type=int, default=0,
                        help="pixels (0..15) to move the 8x8 block grid by; odd moves the chroma pairs too (default 0)")
    args = parser.parse_args(argv)
    try:
        folder = recompress(args.src, args.dst, args.quality, args.shift)
    except (ValueError, CifarDataError) as e:  # not a CIFAR-10 folder, a broken batch, a bad quality
        raise SystemExit(f"error: {e}") from None
    before = unpickle(find_cifar10(args.src, download=False) / TEST_FILES[0])["data"]
    after = unpickle(folder / TEST_FILES[0])["data"]
    print(f"wrote {folder}; test images changed by {psnr(np.asarray(before), np.asarray(after)):.1f} dB PSNR "
          f"(mean absolute change {np.abs(np.asarray(after, dtype=int) - before).mean():.2f} of 255)")


if __name__ == "__main__":
    main()
