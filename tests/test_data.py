import pickle
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from cifar_lab import CifarDataError, DeviceLoader, load_cifar10
from cifar_lab.kit.fake import make_fake_cifar10
from cifar_lab.kit.bench import textbook_loaders
from cifar_lab.data import CLASSES, FOLDER, channel_stats, read_batch
from cifar_lab.loader import augment


def copy_of(fake_root, tmp_path):
    shutil.copytree(fake_root / FOLDER, tmp_path / FOLDER)
    return tmp_path


def rewrite(path, **changes):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch.update({k.encode(): v for k, v in changes.items()})
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_fake_set_round_trips_through_the_real_loader(fake_root, fake_data):
    with open(fake_root / FOLDER / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    images, labels = read_batch(fake_root / FOLDER / "data_batch_1")
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images[3, 1], torch.from_numpy(raw[b"data"][3, 1024:2048].reshape(32, 32)))
    assert labels.tolist() == raw[b"labels"]
    assert fake_data.classes == CLASSES
    assert (len(fake_data.train_labels), len(fake_data.val_labels), len(fake_data.test_labels)) == (900, 100, 200)


def test_split_is_seeded_and_stats_come_from_the_training_split(fake_root):
    a = load_cifar10(fake_root, val_size=100, seed=1, download=False)
    b = load_cifar10(fake_root, val_size=100, seed=1, download=False)
    c = load_cifar10(fake_root, val_size=100, seed=2, download=False)
    assert torch.equal(a.val_labels, b.val_labels) and not torch.equal(a.val_images, c.val_images)
    mean, std = channel_stats(a.train_images)
    assert torch.allclose(a.mean, mean) and torch.allclose(a.std, std)
    x = a.train_images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255  # (C, N*H*W)
    assert torch.allclose(a.mean.double(), x.mean(1), rtol=1e-6) and torch.allclose(a.std.double(), x.std(1), rtol=1e-6)


def test_missing_data_without_network_says_where_and_how(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(CifarDataError) as e:
        load_cifar10(tmp_path)
    message = str(e.value)
    assert str(tmp_path / FOLDER) in message and "data_batch_1" in message and "batches.meta" in message
    assert "cifar-10-python.tar.gz" in message and "download failed" in message


def test_no_download_lists_missing_files(tmp_path):
    with pytest.raises(CifarDataError, match="missing: data_batch_1"):
        load_cifar10(tmp_path, download=False)


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "oops.txt").write_text("x")
    with pytest.raises(CifarDataError, match="is a file"):
        load_cifar10(tmp_path / "oops.txt", download=False)


def test_truncated_batch_file_is_named(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path)
    path = root / FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CifarDataError, match="data_batch_3 is truncated or corrupt"):
        load_cifar10(root, download=False)


@pytest.mark.parametrize("changes, message", [
    (dict(data=np.zeros((200, 100), np.uint8)), "3072"),
    (dict(data=np.zeros((200, 3072), np.float32)), "uint8"),
    (dict(labels=[0] * 150), "200 images but 150 labels"),
    (dict(labels=[12] * 200), r"labels must lie in 0..9"),
])
def test_bad_batch_content_is_reported_with_the_file(fake_root, tmp_path, changes, message):
    root = copy_of(fake_root, tmp_path)
    rewrite(root / FOLDER / "test_batch", **changes)
    with pytest.raises(CifarDataError, match=message) as e:
        load_cifar10(root, download=False)
    assert "test_batch" in str(e.value)


def test_meta_with_wrong_class_count(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path)
    rewrite(root / FOLDER / "batches.meta", label_names=[b"a", b"b"])
    with pytest.raises(CifarDataError, match="expected 10 class names.*found 2"):
        load_cifar10(root, download=False)


def test_val_size_larger_than_the_data(fake_root):
    with pytest.raises(ValueError, match="val_size must be an integer from 1 to 999"):
        load_cifar10(fake_root, val_size=5000, download=False)


def test_crop_and_flip_are_per_image_and_exact():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    g = torch.Generator().manual_seed(0)
    out = augment(x, crop_padding=2, generator=g)
    # replay the generator to know each image's offsets
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert torch.equal(out[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8])
    flipped = augment(x, flip=True, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(4, 3, 32, 32)
    out = augment(x, cutout=8, generator=torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert ((zeros > 0) & (zeros <= 9 * 9)).all()
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # same square in every channel


def test_device_loader_normalises_batches_and_shuffles_reproducibly(fake_data):
    loader = fake_data.loader("train", batch_size=64, crop_padding=0, flip=False, seed=3)
    assert len(loader) == 900 // 64 and loader.batch_size == 64
    images, labels = next(iter(loader))
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (64,)
    again = next(iter(fake_data.loader("train", batch_size=64, crop_padding=0, flip=False, seed=3)))[0]
    assert torch.equal(images, again)
    test = fake_data.loader("test", batch_size=64)
    assert len(test) == 4 and sum(len(y) for _, y in test) == 200  # the last, partial batch is kept
    first, _ = next(iter(test))
    expected = (fake_data.test_images[0].float() / 255 - fake_data.mean.view(3, 1, 1)) / fake_data.std.view(3, 1, 1)
    assert torch.allclose(first[0], expected, atol=1e-5)
    whole = torch.cat([x for x, _ in fake_data.loader("train", batch_size=900, crop_padding=0, flip=False)])
    assert whole.mean((0, 2, 3)).abs().max() < 1e-3 and (whole.std((0, 2, 3)) - 1).abs().max() < 1e-2


def test_device_loader_rejects_bad_batch_size(fake_data):
    for bad in (0, -5, 2.5, "64"):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):  # the option's own rule
            DeviceLoader(fake_data.train_images, fake_data.train_labels, fake_data.mean, fake_data.std, bad)


def test_textbook_loaders_read_the_same_files(fake_root, fake_data):
    train, val, test = textbook_loaders(fake_root, batch_size=50, num_workers=0, val_size=100, download=False)
    images, labels = next(iter(train))
    assert images.shape == (50, 3, 32, 32) and labels.dtype == torch.int64
    assert len(val.dataset) == 100 and len(test.dataset) == 200
    val_labels = torch.cat([y for _, y in val])
    assert torch.equal(val_labels, fake_data.val_labels)


def test_fake_set_is_seeded(tmp_path):
    a, b = make_fake_cifar10(tmp_path / "a", train_per_batch=10, test_size=10), make_fake_cifar10(
        tmp_path / "b", train_per_batch=10, test_size=10)
    assert (a / "data_batch_2").read_bytes() == (b / "data_batch_2").read_bytes()


def test_a_short_or_copied_batch_file_is_refused(fake_root, tmp_path):
    root = copy_of(fake_root, tmp_path / "short")
    path = root / FOLDER / "data_batch_2"
    images, labels = read_batch(path)
    rewrite(path, data=images[:50].reshape(50, -1).numpy(), labels=labels[:50].tolist())
    with pytest.raises(CifarDataError, match="equally many images.*data_batch_2 50"):
        load_cifar10(root, download=False)
    root = copy_of(fake_root, tmp_path / "copied")
    shutil.copy(root / FOLDER / "data_batch_1", root / FOLDER / "data_batch_4")
    with pytest.raises(CifarDataError, match="data_batch_4 holds the same images as data_batch_1"):
        load_cifar10(root, download=False)


def test_an_epochs_augmentation_is_drawn_once_not_per_step(fake_data, monkeypatch):
    """On a GPU every small host-to-device copy per step is a sync: the loader makes one per epoch."""
    from cifar_lab import loader
    calls, real = [], loader.draw_augmentation
    monkeypatch.setattr(loader, "draw_augmentation", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    batches = list(fake_data.loader("train", batch_size=64, crop_padding=4, flip=True, cutout=8))
    assert len(batches) == 14 and calls == [900]  # one draw for the epoch's 900 images
