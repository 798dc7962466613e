"""Nothing lost, nothing silently wrong (issue 11): what a student or teacher does by accident.

No run overwrites another run's results, nothing runs other than what was asked without a word, and a
mistake ends in one plain sentence naming the value or file and what to do. Each test names the case
of the issue it reproduces; cases that other test files already reproduce are not repeated here.
"""
import errno
import io
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import papermill as pm
import pytest
import torch

from cifar_lab import CifarDataError, TrainingInterrupted, fit, load_cifar10, make_model, save_checkpoint
from cifar_lab.kit import report, runs, sweep
from cifar_lab.kit.fake import make_fake_cifar10
from cifar_lab.kit.course import newest_results, start
from cifar_lab.data import FOLDER
from cifar_lab.files import DiskFullError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICK = dict(batch_size=64, progress=False, verbose=False)


def tiny_mlp():
    return make_model("mlp", hidden=(16, 16))


def interrupted_fit(data, folder, **options):
    """A run of 2 epochs stopped by Ctrl-C early in epoch 2, its checkpoints in `folder`."""
    model, calls = tiny_mlp(), []

    def ctrl_c(module, inputs):  # the output check, 14 training + 1 validation passes, then 3 steps more
        calls.append(1)
        if len(calls) == 1 + 15 + 3:
            raise KeyboardInterrupt
    model.register_forward_pre_hook(ctrl_c)
    with pytest.raises(TrainingInterrupted):
        fit(model, data, epochs=2, checkpoint_dir=folder, **options, **QUICK)
    return folder / "last.pt"


def finished_real_run(folder, notebook):
    """What a real-data notebook run leaves in its folder (run.json, metrics.json); returns their bytes."""
    runs.claim(folder, {"quick": False}, "notebook", hold=False)
    (folder / "metrics.json").write_text(json.dumps({"notebook": notebook, "quick": False, "models": {}}))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def unchanged(folder, before):
    return {p.name: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------- a finished result is never overwritten

def test_a_test_or_quick_run_never_writes_into_a_real_runs_folder(tmp_path, monkeypatch):
    """Case 1: a notebook run as the tests run it (defaults, quick mode) after a student's real run."""
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "outputs" / "02_cnn" / "run_20260101-120000"
    before = finished_real_run(real, "02_cnn")
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    run = start("02_cnn", {}, recipe="cnn")
    run.save()
    assert run.output_dir.parent.resolve() == tmp_path / "outputs" / "quick" / "02_cnn"
    assert unchanged(real, before)
    assert newest_results("02_cnn") == Path("outputs/02_cnn/run_20260101-120000/metrics.json")  # 02 still finds it
    with pytest.raises(ValueError, match="already holds the results of an earlier run"):
        start("02_cnn", dict(output_dir=str(real)), recipe="cnn")
    assert unchanged(real, before)


def test_quick_reports_never_replace_real_ones_even_when_quick_comes_from_the_environment(tmp_path, monkeypatch,
                                                                                          capsys):
    """Case 2: `CIFAR_LAB_QUICK=1 python -m cifar_lab.kit.report` (or --quick) beside real-data reports."""
    monkeypatch.setattr(report, "ROOT", tmp_path)  # the checkout whose reports/ holds real results
    real = tmp_path / "reports" / "00_data_analysis"
    before = finished_real_run(real, "00_data_analysis")
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    with pytest.raises(SystemExit):  # pointed at the real reports: refused before anything runs
        report.main(["--only", "00_data_analysis", "--reports", str(tmp_path / "reports")])
    assert "quick mode never replaces them" in capsys.readouterr().err

    ran_into = []

    def quick_run(name, params, reports, show=print):  # what a notebook's quick run leaves (test_report runs one)
        ran_into.append((reports, params["quick"]))
        (reports / name).mkdir()
        (reports / name / "metrics.json").write_text(json.dumps({"notebook": name, "quick": True, "models": {}}))
        return reports / f"{name}.html"
    monkeypatch.setattr(report, "run_notebook", quick_run)
    assert report.main(["--only", "00_data_analysis"]) == 0  # by default: into reports/quick/
    assert ran_into == [(tmp_path / "reports" / "quick", True)]
    assert unchanged(real, before)


def test_an_interrupted_fit_is_continued_never_restarted_over_its_checkpoints(fake_data, tmp_path):
    """Case 5 in a notebook or script: the fit cell run again after Ctrl-C."""
    last = interrupted_fit(fake_data, tmp_path)
    before = last.read_bytes()
    with pytest.raises(ValueError, match=r"holds an unfinished run \(1 of 2 epochs done\); continue it with "
                                         r"resume='.*last.pt'"):
        fit(tiny_mlp(), fake_data, epochs=2, checkpoint_dir=tmp_path, **QUICK)
    assert last.read_bytes() == before
    resumed = fit(tiny_mlp(), fake_data, epochs=2, checkpoint_dir=tmp_path, resume=last, **QUICK)
    assert resumed.epoch == [1, 2] and resumed.info["status"] == "completed"


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_finished_fit_whose_last_pt_is_broken_or_gone_is_still_never_overwritten(fake_data, tmp_path, damage):
    """Round two, case D1: best.pt and history.json are trained results, whatever happened to last.pt."""
    fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path, **QUICK)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100]) if damage == "truncated" else last.unlink()
    before = {name: (tmp_path / name).read_bytes() for name in ("best.pt", "history.json")}
    with pytest.raises(ValueError, match=r"holds the results of an earlier run \(best.pt.*history.json\)"):
        fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path, **QUICK)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_a_finished_fit_is_never_overwritten_by_the_next_one(fake_data, tmp_path):
    """The fit cell run again after it finished: the first run's checkpoints stay as they were."""
    fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path, **QUICK)
    before = {name: (tmp_path / name).read_bytes() for name in ("best.pt", "last.pt", "history.json")}
    with pytest.raises(ValueError, match=r"holds the results of an earlier run \(best.pt, last.pt, history.json\).*choose another "
                                         r"checkpoint_dir"):
        fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path, **QUICK)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    again = fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path / "second", **QUICK)
    assert again.info["status"] == "completed"


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_continue(fake_data, tmp_path):
    model = tiny_mlp()

    def ctrl_c(module, inputs):  # at the first training step (the output check runs in eval mode)
        if module.training:
            raise KeyboardInterrupt
    model.register_forward_pre_hook(ctrl_c)
    with pytest.raises(TrainingInterrupted, match="after 0 of 2 epochs; no epoch had finished, so there is "
                                                  "nothing to continue: run it again"):
        fit(model, fake_data, epochs=2, checkpoint_dir=tmp_path, **QUICK)


def _claim(folder, ready, results):
    ready.wait()
    try:
        runs.claim(folder, {"lr": 0.1}, "train")
        results.put("claimed")
    except Exception as e:  # noqa: BLE001 - every outcome is reported to the test
        results.put(f"{type(e).__name__}: {e}")
    time.sleep(0.5)  # hold the folder while the others try


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="starts its contenders by fork (Linux)")
def test_runs_started_into_one_folder_at_the_same_moment_get_it_once(tmp_path):
    """Case 6: several `--output-dir same` commands started together: one runs, the others are told why."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(5):  # the race is timing-dependent: several tries
        folder = tmp_path / f"run{trial}"
        ready, results = ctx.Barrier(4), ctx.Queue()
        contenders = [ctx.Process(target=_claim, args=(folder, ready, results)) for _ in range(4)]
        for p in contenders:
            p.start()
        outcomes = [results.get(timeout=60) for _ in contenders]
        for p in contenders:
            p.join()
        refused = [o for o in outcomes if o != "claimed"]
        assert len(refused) == 3 and all("is in use by another run (process" in o for o in refused), outcomes


INTERRUPT_IN_EPOCH_2 = """\
import os, signal
import cifar_lab.training
_step, _steps = cifar_lab.training.train_step, []

def _pressing_stop(*args, **kwargs):  # the kernel's stop button (SIGINT), pressed at step 3 of epoch 2
    _steps.append(1)
    if len(_steps) == 5 + 3:
        os.kill(os.getpid(), signal.SIGINT)
    return _step(*args, **kwargs)

cifar_lab.training.train_step = _pressing_stop
"""


@pytest.mark.slow
def test_interrupting_the_kernel_stops_run_all_and_says_how_to_continue(tmp_path):
    """Case 7: the stop button during Run All; later cells must not run on the half-trained model."""
    import nbformat
    nb = nbformat.read(NOTEBOOKS / "01_mlp.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(INTERRUPT_IN_EPOCH_2))
    nbformat.write(nb, tmp_path / "01_mlp.ipynb")
    make_fake_cifar10(tmp_path / "data", train_per_batch=1100, test_size=100)  # 5,500: room for 5,000 val
    out = tmp_path / "out"
    with pytest.raises(pm.PapermillExecutionError) as e:  # 500 training images: 5 steps of 100 an epoch
        pm.execute_notebook(str(tmp_path / "01_mlp.ipynb"), str(tmp_path / "executed.ipynb"), cwd=str(tmp_path),
                            parameters=dict(epochs=2, batch_size=100, hidden="16,16", data_dir=str(tmp_path / "data"),
                                            output_dir=str(out)), kernel_name="python3", progress_bar=False)
    assert e.value.ename == "TrainingInterrupted"
    assert "after 1 of 2 epochs" in e.value.evalue and f"resume='{out / 'checkpoints' / 'last.pt'}'" in e.value.evalue
    assert (out / "checkpoints" / "last.pt").exists()
    assert not (out / "metrics.json").exists() and not list(out.glob("*.png"))  # no later cell ran
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    fit_cell = next(i for i, c in enumerate(executed.cells) if "history = fit(" in c.source)
    assert all(c.get("execution_count") is None for c in executed.cells[fit_cell + 1:] if c.cell_type == "code")


# ---------------------------------------------------------------- nothing runs other than what was asked

@pytest.mark.slow
def test_a_parameter_the_notebook_does_not_have_stops_it(tmp_path):
    """Case 8 for names the kit knows: `papermill 00_data_analysis.ipynb -p epochs 5` must not run silently."""
    with pytest.raises(pm.PapermillExecutionError, match="epochs"):
        pm.execute_notebook(str(NOTEBOOKS / "00_data_analysis.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(quick=True, epochs=5, output_dir=str(tmp_path / "out")),
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death signal is Linux's")
def test_killing_the_sweep_ends_its_trainer_and_a_rerun_never_shares_the_folder(fake_root, tmp_path, capsys,
                                                                                 monkeypatch):
    """Case 10: `kill -9` of the sweep alone; then the sweep run again while a trainer still holds the run."""
    out = tmp_path / "sweep"
    args = ["--grid", "seed", "0", "-p", "model", "mlp", "-p", "hidden", "8,8", "-p", "epochs", "5000",
            "-p", "data_dir", str(fake_root), "-p", "val_size", "100", "--jobs", "1", "--output-dir", str(out)]
    monkeypatch.setenv("CIFAR_LAB_QUICK", "")  # real training on the small data set: long enough to be killed
    the_sweep = subprocess.Popen([sys.executable, "-m", "cifar_lab.kit.sweep", *args],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        record = out / "seed=0" / "run.json"
        for _ in range(600):  # the trainer has claimed its folder
            if record.exists() and json.loads(record.read_text())["status"] == "running":
                break
            assert the_sweep.poll() is None, "the sweep ended before its trainer started"
            time.sleep(0.2)
        trainer = json.loads(record.read_text())["pid"]
    finally:
        the_sweep.send_signal(signal.SIGKILL)
        the_sweep.wait()
    for _ in range(100):
        try:
            os.kill(trainer, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(trainer, signal.SIGKILL)
        pytest.fail("the trainer outlived the sweep")

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a trainer still running
    try:
        (out / "seed=0" / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        before = record.read_bytes()
        assert sweep.main(args) == 1
    finally:
        holder.kill()
    printed = capsys.readouterr().out
    assert "seed=0 failed" in printed and "in use by another run" in printed and "1 of 1 runs FAILED" in printed
    assert record.read_bytes() == before


def test_a_test_batch_copied_over_a_training_batch_is_refused(fake_root, tmp_path):
    """Case 11 (README: 'checking every file by content ... counts'): a test batch copied over a training one."""
    root = tmp_path / "data"
    shutil.copytree(fake_root / FOLDER, root / FOLDER)
    shutil.copy(root / FOLDER / "test_batch", root / FOLDER / "data_batch_5")  # same size: only a copy check sees it
    with pytest.raises(CifarDataError, match="test_batch holds the same images as data_batch_5"):
        load_cifar10(root, download=False)


@pytest.mark.slow
def test_a_model_listed_twice_stops_before_any_training(tmp_path):
    """Case 12: `-p models mlp,mlp` trained twice and recorded once."""
    with pytest.raises(pm.PapermillExecutionError, match="model 'mlp' is listed twice"):
        pm.execute_notebook(str(NOTEBOOKS / "04_resnet_comparison.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(quick=True, models="mlp,mlp", pretrained=False,
                                            output_dir=str(tmp_path / "out")),
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("notebook, params, message", [
    ("02_cnn", dict(mlp_metrics=True), r"mlp_metrics must be non-empty text, got True \(bool\)"),
    ("03_regularization", dict(sweep_summary=True), r"sweep_summary must be non-empty text, got True \(bool\)"),
    ("04_resnet_comparison", dict(models=""), r"models must be non-empty text, got ''"),
])
def test_notebook_parameters_used_late_are_checked_in_the_first_cell(notebook, params, message, tmp_path):
    """Unclear messages: `-p mlp_metrics True`, `-p sweep_summary True`, `-p models ""` failed after training."""
    with pytest.raises(ValueError, match=message):
        start(notebook, dict(quick=True, output_dir=str(tmp_path / "out"), **params))
    assert not (tmp_path / "out").exists()  # refused before a folder is taken


# ---------------------------------------------------------------- one plain sentence for every mistake

class NearlyFullDisk(io.FileIO):
    """A file on a disk with 100 kB left: a write past them fails as the OS fails it."""

    def write(self, b):
        if self.tell() + len(b) > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def test_a_full_disk_while_saving_a_checkpoint_says_so_and_keeps_the_old_one(tmp_path, monkeypatch):
    """Unclear messages: ENOSPC inside torch.save ended in 'enforce fail at inline_container.cc'."""
    from cifar_lab import files
    last = save_checkpoint(tmp_path / "last.pt", tiny_mlp())
    before = last.read_bytes()
    fdopen = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode="r", *a, **k: io.BufferedWriter(NearlyFullDisk(fd, "wb"))
                        if mode == "wb" else fdopen(fd, mode, *a, **k))
    with pytest.raises(DiskFullError, match="no space left on the disk to write .*last.pt.*resume it"):
        save_checkpoint(last, tiny_mlp())
    assert last.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_resuming_with_another_optimiser_names_the_difference(fake_data, tmp_path):
    """Unclear messages: it ended in `KeyError: 'step'` inside the optimiser."""
    last = interrupted_fit(fake_data, tmp_path, optimizer="sgd")
    with pytest.raises(ValueError, match=r"resume it with the same ones: optimizer='sgd' \(not 'adam'\)"):
        fit(tiny_mlp(), fake_data, epochs=2, optimizer="adam", resume=last, **QUICK)


def test_a_file_or_unwritable_folder_as_sweep_or_report_output_is_refused_up_front(tmp_path, capsys):
    """Unclear messages: bare pathlib tracebacks for `--output-dir` of a sweep and `--reports` of a report."""
    (tmp_path / "a_file").write_text("x")
    unwritable = tmp_path / "a_file" / "inside"  # cannot be created, not even by root
    for command, flag in ((sweep.main, "--output-dir"), (report.main, "--reports")):
        extra = ["--grid", "seed", "0"] if command is sweep.main else ["--only", "00_data_analysis"]
        with pytest.raises(SystemExit):
            command([*extra, flag, str(tmp_path / "a_file")])
        assert f"{flag} {tmp_path / 'a_file'} is a file, not a folder" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            command([*extra, flag, str(unwritable)])
        assert f"{flag} {unwritable} cannot be written" in capsys.readouterr().err


def test_an_unwritable_checkpoint_folder_is_refused_before_training(fake_data, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir .* cannot be written .*choose another folder"):
        fit(tiny_mlp(), fake_data, epochs=1, checkpoint_dir=tmp_path / "a_file" / "ckpt", batch_size=64,
            progress=False)
    assert "epoch" not in capsys.readouterr().out  # not one epoch trained


def test_one_damaged_run_does_not_block_the_sweep_summary(tmp_path, capsys):
    """Unclear messages: a corrupted run's metrics.json made the whole summary fail."""
    for seed, metrics in ((0, json.dumps({"quick": False, "models": {"cnn": {"test_acc": 0.8}}})), (1, '{"mod')):
        run = tmp_path / f"seed={seed}"
        run.mkdir()
        (run / "sweep_run.json").write_text(json.dumps({"index": seed, "name": run.name, "status": "ok",
                                                        "params": {"seed": seed}, "grid": {"seed": seed}}))
        (run / "metrics.json").write_text(metrics)  # seed=1 was cut off mid-write
    table = sweep.write_summary(tmp_path)
    assert table.loc[0, "n"] == 1 and table.loc[0, "test_acc_mean"] == pytest.approx(0.8)
    assert "skipped seed=1" in capsys.readouterr().out


def test_the_default_download_path_names_the_missing_file(fake_root, tmp_path, monkeypatch):
    """Unclear messages: offline, with one batch file lost, the message listed all files, not the lost one."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    shutil.copytree(fake_root / FOLDER, tmp_path / FOLDER)
    (tmp_path / FOLDER / "data_batch_3").unlink()
    with pytest.raises(CifarDataError, match="Missing before the download: data_batch_3."):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("name, options, message", [
    ("cnn", dict(widths=(64, 128)), "widths must be 3 positive integers"),  # two widths
    ("cnn", dict(widths="wide"), "widths must be 3 positive integers separated by commas, like '64,64,64', "
                                 "got 'wide'"),
    ("mlp", dict(hidden=(0, 10)), "hidden must be 2 positive integers"),
    ("cnn", dict(fc_width="256"), r"fc_width must be an integer >= 1, got '256' \(str\)"),
    ("resnet18", dict(width=0), "width must be an integer >= 1, got 0"),
    ("cnn", dict(fc_widht=256), r"cnn has no option 'fc_widht' \(did you mean 'fc_width'\?\)"),
])
def test_model_option_mistakes_end_in_a_sentence_not_deep_in_torch(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_model(name, **options)


def test_a_model_for_five_classes_on_ten_class_data_is_refused_before_training(fake_data):
    with pytest.raises(ValueError, match=r"maps 2 images to \(2, 5\), but the data has 10 classes"):
        fit(make_model("cnn", widths=(8, 8, 8), num_classes=5), fake_data, epochs=1, **QUICK)


def test_a_warm_up_of_exactly_one_step_trains(fake_data):
    """A value that passes the checks ended in ZeroDivisionError inside torch's OneCycleLR (4 steps x 0.25)."""
    history = fit(tiny_mlp(), fake_data, epochs=1, batch_size=225, warmup_fraction=0.25, progress=False,
                  verbose=False)
    assert history.info["status"] == "completed" and torch.isfinite(torch.tensor(history.train_loss)).all()


def test_asking_whether_a_run_still_goes_never_signals_it_on_windows(monkeypatch):
    """On Windows os.kill(pid, 0) sends Ctrl-C or terminates the process: the check must only ask there.

    The Windows query itself (ctypes) is replaced here, as this runs on Linux; only the choice is tested."""
    asked = []
    monkeypatch.setattr(runs.os, "name", "nt")
    monkeypatch.setattr(runs.os, "kill", lambda *a: pytest.fail(f"os.kill{a} on Windows"))
    monkeypatch.setattr(runs, "_alive_on_windows", lambda pid: asked.append(pid) or True)
    assert runs._alive({"host": socket.gethostname(), "pid": 4242})
    assert asked == [4242]


def test_a_run_whose_process_has_ended_is_not_taken_for_a_live_one():
    """A record naming a finished process of this machine is an unfinished run, not one in use."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert not runs._alive({"host": socket.gethostname(), "pid": ended.pid})
    assert runs._alive({"host": socket.gethostname(), "pid": os.getppid()})  # the shell that started the tests
