"""Checks that notebooks run first, on parameters as papermill passes them."""
import pytest
import torch

from cifar_lab import check_output_dir, fit, make_model
from cifar_lab.course import check_params, parse_widths, quick_mode, start


@pytest.mark.parametrize("params, message", [
    (dict(epochs=0), "epochs must be an integer >= 1, got 0"),
    (dict(batch_size="64"), r"batch_size must be an integer >= 1, got '64' \(str\)"),
    (dict(lr=-0.01), "lr must be a number > 0"),
    (dict(label_smoothing=1.5), "label_smoothing must be a number >= 0.0 and <= 1.0"),
    (dict(quick="yes"), "quick must be True or False"),
    (dict(widths="64,128"), "widths must be 3 positive integers"),
    (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_bad_notebook_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        check_params(params)


def test_good_parameters_pass_unchanged():
    params = dict(epochs=3, batch_size=64, lr=0.1, quick=False, widths="8,16,32", data_dir=None, notes="x")
    assert check_params(params) == params
    assert parse_widths("hidden", "1024, 512", 2) == (1024, 512)


def test_output_dir_that_cannot_be_written(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_output_dir(tmp_path / "a_file")
    with pytest.raises(ValueError, match="cannot be written"):
        check_output_dir(tmp_path / "a_file" / "inside")
    assert check_output_dir(tmp_path / "new" / "dir").is_dir()


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="data_dir .* is a file"):
        check_params(dict(data_dir=str(tmp_path / "f")))


def test_quick_mode_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    assert quick_mode(False)
    run = start("test", dict(epochs=50, seed=0, output_dir=str(tmp_path)))
    assert run.quick and run.params["epochs"] == 1 and "QUICK MODE" in run.banner
    monkeypatch.setenv("CIFAR_LAB_QUICK", "0")
    assert not quick_mode(False)


def test_out_of_memory_suggests_a_smaller_batch(fake_data):
    model = make_model("mlp", hidden=(8, 8))

    def oom(module, inputs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    model.register_forward_pre_hook(oom)
    with pytest.raises(RuntimeError, match="batch_size=32"):
        fit(model, fake_data, epochs=1, batch_size=64, progress=False, verbose=False)
