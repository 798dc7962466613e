"""Each notebook, run by papermill as a teacher would, with overridden parameters, in quick mode."""
import json
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from cifar_lab import sweep

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

PROMISED = {
    "00_data_analysis": ["class_distribution.png", "examples_per_class.png", "channel_histograms.png",
                         "normalised_images.png"],
    "01_mlp": ["learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "history.csv"],
    "02_cnn": ["learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "predictions.png",
               "misclassified.png", "cnn_vs_mlp.png", "augmented.png"],
    "03_regularization": ["techniques_test_acc.png", "gap_curves.png", "schedulers.png", "sweep_summary.png"],
    "04_resnet_comparison": ["comparison.png", "comparison.csv", "per_class_accuracy.png", "sweep_summary.png"],
}
OVERRIDES = {
    "01_mlp": dict(hidden="64,32", lr=0.003),
    "02_cnn": dict(cutout=8, flip=False),
    "03_regularization": dict(seeds=2, widths="8,16,16", early_stopping=1),
    "04_resnet_comparison": dict(models="mlp,cnn", pretrained=False),
}


@pytest.fixture(scope="module")
def sweep_summary(tmp_path_factory):
    """A summary.csv as `python -m cifar_lab.sweep` writes it: two models over two seeds."""
    runs = pd.DataFrame([{"run": f"seed={s}", "seed": s, "model": m, "test_acc": acc, "best_val_acc": acc,
                          "train_seconds": 1.0, "quick": True}
                         for s, m, acc in [(0, "cnn", 0.8), (1, "cnn", 0.82), (0, "mlp", 0.5), (1, "mlp", 0.54)]])
    path = tmp_path_factory.mktemp("sweep") / "summary.csv"
    sweep.summarize(runs).to_csv(path, index=False)
    return path


def execute(name, tmp_path, **params):
    return pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                               parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)


@pytest.mark.parametrize("name", list(PROMISED))
def test_notebook_writes_its_metrics_and_figures(name, tmp_path, sweep_summary):
    out = tmp_path / "out"
    shows_sweeps = name in ("03_regularization", "04_resnet_comparison")
    executed = execute(name, tmp_path, quick=True, seed=1, output_dir=str(out), **OVERRIDES.get(name, {}),
                       **(dict(sweep_summary=str(sweep_summary)) if shows_sweeps else {}))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quick"] is True and metrics["params"]["seed"] == 1
    assert metrics["environment"]["torch"]
    for figure in PROMISED[name]:
        assert (out / figure).stat().st_size > 0, figure
    for model in metrics["models"].values():
        assert 0 <= model["test_acc"] <= 1 and model["epochs"] == 1
    if name == "04_resnet_comparison":
        assert list(metrics["models"]) == ["mlp", "cnn"]
    if name == "03_regularization":
        assert len(metrics["multi_seed"]["test_acc"]) == 2
    if shows_sweeps:  # the sweep's table is displayed, with the quick-mode warning
        last = "".join(str(o) for o in executed["cells"][-1]["outputs"])
        assert "0.81" in last and "quick mode" in last


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
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c["outputs"] or c["execution_count"] for c in code), f"{path.name} has outputs"
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("seed", "data_dir", "output_dir", "quick"):
            assert f"\n{name} = " in "\n" + "".join(tagged[0]["source"]), (path.name, name)


def test_the_notebooks_parameters_agree_with_the_library_recipes():
    """01 and 02 teach the recipes the command line runs: one set of numbers, never two that drift apart."""
    from cifar_lab.recipes import RECIPES
    for name, recipe in (("01_mlp", RECIPES["mlp"]), ("02_cnn", RECIPES["cnn"])):
        declared = {k: v["default"] for k, v in pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb")).items()}
        shared = set(declared) & set(recipe.training)
        assert shared >= {"epochs", "lr", "weight_decay", "label_smoothing"}, name
        assert {k: eval(declared[k]) for k in shared} == {k: recipe.training[k] for k in shared}, name


def test_runs_never_share_a_folder_and_a_used_one_is_refused(tmp_path):
    """A notebook run with its default folder, then a second run pointed at that folder: the first is kept."""
    pm.execute_notebook(str(NOTEBOOKS / "00_data_analysis.ipynb"), str(tmp_path / "a.ipynb"),
                        parameters=dict(quick=True), cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    (first,) = (tmp_path / "outputs" / "quick" / "00_data_analysis").iterdir()  # a new, dated folder
    before = (first / "metrics.json").read_bytes()
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("00_data_analysis", tmp_path, quick=True, output_dir=str(first))
    assert "already holds the results of an earlier run" in str(e.value)
    assert (first / "metrics.json").read_bytes() == before


def test_the_colab_badge_and_install_cell_use_pyprojects_repository():
    from cifar_lab import colab
    want = colab.notebook_sources(colab.repository())
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        text = colab.sources(path)
        assert want["badge"] + path.name in text and want["install"] in text, path.name
