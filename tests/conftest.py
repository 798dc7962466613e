import os

os.environ.setdefault("MPLBACKEND", "Agg")  # no screen in CI

import pytest
import torch

from cifar_lab import load_cifar10, make_fake_cifar10

torch.set_num_threads(min(torch.get_num_threads(), 2))


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory):
    """A folder holding a small synthetic cifar-10-batches-py (1,000 train + 200 test images)."""
    root = tmp_path_factory.mktemp("fake_cifar")
    make_fake_cifar10(root)
    return root


@pytest.fixture(scope="session")
def fake_data(fake_root):
    return load_cifar10(fake_root, val_size=100, download=False)
