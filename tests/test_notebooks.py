"""Each notebook, run by papermill as a teacher would, with overridden parameters, in quick mode."""
import json
import re
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from cifar_lab.kit import sweep

pytestmark = pytest.mark.slow  # papermill, subprocesses: the slow tier

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TEACHER = NOTEBOOKS.parent / "teacher" / "source"  # nbgrader's source folder: the lessons with their solutions

PROMISED = {
    "00_data_analysis": ["class_distribution.png", "examples_per_class.png", "channel_histograms.png",
                         "normalised_images.png"],
    "01_mlp": ["learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "history.csv"],
    "02_cnn": ["learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "predictions.png",
               "misclassified.png", "cnn_vs_mlp.png", "augmented.png"],
    "03_regularization": ["techniques_test_acc.png", "gap_curves.png", "schedulers.png", "budget_sweep.png"],
    "04_resnet_comparison": ["comparison.png", "comparison.csv", "per_class_accuracy.png", "sweep_summary.png",
                             "plain_vs_residual.png"],
    "05_reference_recipes": ["reruns.png", "reruns.csv"],
    "06_fast_training": ["ablation.png", "ablation.csv", "learning_curves.png", "accuracy_vs_time.png",
                         "confusion_matrix.png", "misclassified.png"],
}
OVERRIDES = {
    "01_mlp": dict(hidden="64,32", lr=0.003),
    "02_cnn": dict(cutout=8, flip=False),
    "03_regularization": dict(seeds=2, widths="8,16,16", early_stopping=1),
    "04_resnet_comparison": dict(models="mlp,cnn", pretrained=False),
    "05_reference_recipes": dict(reruns="000,002_mlp,004a"),  # 004a: the network written in the open
}


@pytest.fixture(scope="module")
def sweep_summary(tmp_path_factory):
    """A summary.csv as `python -m cifar_lab.kit.sweep` writes it: two models over two seeds."""
    runs = pd.DataFrame([{"run": f"seed={s}", "seed": s, "model": m, "test_acc": acc, "best_val_acc": acc,
                          "train_seconds": 1.0, "quick": True}
                         for s, m, acc in [(0, "cnn", 0.8), (1, "cnn", 0.82), (0, "mlp", 0.5), (1, "mlp", 0.54)]])
    path = tmp_path_factory.mktemp("sweep") / "summary.csv"
    sweep.summarize(runs).to_csv(path, index=False)
    (path.parent / sweep.SWEEP_INFO).write_text(json.dumps({"grid": {"seed": [0, 1]}, "fixed": {"quick": True, "epochs": 1}}))
    return path


@pytest.fixture(scope="module")
def budget_sweep(tmp_path_factory):
    """A summary.csv of a sweep over epochs, as notebook 03's budget section reads it: two settings, two seeds."""
    runs = pd.DataFrame([{"run": f"epochs={e}", "epochs": e, "seed": s, "model": m, "test_acc": acc + s / 100,
                          "best_val_acc": acc, "train_seconds": 1.0, "quick": True}
                         for e in (1, 2) for s in (0, 1) for m, acc in [("none", 0.5), ("augmentation", 0.5 + 0.1 * e)]])
    path = tmp_path_factory.mktemp("budget") / "summary.csv"
    sweep.summarize(runs).to_csv(path, index=False)
    (path.parent / sweep.SWEEP_INFO).write_text(json.dumps({"notebook": "03_regularization",
                                                           "grid": {"epochs": [1, 2]}, "fixed": {"seeds": 2}}))
    return path


def execute(name, tmp_path, solved=False, **params):
    """Run the notebook as it ships, or (`solved`) the teacher's copy: worked solutions and hidden tests in."""
    source = TEACHER / name / f"{name}.ipynb" if solved else NOTEBOOKS / f"{name}.ipynb"
    return pm.execute_notebook(str(source), str(tmp_path / f"{name}.out.ipynb"),
                               parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)


def solutions(name):
    """The teacher's copy's solution cells (nbgrader's `solution` cells), one per exercise."""
    cells = json.loads((TEACHER / name / f"{name}.ipynb").read_text())["cells"]
    return [c for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]


def exercise_checks(executed):
    """What each exercise cell's check printed (its last line)."""
    cells = [c for c in executed["cells"] if "exercise" in c["metadata"].get("tags", [])]
    return ["".join(o.get("text", "") for o in c["outputs"] if o["output_type"] == "stream").strip().split("\n")[-1]
            for c in cells]


@pytest.mark.parametrize("name", list(PROMISED))
def test_notebook_writes_its_metrics_and_figures(name, tmp_path, sweep_summary, budget_sweep):
    out = tmp_path / "out"
    shows_sweeps = name == "04_resnet_comparison"
    executed = execute(name, tmp_path, solved=True, quick=True, seed=1, output_dir=str(out), **OVERRIDES.get(name, {}),
                       **(dict(sweep_summary=str(sweep_summary)) if shows_sweeps else {}),
                       **(dict(budget_sweep=str(budget_sweep)) if name == "03_regularization" else {}))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quick"] is True and metrics["params"]["seed"] == 1
    assert metrics["environment"]["torch"]
    for figure in PROMISED[name]:
        assert (out / figure).stat().st_size > 0, figure
    for model in metrics["models"].values():
        assert 0 <= model["test_acc"] <= 1 and model["epochs"] == 1
    if name == "01_mlp":  # capacity or overfitting: the unregularised MLP, measured clean, and a takeaway
        assert list(metrics["models"]) == ["mlp", "mlp, unregularised"]
        assert "**Takeaway.** Unregularised, the MLP reaches" in json.dumps(executed["cells"])
    if name == "02_cnn":
        assert "expected calibration error" in json.dumps(executed["cells"])
    if name == "04_resnet_comparison":  # the asked models, then the plain and residual nets at two depths
        assert list(metrics["models"]) == ["mlp", "cnn", "plain20", "plain56", "resnet20", "resnet56"]
        assert "Without shortcuts the 56-layer net ends at training loss" in json.dumps(executed["cells"])
    if name == "05_reference_recipes":
        assert list(metrics["models"]) == ["000", "002_mlp", "004a"]
        assert metrics["models"]["004a"]["parameters"] == 5_295_242 and metrics["models"]["000"]["reported"] == "86.20%"
    if name == "06_fast_training":  # the full recipe and each of 7 methods left out; the recipe's FLOPs
        assert [r["step"] for r in metrics["ablation"]][:2] == ["full recipe", "without whitening stem"]
        assert len(metrics["ablation"]) == 8 and list(metrics["models"])[-2:] == ["fast", "02 CNN, same seconds"]
        assert 0 < metrics["models"]["fast"]["pflops"] < 0.01
        shown = [o["data"]["text/markdown"] for c in executed["cells"] for o in c.get("outputs", [])
                 if "text/markdown" in o.get("data", {})]
        assert any("02's CNN, given the same seconds (1 epochs" in "".join(m) for m in shown)  # the race's takeaway
    if name == "03_regularization":  # every setting over 2 seeds, judged against the baseline; the budget sweep
        (cell,) = [c for c in executed["cells"] if "**Takeaway** (2 epochs" in json.dumps(c.get("outputs", []))]
        assert "augmentation +20.0 points (beyond 2 std" in json.dumps(cell["outputs"])  # 70% against 50%
        assert {s["setting"]: s["n"] for s in metrics["settings"]}["none"] == 2
        assert set(metrics["verdicts"]) >= {"dropout", "batchnorm", "augmentation", "all together"}
    if name != "00_data_analysis":  # each lesson ends in a takeaway computed from its run, shown as Markdown
        shown = [o["data"]["text/markdown"] for c in executed["cells"] for o in c.get("outputs", [])
                 if "text/markdown" in o.get("data", {})]
        assert any("**Takeaway" in "".join(m) for m in shown), name
    checks = exercise_checks(executed)  # every worked solution passes its exercise's check (and its hidden test ran)
    assert len(checks) == len(solutions(name)) >= 3 and all(c.strip() == "right" for c in checks), checks
    if shows_sweeps:  # the sweep's table is displayed, with the quick-mode warning
        (cell,) = [c for c in executed["cells"] if "sweep.newest(" in (s := "".join(c["source"])) and "budget_sweep" not in s]
        shown = "".join(str(o) for o in cell["outputs"])
        assert "81.00%" in shown and "quick mode" in shown  # the cnn's mean of 80% and 82%


@pytest.mark.parametrize("params, message", [
    (dict(epochs="ten"), "epochs must be an integer >= 1, got 'ten' (str)"),
    (dict(epoch=1), "unknown parameter 'epoch' (did you mean 'epochs'?)"),
    (dict(lr=-1.0), "lr must be a number > 0"),
    (dict(hidden="1024"), "hidden must be 2 positive integers"),
    (dict(batch_size=0), "batch_size must be an integer >= 2"),
])
def test_bad_parameters_stop_at_the_first_cell_with_a_message(params, message, tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("01_mlp", tmp_path, quick=True, output_dir=str(tmp_path / "out"), **params)
    assert message in str(e.value)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_source_notebooks_are_clean_and_parameterised():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(TEACHER.glob("*/*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c["outputs"] or c["execution_count"] for c in code), f"{path.name} has outputs"
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("seed", "data_dir", "output_dir", "quick"):
            assert f"\n{name} = " in "\n" + "".join(tagged[0]["source"]), (path.name, name)


def test_the_notebooks_parameters_agree_with_the_library_recipes():
    """01 and 02 teach the recipes the command line runs: one set of numbers, never two that drift apart."""
    from cifar_lab.options import MODEL, defaults
    from cifar_lab.recipes import RECIPES, training_options
    for name, recipe in (("01_mlp", RECIPES["mlp"]), ("02_cnn", RECIPES["cnn"])):
        declared = {k: v["default"] for k, v in pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb")).items()}
        library = {**defaults(MODEL), **recipe.model_options, **training_options(recipe)}
        shared = set(declared) & set(library) - {"seed"}
        assert shared >= {"epochs", "lr", "weight_decay", "label_smoothing", "batch_size"}, name
        assert {k: eval(declared[k]) for k in shared} == {k: library[k] for k in shared}, name


def test_runs_never_share_a_folder_and_a_used_one_is_refused(tmp_path):
    """A notebook run with its default folder, then a second run pointed at that folder: the first is kept."""
    pm.execute_notebook(str(NOTEBOOKS / "00_data_analysis.ipynb"), str(tmp_path / "a.ipynb"),
                        parameters=dict(quick=True), cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    (first,) = (tmp_path / "outputs" / "quick" / "00_data_analysis").iterdir()  # a new, dated folder
    before = (first / "metrics.json").read_bytes()
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("00_data_analysis", tmp_path, quick=True, output_dir=str(first))
    assert "already holds a finished run" in str(e.value)  # papermill alone recorded its end
    assert (first / "metrics.json").read_bytes() == before


def test_the_colab_badge_and_install_cell_use_pyprojects_repository():
    from cifar_lab.kit import colab
    want = colab.notebook_sources(colab.repository())
    for path in sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(TEACHER.glob("*/*.ipynb")):
        text = colab.sources(path)
        assert want["badge"] + path.name in text and want["install"] in text, path.name
