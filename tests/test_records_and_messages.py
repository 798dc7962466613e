"""Round two of "nothing lost": a record never lies, a message never sends the user the wrong way.

Each test reproduces one case of the held-out battery (as a student or teacher would hit it, on synthetic
data); the comment names the principle the fix lives in.
"""
import json
import pickle
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest

from cifar_lab import CifarDataError, fit, load_cifar10, make_model
from cifar_lab.data import FOLDER, read_batch
from cifar_lab.kit import colab, exercises, jpeg, report, sweep, train
from cifar_lab.kit.fake import make_fake_cifar10

QUICK = dict(batch_size=64, progress=False, verbose=False)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")


def interrupted_training_run(folder: Path) -> None:
    """A finished quick run turned into what an interrupted one leaves (run.json 'interrupted', checkpoints)."""
    assert train.main(["--model", "mlp", "--hidden", "16,16", "--output-dir", str(folder)]) == 0
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))


# ---------------------------------------------------------------- the run folder's claim

def test_resume_with_last_pt_deleted_is_refused_naming_it_and_best_pt_stays(tmp_path, quick):
    interrupted_training_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()
    best = (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes()
    with pytest.raises(SystemExit, match=r"nothing to resume in .*run: it holds no checkpoints/last.pt"):
        train.main(["--model", "mlp", "--hidden", "16,16", "--output-dir", str(tmp_path / "run"), "--resume"])
    assert (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes() == best
    assert "resumed" not in json.loads((tmp_path / "run" / "run.json").read_text())


def test_resume_from_a_truncated_last_pt_is_one_sentence_not_a_traceback(tmp_path, quick):
    interrupted_training_run(tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    with pytest.raises(SystemExit, match=r"error: cannot continue from it: .*last.pt is not a readable checkpoint.*"
                                         r"best.pt beside it still holds the best weights"):
        train.main(["--model", "mlp", "--hidden", "16,16", "--output-dir", str(tmp_path / "run"), "--resume"])


def test_a_run_that_failed_before_training_says_so_and_the_corrected_command_may_use_its_folder(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "")
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("x")
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="is a file"):
        train.main(["--model", "mlp", "--hidden", "16,16", "--data-dir", str(not_a_folder), "--output-dir", str(out)])
    assert "--resume" not in capsys.readouterr().out  # nothing to resume: no epoch ran
    assert json.loads((out / "run.json").read_text())["status"].startswith("failed before training")
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    assert train.main(["--model", "mlp", "--hidden", "16,16", "--output-dir", str(out)]) == 0  # same folder
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_an_empty_training_subset_is_refused_by_name_not_by_the_scheduler(fake_data):
    with pytest.raises(ValueError, match="train_size must be an integer >= 1, got 0"):
        fit(make_model("mlp", hidden=(16, 16)), fake_data.subset(0), epochs=1, **QUICK)


def test_load_cifar10_names_subset_when_subset_is_wrong(fake_root):
    with pytest.raises(ValueError, match="subset must be an integer >= 10, got 0"):
        load_cifar10(fake_root, subset=0, download=False)


# ---------------------------------------------------------------- the run record's end

def tiny_notebook(path: Path, last_cell: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("seed = 0\nquick = True\ndata_dir = None\noutput_dir = None",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from cifar_lab.kit import course\nrun = course.start('tiny', globals())"),
                nbformat.v4.new_code_cell(last_cell)]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("last_cell, status", [
    ("run.path('metrics.json').write_text('{}')", "finished"),
    ("raise RuntimeError('a bug in the last cell')", "failed: RuntimeError: a bug in the last cell"),
])
def test_a_notebook_run_by_papermill_directly_records_how_it_ended(tmp_path, last_cell, status):
    source = tiny_notebook(tmp_path / "nb.ipynb", last_cell)
    out = tmp_path / "out"
    try:
        pm.execute_notebook(str(source), str(tmp_path / "done.ipynb"), parameters=dict(output_dir=str(out)),
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    except pm.PapermillExecutionError:
        pass
    assert json.loads((out / "run.json").read_text())["status"] == status


# ---------------------------------------------------------------- the sweep's identity

@pytest.mark.slow
def test_a_different_sweep_into_a_sweeps_folder_is_refused_before_anything_runs(tmp_path, quick, capsys):
    out = tmp_path / "sweep"
    first = ["--grid", "seed", "0", "1", "-p", "model", "mlp", "-p", "hidden", "16,16", "--jobs", "2",
             "--output-dir", str(out)]
    assert sweep.main(first) == 0
    summary = (out / "summary.csv").read_bytes()
    with pytest.raises(SystemExit):
        sweep.main(["--grid", "seed", "0", "1", "2", "-p", "model", "mlp", "-p", "hidden", "16,16",
                    "-p", "lr", "0.01", "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert "holds another sweep" in err and "'lr': 0.01" in err
    assert (out / "summary.csv").read_bytes() == summary
    assert json.loads((out / "sweep.json").read_text())["fixed"] == {"model": "mlp", "hidden": "16,16"}


def test_the_same_sweep_with_more_seeds_is_the_same_sweep(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / sweep.SWEEP_INFO).write_text(json.dumps({"notebook": None, "grid": {"seed": [0, 1]},
                                                    "fixed": {"model": "mlp"}}))
    sweep.same_sweep(out, None, {"seed": [0, 1, 2]}, {"model": "mlp"})  # no error
    with pytest.raises(ValueError, match=r"holds another sweep \(fixed: \{'model': 'mlp'\} there"):
        sweep.same_sweep(out, None, {"seed": [2]}, {"model": "mlp", "lr": 0.01})


# ---------------------------------------------------------------- the commands' error boundary

def test_colab_refuses_the_clone_url_and_says_how_to_write_it():
    with pytest.raises(ValueError, match=r"github.com/ORG/REPO \(without .git: github.com/org/repo\)"):
        colab.write("github.com/org/repo.git")


def test_jpeg_on_a_folder_without_cifar10_is_one_sentence(tmp_path):
    with pytest.raises(SystemExit, match="^error: CIFAR-10 not found"):
        jpeg.main([str(tmp_path), str(tmp_path / "out")])


@pytest.mark.parametrize("labels, message", [
    ([3.5] * 4, "labels must be whole numbers 0..9, found float64 values such as 3.5"),
    (["cat"] * 4, "labels must be whole numbers 0..9, found <U3 values such as 'cat'"),
])
def test_a_batch_with_labels_that_are_not_class_numbers_is_refused(tmp_path, labels, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": labels}))
    with pytest.raises(CifarDataError, match=message):
        read_batch(path)


def test_an_unpackable_archive_in_the_data_folder_is_named_in_the_offline_message(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"cut short")
    with pytest.raises(CifarDataError, match=r"cifar-10-python.tar.gz is there but could not be unpacked "
                                             r"\(9 bytes.*delete it and download it again"):
        load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize("answer, expected, says", [
    ("3", 3, "give a number, not the text '3' (drop the quotes)"),
    (np.array([1, 2]), 3, "give one value, not an array of shape (2,)"),
    (3, "b", "give the answer as text in quotes, not the number 3"),
])
def test_an_exercise_answer_of_the_wrong_kind_is_told_its_kind(answer, expected, says):
    assert exercises.check(answer, expected, "the hint") == f"not quite: {says}"


def test_a_malformed_sweep_summary_does_not_stop_the_report_index(tmp_path):
    (tmp_path / "sweep_x").mkdir()
    (tmp_path / "sweep_x" / "summary.csv").write_text("a,b\n1,2\n")
    (tmp_path / "sweep_x" / "sweep.json").write_text('{"grid": {"seed": [0]}, "fixed": {"epochs": 2}}')
    page = report.write_index(tmp_path, [], []).read_text()
    assert "summary.csv cannot be read" in page and "sweep_x" in page


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """Python's own SIGINT handler, as in a terminal: a background job (`cmd &` in a script) inherits SIG_IGN."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_write_then_stops(tmp_path, ctrl_c_as_in_a_terminal):
    """Ctrl-C while last.pt is written broke torch.save in C++ ("enforce fail"); now it lands after the write."""
    import os
    import signal
    import torch
    from cifar_lab.files import atomic_write

    def write(f):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C mid-write
        torch.save({"weights": torch.ones(1000)}, f)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "last.pt", write)
    assert torch.load(tmp_path / "last.pt")["weights"].sum() == 1000  # whole and readable
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored_through_a_write(tmp_path):
    import os
    import signal
    from cifar_lab.files import atomic_write
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job runs
    try:
        atomic_write(tmp_path / "x.txt", lambda f: (os.kill(os.getpid(), signal.SIGINT), f.write("whole")), mode="w")
        assert (tmp_path / "x.txt").read_text() == "whole" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_report_that_cannot_copy_its_failure_names_the_folder_that_holds_it(tmp_path, monkeypatch, capsys):
    """A full disk during `report`: the executed copy and log stay in the staging folder, and the message says so."""
    import shutil
    from cifar_lab.kit import notebooks

    def failing_execute(source, executed, params, log, show=print, env=None):
        log.write_text("boom\n")
        return 1
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(notebooks, "execute", failing_execute)
    monkeypatch.setattr(shutil, "copy", full_disk)
    report.main(["--only", "00_data_analysis", "--reports", str(tmp_path / "reports")])
    printed = capsys.readouterr().out
    assert "FAILED" in printed and ".staging" in printed and str(tmp_path / "reports" / "failed") not in printed


def test_a_second_sweep_into_a_folder_where_one_is_running_is_refused_and_touches_nothing(tmp_path, quick, capsys):
    import socket
    import subprocess
    import sys
    out = tmp_path / "sweep"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))  # the first sweep
        with pytest.raises(SystemExit):
            sweep.main(["--grid", "seed", "0", "-p", "model", "mlp", "-p", "hidden", "16,16", "--output-dir", str(out)])
    finally:
        holder.kill()
        holder.wait()
    assert "another sweep is running there" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [".lock"]  # no record rewritten, no summary written


def test_a_prediction_counts_only_when_made_before_the_reveal():
    from cifar_lab.kit import exercises
    exercises._PREDICTIONS.clear(), exercises._REVEALED.clear()
    assert exercises.predict("cnn test accuracy", 0.8) == "prediction recorded: cnn test accuracy = 0.8"
    assert exercises.reveal("cnn test accuracy", 0.8561, "{:.1%}") == \
        "cnn test accuracy: you predicted 80.0%, the run gave 85.6%"
    assert exercises.predict("cnn test accuracy", 0.86).startswith("too late")  # after the reveal: not recorded
    assert exercises._PREDICTIONS["cnn test accuracy"] == 0.8
    assert "no prediction was recorded" in exercises.reveal("darkest channel", "blue")
    assert exercises.predict("x", None).startswith("no prediction yet")


def test_an_exercise_cell_holds_the_answer_and_the_check_only_never_the_expected_value():
    import json
    import re
    from pathlib import Path
    from cifar_lab.kit.answers import KEY
    STUB = "# YOUR ANSWER HERE (replace None above)"  # teacher/nbgrader_config.py's ClearSolutions.code_stub
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if "exercise" in c["metadata"].get("tags", [])]
        numbers = []
        for cell in cells:
            first, *rest = "".join(cell["source"]).split("\n")
            n = int(re.match(r"answer_(\d+) = None", first).group(1))
            assert rest == [STUB, f"print(run.check({n}, answer_{n}))"], (path.name, n)  # nbgrader's stub between
            numbers.append(n)
        assert numbers == sorted(KEY[path.stem]), path.name  # every exercise has a key, every key an exercise


def test_the_answer_key_says_right_not_quite_or_what_to_do_first():
    from cifar_lab.kit.answers import check_answer
    g = {}
    assert check_answer("01_mlp", 1, 3 * 64 * 64 * 1024 + 1024, g) == "right"  # a 64x64 image's first layer
    assert check_answer("01_mlp", 1, 3072 * 1024 + 1024, g).startswith("not quite: inputs")  # the 32x32 one
    assert check_answer("01_mlp", 4, None, g) == "not answered yet"
    assert check_answer("01_mlp", 3, True, g).startswith("first train both")  # its runs are not there yet
    assert check_answer("03_regularization", 5, None, g) == "not answered yet"  # a coding task not tried yet
    measured, said = check_answer("03_regularization", 5, lambda x, p, training: x, g).split("\n")
    assert measured.startswith("zeroed: yours 0.0000") and said.startswith("not quite: keep = ")  # runs the code
    with pytest.raises(ValueError, match="01_mlp has no exercise 9: it has 1, 2, 3, 4, 5"):
        check_answer("01_mlp", 9, 1, g)


def test_the_keys_computed_from_a_run_refuse_a_wrong_answer():
    from types import SimpleNamespace
    import pandas as pd
    import torch
    from cifar_lab.kit.answers import check_answer
    data = SimpleNamespace(train_images=torch.zeros(4, 3, 32, 32, dtype=torch.uint8), classes=["airplane", "cat"],
                           val_labels=torch.tensor([1, 0, 0, 0]), val_images=torch.full((4, 3, 32, 32), 7, dtype=torch.uint8))
    g = {"data": data}
    assert check_answer("00_data_analysis", 1, 0.25, g) == "right" and check_answer("00_data_analysis", 1, 0.1, g) != "right"
    assert check_answer("00_data_analysis", 2, 128 * 3072, g) == "right" and check_answer("00_data_analysis", 2, 3072, g) != "right"
    assert check_answer("00_data_analysis", 3, 7.0, g) == "right" and check_answer("00_data_analysis", 3, 7.2, g) != "right"
    table = pd.DataFrame({"gap": [0.3, 0.1], "test acc": [0.5, 0.6], "test acc std": [0.01, 0.01], "n": [1, 1]},
                         index=["none", "label smoothing"])
    g = {"table": table, "settings": "all"}
    assert check_answer("03_regularization", 1, "none", g) == "right" and check_answer("03_regularization", 1, "label smoothing", g) != "right"
    assert "rerun with seeds=2" in check_answer("03_regularization", 2, True, g)  # one seed: no spread to judge by
    parameters = pd.DataFrame({"test_acc": [0.5, 0.8], "parameters": [1_000_000, 4_000_000]}, index=["mlp", "cnn"])
    assert check_answer("04_resnet_comparison", 2, "mlp", {"table": parameters}) == "right"
    assert check_answer("04_resnet_comparison", 2, "cnn", {"table": parameters}) != "right"


def test_no_student_notebook_holds_an_answer_of_its_teachers_copy():
    """Every `answer_N = ...` line of a worked solution is absent from the notebook students get."""
    import json
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for source in sorted((root / "teacher" / "source").glob("*/*.ipynb")):
        cells = json.loads(source.read_text())["cells"]
        solved = ["".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
        blocks = [re.search(r"### BEGIN SOLUTION\n(.*)### END SOLUTION", text, re.S).group(1) for text in solved]
        answers = [line.strip() for block in blocks for line in block.split("\n") if re.match(r"\s*answer_\d+ = ", line)
                   and not re.search(rf"^(class|def) {re.escape(line.split('= ', 1)[1].strip())}\b", block, re.M)]
        # the class or function a coding task asks for (`answer_5 = CifarTrain`): a name, not an answer
        student = "".join("".join(c["source"]) for c in json.loads((root / "notebooks" / source.name).read_text())["cells"])
        assert len(answers) >= len(solved) - 1 >= 2, source.name  # every value answer's solution sets it
        assert [a for a in answers if a in student] == [], source.name
        assert "BEGIN SOLUTION" not in student and "import passed" not in student, source.name
