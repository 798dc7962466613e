"""The option tables and a notebook's first cell: parameters checked, quick mode, a folder of its own."""
import argparse
import json

import pytest
import torch

from cifar_lab import fit, make_model
from cifar_lab.files import check_output_dir
from cifar_lab.kit.course import notebook_parameters, quick_mode, shown_path, start
from cifar_lab.kit.course import ALL
from cifar_lab.options import TRAINING, add_arguments, check, defaults


@pytest.mark.parametrize("params, message", [
    (dict(epochs=0), "epochs must be an integer >= 1, got 0"),
    (dict(batch_size="64"), r"batch_size must be an integer >= 2, got '64' \(str\)"),
    (dict(lr=-0.01), "lr must be a number > 0.0 and <= 10.0"),
    (dict(label_smoothing=1.0), "label_smoothing must be a number >= 0.0 and <= 0.5"),  # 1.0 learns nothing
    (dict(ema=1.0), "ema must be a number > 0.0 and < 1.0"),  # 1.0 would freeze the weights
    (dict(quick="yes"), "quick must be True or False"),
    (dict(widths="64,128"), "widths must be 3 positive integers"),
    (dict(hidden=(0, 10)), "hidden must be 2 positive integers"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; valid: sgd, adam, adamw"),
    (dict(epoch=1), r"unknown parameter 'epoch' \(did you mean 'epochs'\?\)"),  # papermill -p epoch 1
])
def test_bad_parameters_are_refused_with_what_is_allowed(params, message):
    with pytest.raises(ValueError, match=message):
        check(params, ALL)


def test_good_parameters_are_typed_and_the_defaults_fill_in():
    assert check(dict(epochs=3, widths="8, 16,32", ema=None), ALL) == dict(epochs=3, widths=(8, 16, 32), ema=None)
    assert defaults()["optimizer"] == "sgd" and set(defaults()) == set(TRAINING)


def test_the_command_line_is_generated_from_the_table():
    parser = argparse.ArgumentParser()
    add_arguments(parser, TRAINING)
    args = parser.parse_args(["--batch-size", "64", "--no-flip", "--early-stopping", "none"])
    assert args.batch_size == 64 and args.flip is False and args.early_stopping is None and args.lr is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--early-stopping", "0"])


def test_notebook_globals_give_the_parameters_and_nothing_else():
    namespace = {"__name__": "__main__", "epochs": 3, "In": [], "_": 5, "torch": torch, "data_dir": None}
    assert notebook_parameters(namespace) == {"epochs": 3, "data_dir": None}


def test_quick_mode_from_the_environment(monkeypatch):
    for value, expected in (("1", True), ("on", True), ("0", False), ("", False)):
        monkeypatch.setenv("CIFAR_LAB_QUICK", value)
        assert quick_mode(False) is expected
    monkeypatch.setenv("CIFAR_LAB_QUICK", "maybe")
    with pytest.raises(ValueError, match="CIFAR_LAB_QUICK must be one of"):
        quick_mode(False)


def test_start_caps_epochs_in_quick_mode_and_claims_a_folder_once(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    run = start("test", dict(epochs=50, seed=0, output_dir=str(tmp_path / "a")))
    assert run.quick and run.params["epochs"] == 1 and run.training["epochs"] == 1
    assert "QUICK MODE" in run.banner and "epochs=1" in run.banner
    with pytest.raises(ValueError, match="already holds the results of an earlier run"):
        start("test", dict(epochs=50, seed=0, output_dir=str(tmp_path / "a")))
    monkeypatch.chdir(tmp_path)
    first, second = start("test", {}), start("test", {})  # default folders: new and dated, never shared
    assert first.output_dir != second.output_dir and first.output_dir.parent.resolve() == tmp_path / "outputs/quick/test"


def test_output_dir_that_cannot_be_written(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_output_dir(tmp_path / "a_file")
    with pytest.raises(ValueError, match="cannot be written"):
        check_output_dir(tmp_path / "a_file" / "inside")
    assert check_output_dir(tmp_path / "new" / "dir").is_dir()


def test_out_of_memory_suggests_a_smaller_batch(fake_data):
    model = make_model("mlp", hidden=(8, 8))

    def oom(module, inputs):
        if module.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    model.register_forward_pre_hook(oom)
    with pytest.raises(RuntimeError, match="batch_size=32"):
        fit(model, fake_data, epochs=1, batch_size=64, progress=False, verbose=False)


def test_the_parameters_table_shows_paths_in_the_checkout_relative_to_it(monkeypatch, tmp_path):
    from cifar_lab.kit.notebooks import ROOT
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    metrics = ROOT / "reports" / "01_mlp" / "metrics.json"
    run = start("test", dict(seed=0, output_dir=str(tmp_path / "a"), mlp_metrics=str(metrics)))
    shown = run.parameters_table()
    table = shown.data["value"]
    assert table["mlp_metrics"] == "reports/01_mlp/metrics.json"
    assert run.data.describe() in shown.to_html()  # the data row in full, not cut at 50 characters
    assert str(ROOT) not in "".join(table)
    assert shown_path(metrics) == "reports/01_mlp/metrics.json"  # as notebook 06 prints 02's results file
    assert shown_path(tmp_path / "a") == tmp_path / "a"  # outside the checkout: as given


def test_metrics_json_names_paths_in_the_checkout_relative_to_it_and_the_results_as_a_report_shows_them(
        monkeypatch, tmp_path):
    from cifar_lab.kit.notebooks import RESULTS_AS, ROOT
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    monkeypatch.setenv(RESULTS_AS, "reports/test/")
    metrics = ROOT / "reports" / "01_mlp" / "metrics.json"
    run = start("test", dict(seed=0, output_dir=str(tmp_path / "a"), mlp_metrics=str(metrics)))
    saved = json.loads(run.save().read_text())["params"]
    assert saved["mlp_metrics"] == "reports/01_mlp/metrics.json" and saved["output_dir"] == "reports/test/"
    assert run.params["output_dir"] == str(tmp_path / "a")  # the run itself still writes where it was told


def test_quick_mode_caps_the_fast_notebooks_epochs_too(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    run = start("test", dict(fast_epochs=10.0, ablation_epochs=2.0, output_dir=str(tmp_path / "b")))
    assert run.params["fast_epochs"] == 1 and run.params["ablation_epochs"] == 1


def test_a_choice_of_names_is_checked_with_one_sentence_per_mistake():
    from cifar_lab.kit import course
    assert course.choose("all", ["a", "b"], "setting") == ["a", "b"]
    assert course.choose(" b, a ", ["a", "b"], "setting") == ["b", "a"]
    with pytest.raises(ValueError, match="unknown setting 'dropuot' \\(did you mean 'dropout'\\?\\)"):
        course.choose("dropuot", ["none", "dropout"], "setting")
    with pytest.raises(ValueError, match="setting 'none' is listed twice"):
        course.choose("none,none", ["none", "dropout"], "setting")
    with pytest.raises(ValueError, match="no setting named"):
        course.choose(" , ", ["none"], "setting")
