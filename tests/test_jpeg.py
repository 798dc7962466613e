"""The recompressed copy: same labels and layout, images changed a little, labelled as a copy."""
import numpy as np
import pytest

from cifar_lab.data import load_cifar10, origin, read_batch
from cifar_lab.kit.fake import make_fake_cifar10
from cifar_lab.kit.jpeg import jpeg_roundtrip, main, psnr, recompress


def test_roundtrip_keeps_shape_and_changes_pixels_a_little():
    rows = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 32 * 32).astype(np.uint8)[None], 3 * 4, 0).reshape(4, 3072)
    out = jpeg_roundtrip(smooth)
    assert out.shape == (4, 3072) and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - smooth).mean() < 10  # a smooth image survives JPEG nearly intact
    assert np.abs(jpeg_roundtrip(rows).astype(int) - rows).mean() > 10  # noise does not


def textured(n: int = 4) -> np.ndarray:
    """Blocky colour patches with grain: images with detail JPEG has to throw away, (n, 3072) uint8."""
    rng = np.random.default_rng(0)
    patches = np.kron(rng.integers(0, 256, (n, 3, 8, 8)), np.ones((1, 1, 4, 4)))  # (n, 3, 32, 32)
    return (patches + rng.normal(0, 10, patches.shape)).clip(0, 255).astype(np.uint8).reshape(n, -1)


def test_a_second_pass_on_the_same_grid_changes_little_a_shifted_one_much_more():
    once = jpeg_roundtrip(textured())
    same_grid, shifted = jpeg_roundtrip(once), jpeg_roundtrip(once, shift=3)
    assert shifted.shape == once.shape and shifted.dtype == np.uint8
    assert psnr(once, same_grid) > psnr(once, shifted) + 2  # dB: the moved blocks lose detail afresh
    assert psnr(once, once) == float("inf")


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


def test_command_writes_a_shifted_copy_and_says_how_much_it_changed(tmp_path, capsys):
    make_fake_cifar10(tmp_path / "src", train_per_batch=5, test_size=5)
    main([str(tmp_path / "src"), str(tmp_path / "shifted"), "--shift", "3"])
    assert "dB PSNR" in capsys.readouterr().out
    marker = tmp_path / "shifted" / "cifar-10-batches-py" / "jpeg_recompressed"
    assert "quality 75, block grid shifted by 3 pixels" in marker.read_text()


def test_recompress_refuses_bad_quality_and_overwriting_its_source(tmp_path):
    make_fake_cifar10(tmp_path, train_per_batch=5, test_size=5)
    with pytest.raises(ValueError, match="quality"):
        recompress(tmp_path, tmp_path / "x", quality=0)
    with pytest.raises(ValueError, match="shift"):
        recompress(tmp_path, tmp_path / "x", shift=16)
    with pytest.raises(SystemExit, match="overwrite"):
        main([str(tmp_path), str(tmp_path)])
