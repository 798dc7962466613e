"""Sweeps: a grid of runs of the training entry point or of a notebook, then mean +- std over seeds."""
import json

import pandas as pd
import pytest

from cifar_lab.kit import sweep

pytestmark = pytest.mark.slow  # papermill, subprocesses: the slow tier

SMALL_CNN = ["-p", "model", "cnn", "-p", "widths", "8,16,16", "-p", "convs_per_block", "1"]


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")  # every run: synthetic data, 1 epoch


def test_the_grid_expands_to_every_combination_with_readable_names():
    grid = {"lr": [0.05, 0.1], "seed": [0, 1, 2]}
    runs = sweep.expand_grid(grid, {"model": "cnn"})
    assert len(runs) == 6 and runs[0] == {"model": "cnn", "lr": 0.05, "seed": 0}
    assert [sweep.run_name(r, grid) for r in runs[:2]] == ["lr=0.05,seed=0", "lr=0.05,seed=1"]
    assert sweep.run_name({"widths": "8,16/16"}, {"widths": 0}) == "widths=8,16_16"


def test_summary_gives_mean_std_and_count_over_seeds_per_setting_and_model():
    runs = pd.DataFrame([
        {"run": f"lr={lr},seed={s}", "lr": lr, "seed": s, "model": "cnn", "test_acc": acc,
         "best_val_acc": acc, "train_seconds": 10.0, "quick": False}
        for lr, s, acc in [(0.05, 0, 0.80), (0.05, 1, 0.82), (0.05, 2, 0.84), (0.1, 0, 0.70), (0.1, 1, 0.74)]])
    table = sweep.summarize(runs).set_index("setting")
    assert list(table.index) == ["lr=0.05", "lr=0.1"]
    assert table.loc["lr=0.05", "test_acc_mean"] == pytest.approx(0.82)
    assert table.loc["lr=0.05", "test_acc_std"] == pytest.approx(0.02)  # sample std (n - 1)
    assert table.loc["lr=0.1", "n"] == 2 and table.loc["lr=0.1", "test_acc_mean"] == pytest.approx(0.72)


def test_training_sweep_runs_in_parallel_keeps_good_runs_and_names_the_failed_one(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["--grid", "seed", "0", "1", "--grid", "cutout", "0", "-1", *SMALL_CNN, "--jobs", "2",
            "--output-dir", str(out)]
    assert sweep.main(args) == 1
    printed = capsys.readouterr().out
    assert "2 of 4 runs FAILED" in printed and "seed=0,cutout=-1" in printed
    assert "argument --cutout: must be an integer >= 0 and <= 32, got -1" in printed  # the failed run's own message
    for seed in (0, 1):
        metrics = json.loads((out / f"seed={seed},cutout=0" / "metrics.json").read_text())
        assert metrics["params"]["seed"] == seed
    table = sweep.load_summary(out)
    accs = [json.loads((out / f"seed={s},cutout=0" / "metrics.json").read_text())["models"]["cnn"]["test_acc"]
            for s in (0, 1)]
    assert len(table) == 1 and table.loc[0, "n"] == 2 and table.loc[0, "setting"] == "cutout=0"
    assert table.loc[0, "test_acc_mean"] == pytest.approx(sum(accs) / 2)
    assert (out / "summary.png").stat().st_size > 0 and len(pd.read_csv(out / "runs.csv")) == 2

    assert sweep.main(args) == 1  # again: the finished runs are kept, not redone
    printed = capsys.readouterr().out
    assert printed.count("kept (done before)") == 2

    with pytest.raises(SystemExit):  # other parameters, same folder: refused before anything runs, all kept
        sweep.main([*args, "-p", "lr", "0.01"])
    assert "holds another sweep" in capsys.readouterr().err
    assert json.loads((out / "seed=0,cutout=0" / "metrics.json").read_text())["params"]["lr"] == 0.05


def test_notebook_sweep_runs_papermill_per_seed(tmp_path, tiny_notebooks):
    out = tmp_path / "sweep"
    assert sweep.main(["--notebook", "99_tiny", "--grid", "seed", "0", "1", "--jobs", "2", "-p", "quick", "True",
                       "--output-dir", str(out)]) == 0
    assert (out / "seed=1" / "99_tiny.ipynb").exists()  # the executed notebook of each run
    table = sweep.load_summary(out / "summary.csv")
    assert table.loc[0, "model"] == "cnn" and table.loc[0, "n"] == 2
    assert "over seed 0 1, with quick=True" in sweep.describe_summary(out)  # what it ran with, for the notebooks
    assert sweep.fixed_parameters(out / "summary.csv") == {"quick": True}
    (out / "sweep.json").unlink()  # a sweep from a version that recorded nothing
    assert sweep.fixed_parameters(out) is None and "not recorded" in sweep.describe_summary(out)


def test_a_notebook_run_cut_off_earlier_is_set_aside_and_run_again(tmp_path, tiny_notebooks):
    """A session that ended mid-notebook left a 'running' folder behind: the rerun keeps it beside, runs afresh."""
    out = tmp_path / "sweep"
    command = ["--notebook", "99_tiny", "-p", "quick", "True", "--output-dir", str(out), "--grid", "seed"]
    assert sweep.main(command + ["1"]) == 0  # the sweep's first part
    cut = out / "seed=0"
    (cut / "results").mkdir(parents=True)
    (cut / "log.txt").write_text("epoch 1/150 ... (the session ended here)\n")
    (cut / "sweep_run.json").write_text(json.dumps({"name": "seed=0", "status": "running"}))
    (cut / "results" / "run.json").write_text(json.dumps({"kind": "notebook", "status": "running", "pid": 999999,
                                                          "host": __import__("socket").gethostname()}))  # gone
    assert sweep.main(command + ["0", "1"]) == 0
    assert json.loads((cut / "sweep_run.json").read_text())["status"] == "ok"
    assert (out / "seed=0.unfinished-1" / "log.txt").read_text().startswith("epoch 1/150")  # nothing lost
    assert sweep.load_summary(out / "summary.csv").loc[0, "n"] == 2  # seeds 0 and 1; the unfinished attempt not counted


def test_a_notebook_run_still_going_is_never_set_aside(tmp_path, tiny_notebooks):
    """Its record names a live process (another sweep's kernel): the point is refused, its folder untouched."""
    import socket
    import subprocess
    import sys
    out = tmp_path / "sweep"
    command = ["--notebook", "99_tiny", "-p", "quick", "True", "--output-dir", str(out), "--grid", "seed"]
    assert sweep.main(command + ["1"]) == 0
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / "seed=0" / "results").mkdir(parents=True)
        (out / "seed=0" / "results" / "run.json").write_text(json.dumps(
            {"kind": "notebook", "status": "running", "pid": live.pid, "host": socket.gethostname()}))
        assert sweep.main(command + ["0", "1"]) == 1  # one point failed: in use
    finally:
        live.kill()
    assert (out / "seed=0" / "results" / "run.json").exists() and not list(out.glob("seed=0.unfinished-*"))


def test_unknown_parameters_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--grid", "lrr", "0.1", "--output-dir", str(tmp_path)])
    assert "has no parameter 'lrr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--notebook", "03_regularization", "-p", "model", "cnn", "--output-dir", str(tmp_path)])
    assert "03_regularization.ipynb has no parameter 'model'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="run cifar-lab sweep first"):
        sweep.load_summary(tmp_path / "nothing")


def test_a_child_run_ends_when_the_sweep_is_killed(tmp_path):
    """Killing only the sweep must not leave its trainer running on as an orphan (Linux)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from cifar_lab.kit.notebooks import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], **die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")
