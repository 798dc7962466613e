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


def test_an_interrupted_run_writes_no_metrics_and_resumes_to_the_end(tmp_path, monkeypatch, fake_root):
    from cifar_lab import models
    forward, calls = models.CNN.forward, []

    def interrupted_forward(self, x):  # Ctrl-C early in epoch 2 (7 training + 1 validation passes per epoch)
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return forward(self, x)

    monkeypatch.setenv("CIFAR_LAB_QUICK", "")
    out = tmp_path / "run"
    args = ["--widths", "8,16,16", "--epochs", "2", "--data-dir", str(fake_root), "--val-size", "100",
            "--output-dir", str(out)]
    monkeypatch.setattr(models.CNN, "forward", interrupted_forward)
    assert job.main(args) == 130
    assert not (out / "metrics.json").exists()  # not finished: a sweep will run it again
    assert (out / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(models.CNN, "forward", forward)
    assert job.main([*args, "--resume"]) == 0
    history = json.loads((out / "metrics.json").read_text())["models"]["cnn"]["history"]
    assert history["epoch"] == [1, 2] and history["info"]["status"] == "completed"
