"""`cifar-lab train`: a recipe's run from the command line, in a folder no other run can touch."""
import json
import shutil
import subprocess
import sys

import pytest

from cifar_lab import models
from cifar_lab.kit import train


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")


def test_train_command_writes_the_notebooks_metrics_with_the_models_recipe(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert train.main(["--model", "mlp", "--hidden", "64,32", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    mlp = metrics["models"]["mlp"]
    assert metrics["quick"] is True and mlp["processes"] == 1 and mlp["epochs"] == 1
    assert mlp["fit_options"]["optimizer"] == "adamw" and mlp["fit_options"]["lr"] == 0.002  # notebook 01's
    assert mlp["model_options"] == {"hidden": [64, 32]} and mlp["tta"] is False
    assert {"history.csv", "learning_curves.png", "confusion_matrix.png"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["--early-stopping", "0"], "argument --early-stopping/--early_stopping: must be an integer >= 1"),
    (["--model", "vgg"], "unknown recipe 'vgg'; valid: mlp, cnn"),
    (["--model", "mlp", "--widths", "8,8,8"], "--widths applies to cnn, not to mlp"),
    (["--widths", "8,8"], "argument --widths: must be 3 positive integers"),
    (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
])
def test_bad_parameters_stop_with_a_message_naming_the_flag(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--output-dir", str(tmp_path / "out")])
    assert message in str(e.value) + capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["cifar-lab", "train"], [sys.executable, "-m", "cifar_lab", "train"],
                                     [sys.executable, "-m", "cifar_lab.kit.train"]])
def test_cifar_lab_train_and_its_python_dash_m_forms_are_one_entry_point(command):
    if command[0] == "cifar-lab" and shutil.which("cifar-lab") is None:
        pytest.skip("the console script is not installed (pip install -e .)")
    done = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--batch-size" in done.stdout and "torchrun" in done.stdout
    assert "--plateau-patience" in done.stdout and "RuntimeWarning" not in done.stderr


def test_a_misspelt_command_gets_the_closest_name(capsys):
    from cifar_lab.kit import cli
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_a_finished_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    args = ["--model", "mlp", "--hidden", "16,16", "--output-dir", str(out)]
    assert train.main(args) == 0
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(SystemExit, match="already holds a finished run"):  # the same command again
        train.main(args)
    with pytest.raises(SystemExit, match="already holds a finished run"):  # a resume with other options
        train.main([*args, "--resume", "--lr", "0.5", "--no-tta", "--label-smoothing", "0.0"])
    (out / "checkpoints" / "last.pt").unlink()
    with pytest.raises(SystemExit, match="already holds a finished run"):  # a resume without checkpoints
        train.main([*args, "--resume"])
    assert (out / "metrics.json").read_bytes() == before


def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": other.pid, "host": __import__("socket").gethostname()}))
        with pytest.raises(SystemExit, match=f"in use by another run \\(process {other.pid}"):
            train.main(["--model", "mlp", "--output-dir", str(out)])
    finally:
        other.kill()
    assert not (out / "run.json").exists()


def test_default_folders_are_new_for_every_run(tmp_path, monkeypatch):
    from cifar_lab.kit import runs
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs.time, "strftime", lambda fmt, *a: "20260101-120000")  # both in the same second
    for _ in range(2):
        assert train.main(["--model", "mlp", "--hidden", "8,8"]) == 0
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and folders[1].startswith(folders[0])


def test_nothing_to_resume_in_an_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume in .*it holds no run"):
        train.main(["--model", "mlp", "--output-dir", str(tmp_path / "new"), "--resume"])


@pytest.mark.slow
def test_an_interrupted_run_is_continued_only_as_it_was_started(tmp_path, monkeypatch, fake_root):
    forward, calls = models.CNN.forward, []

    def interrupted_forward(self, x):  # Ctrl-C early in epoch 2 (output check, 7 training + 1 validation passes)
        calls.append(1)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return forward(self, x)

    monkeypatch.setenv("CIFAR_LAB_QUICK", "")
    out = tmp_path / "run"
    args = ["--widths", "8,16,16", "--epochs", "2", "--data-dir", str(fake_root), "--val-size", "100",
            "--output-dir", str(out)]
    monkeypatch.setattr(models.CNN, "forward", interrupted_forward)
    assert train.main(args) == 130
    monkeypatch.setattr(models.CNN, "forward", forward)
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "last.pt").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    with pytest.raises(SystemExit, match="holds an unfinished training run.*--resume"):  # no silent restart
        train.main(args)
    with pytest.raises(SystemExit, match=r"other parameters.*lr=0.05 \(not 0.5\)"):
        train.main([*args, "--resume", "--lr", "0.5"])
    assert train.main([*args, "--resume"]) == 0
    history = json.loads((out / "metrics.json").read_text())["models"]["cnn"]["history"]
    assert history["epoch"] == [1, 2] and history["info"]["status"] == "completed"
