"""pytest's settings for the whole checkout: `pytest --nbval` runs the notebooks in quick mode.

nbval executes each notebook in notebooks/ top to bottom in a fresh kernel and fails on any error (the
notebooks' own checks raise). Quick mode (tiny synthetic data, 1 epoch) keeps that to seconds per
notebook and needs no download; the kernel inherits the environment set here.
"""
import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Quick mode for the notebooks' kernels only; the library's tests see the environment as it was."""
    notebook, before = item.path.suffix == ".ipynb", os.environ.get("CIFAR_LAB_QUICK")
    if notebook:
        os.environ.setdefault("CIFAR_LAB_QUICK", "1")  # the kernel starts in this setup and inherits it
    yield
    if notebook and before is None:  # (a test's own monkeypatch.setenv happens inside the yield: left alone)
        os.environ.pop("CIFAR_LAB_QUICK", None)
