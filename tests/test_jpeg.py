"""The recompressed copy: same labels and layout, images changed a little, labelled as a copy."""
import numpy as np
import pytest

from cifar_lab.data import load_cifar10, origin, read_batch
from cifar_lab.fake import make_fake_cifar10
from cifar_lab.jpeg import jpeg_roundtrip, main, recompress


def test_roundtrip_keeps_shape_and_changes_pixels_a_little():
    rows = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 32 * 32).astype(np.uint8)[None], 3 * 4, 0).reshape(4, 3072)
    out = jpeg_roundtrip(smooth)
    assert out.shape == (4, 3072) and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - smooth).mean() < 10  # a smooth image survives JPEG nearly intact
    assert np.abs(jpeg_roundtrip(rows).astype(int) - rows).mean() > 10  # noise does not


def test_recompress_writes_a_loadable_copy_and_leaves_the_source(tmp_path):
    source = make_fake_cifar10(tmp_path / "src", train_per_batch=20, test_size=20)
    before = (source / "test_batch").read_bytes()
    folder = recompress(tmp_path / "src", tmp_path / "again", quality=50)
    assert (source / "test_batch").read_bytes() == before
    old, new = read_batch(source / "data_batch_1"), read_batch(folder / "data_batch_1")
    assert old[0].shape == new[0].shape and (old[1] == new[1]).all()  # same images' places, same labels
    assert (old[0] != new[0]).any()
    data = load_cifar10(tmp_path / "again", val_size=10, download=False)
    assert "synthetic" in data.origin  # a copy of the synthetic set stays labelled synthetic
    (folder / "fake_cifar10").unlink()
    assert "JPEG-compressed once more" in origin(folder) and "quality 50" in origin(folder)


def test_recompress_refuses_bad_quality_and_overwriting_its_source(tmp_path):
    make_fake_cifar10(tmp_path, train_per_batch=5, test_size=5)
    with pytest.raises(ValueError, match="quality"):
        recompress(tmp_path, tmp_path / "x", quality=0)
    with pytest.raises(ValueError, match="overwrite"):
        main([str(tmp_path), str(tmp_path)])
