import os

os.environ.setdefault("MPLBACKEND", "Agg")  # no screen in CI

import pytest
import torch

from cifar_lab import load_cifar10
from cifar_lab.kit.fake import make_fake_cifar10

torch.set_num_threads(min(torch.get_num_threads(), 2))


@pytest.fixture(autouse=True)
def no_default_figure_folder():
    """A test that started a notebook run leaves no figure folder behind for the next one."""
    from cifar_lab import plots
    yield
    plots.save_figures_to(None)


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory):
    """A folder holding a small synthetic cifar-10-batches-py (1,000 train + 200 test images)."""
    root = tmp_path_factory.mktemp("fake_cifar")
    make_fake_cifar10(root)
    return root


@pytest.fixture(scope="session")
def fake_data(fake_root):
    return load_cifar10(fake_root, val_size=100, download=False)


@pytest.fixture
def tiny_notebooks(tmp_path, monkeypatch):
    """The report and sweep commands see one notebook, tests/notebooks/99_tiny.ipynb (seconds, not minutes)."""
    import shutil
    from pathlib import Path
    from cifar_lab.kit import notebooks
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "notebooks" / "99_tiny.ipynb", folder)
    monkeypatch.setattr(notebooks, "NOTEBOOKS", folder)
    return folder
collect_ignore_glob = ["notebooks/*.ipynb"]  # tests/notebooks/99_tiny.ipynb is a fixture, not a notebook to validate
