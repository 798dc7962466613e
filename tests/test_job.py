"""`python -m cifar_lab.train`: the notebooks' parameters on the command line, one process."""
import json
import subprocess
import sys

import pytest

from cifar_lab import job


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")


def test_train_command_writes_the_notebooks_metrics_with_the_models_recipe(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert job.main(["--model", "mlp", "--hidden", "64,32", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    mlp = metrics["models"]["mlp"]
    assert metrics["quick"] is True and mlp["processes"] == 1 and mlp["epochs"] == 1
    assert mlp["fit_options"]["optimizer"] == "adamw" and mlp["fit_options"]["lr"] == 0.002  # notebook 01's
    assert mlp["model_options"] == {"hidden": [64, 32]} and mlp["tta"] is False
    assert {"history.csv", "learning_curves.png", "confusion_matrix.png"} <= {p.name for p in out.iterdir()}
    assert "test accuracy" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="already holds a finished run"):  # never overwrite results
        job.main(["--model", "mlp", "--output-dir", str(out)])


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    (["--model", "vgg"], "unknown model 'vgg'; valid: mlp, cnn"),
    (["--model", "mlp", "--widths", "8,8,8"], "--widths applies to cnn, not to mlp"),
    (["--widths", "8,8"], "widths must be 3 positive integers"),
    (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
])
def test_bad_parameters_stop_with_the_notebooks_messages(args, message, tmp_path):
    with pytest.raises(SystemExit) as e:
        job.main([*args, "--output-dir", str(tmp_path / "out")])
    assert message in str(e.value)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_python_dash_m_cifar_lab_train_is_the_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cifar_lab.train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--batch-size" in done.stdout and "torchrun" in done.stdout
    assert "RuntimeWarning" not in done.stderr
