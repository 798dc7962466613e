import json
import re
from pathlib import Path

import pytest

from cifar_lab.kit import report

pytestmark = pytest.mark.slow  # papermill, subprocesses: the slow tier


def test_report_exports_html_and_keeps_good_results_when_a_rerun_fails(tmp_path, capsys, tiny_notebooks):
    reports = tmp_path / "reports"
    assert report.main(["--quick", "--only", "99_tiny", "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "99_tiny: epoch   1/1" in out and "99_tiny done in" in out  # progress, then a one-line summary
    page = (reports / "99_tiny.html").read_text()
    assert "<nav" in page and "Class distribution" in page and "<img" in page
    assert "course.start(" not in page  # code hidden
    assert "it/s" not in (reports / "99_tiny.ipynb").read_text()  # no progress bar frozen at its first frame
    assert f"results in {reports}/99_tiny/" in page and ".staging" not in page  # where the results end up
    assert json.loads((reports / "99_tiny" / "run.json").read_text())["status"] == "finished"
    facts = re.search(r"This report's run</strong>: ([\d.]+) min for the whole notebook \(([\d,]+) s\)", page)
    assert facts and 0 < float(facts[1]) < 10  # when, how long, CPU and precision, above the lesson
    assert page.index("This report's run") < page.index('id="Class-distribution"')
    before = (reports / "99_tiny" / "metrics.json").read_text()
    assert report.drifted(reports) == {}  # executed from today's source
    source = tiny_notebooks / "99_tiny.ipynb"
    nb = json.loads(source.read_text())
    next(c for c in nb["cells"] if c["cell_type"] == "code")["source"] += "\n# a change after the report"
    source.write_text(json.dumps(nb))
    assert "its code differs from" in report.drifted(reports)["99_tiny"]

    assert report.main(["--quick", "--only", "99_tiny", "-p", "seed", "-1", "--reports", str(reports)]) == 1
    out = capsys.readouterr().out
    assert "99_tiny FAILED" in out and "seed must be an integer >= 0" in out
    assert (reports / "99_tiny" / "metrics.json").read_text() == before
    assert (reports / "failed" / "99_tiny.ipynb").exists()
    index = (reports / "index.html").read_text()
    assert "Failed in the last run" in index
    assert "device cpu (" in index and ("bf16" in index or "fp32" in index)  # which CPU and precision the times are from
    assert [r["model"] for r in json.loads((reports / "summary.json").read_text())] == ["cnn"]


def test_parameters_are_typed_like_papermill():
    assert [report.parse_value(v) for v in ("3", "0.1", "True", "None", "ten")] == [3, 0.1, True, None, "ten"]
    assert report.parse_value("002") == "002" and report.parse_value("0") == 0  # a recipe's name stays a name


def test_quick_mode_never_replaces_real_data_reports(tmp_path):
    real = tmp_path / "reports" / "01_mlp"
    real.mkdir(parents=True)
    (real / "metrics.json").write_text(json.dumps({"notebook": "01_mlp", "quick": False, "models": {}}))
    with pytest.raises(SystemExit):
        report.main(["--quick", "--only", "01_mlp", "--reports", str(tmp_path / "reports")])
    assert json.loads((real / "metrics.json").read_text())["quick"] is False


def test_a_misspelt_parameter_is_an_error_not_ignored(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main(["--quick", "--only", "01_mlp", "-p", "epoch", "5", "--reports", str(tmp_path)])
    assert "has a parameter 'epoch'" in capsys.readouterr().err


def test_reports_read_only_committed_sweeps_and_results(tmp_path):
    (tmp_path / "sweep_03").mkdir()
    (tmp_path / "sweep_03" / "summary.csv").write_text("setting,model\n")
    (tmp_path / "01_mlp").mkdir()
    (tmp_path / "01_mlp" / "metrics.json").write_text("{}")
    assert report.committed_inputs("03_regularization", {"sweep_summary", "epochs"}, tmp_path) == {
        "sweep_summary": str((tmp_path / "sweep_03" / "summary.csv").resolve())}
    (tmp_path / "sweep_04_models").mkdir()  # a sweep over models and seeds (04's documented command) is found
    (tmp_path / "sweep_04_models" / "summary.csv").write_text("setting,model\n")
    (tmp_path / "sweep_04_models" / "sweep.json").write_text('{"grid": {"model": ["mlp"], "seed": [0, 1]}, "fixed": {}}')
    assert report.committed_inputs("04_resnet_comparison", {"sweep_summary"}, tmp_path) == {
        "sweep_summary": str((tmp_path / "sweep_04_models" / "summary.csv").resolve())}
    (tmp_path / "sweep_03_budgets").mkdir()  # a sweep over epochs: the budget section's, never the seeds section's
    (tmp_path / "sweep_03_budgets" / "summary.csv").write_text("setting,model\n")
    (tmp_path / "sweep_03_budgets" / "sweep.json").write_text('{"grid": {"epochs": [15, 60]}, "fixed": {}}')
    assert report.committed_inputs("03_regularization", {"sweep_summary", "budget_sweep"}, tmp_path) == {
        "sweep_summary": str((tmp_path / "sweep_03" / "summary.csv").resolve()),
        "budget_sweep": str((tmp_path / "sweep_03_budgets" / "summary.csv").resolve())}
    assert report.committed_inputs("02_cnn", {"mlp_metrics"}, tmp_path) == {
        "mlp_metrics": str((tmp_path / "01_mlp" / "metrics.json").resolve())}
    assert report.committed_inputs("05_reference_recipes", {"sweep_summary"}, tmp_path) == {}  # none shipped
    (tmp_path / "sweep_06_ablation").mkdir()  # 06's leave-one-out sweep, found by its name
    (tmp_path / "sweep_06_ablation" / "summary.csv").write_text("setting,model\n")
    (tmp_path / "sweep_06_ablation" / "sweep.json").write_text('{"grid": {"seed": [0, 1, 2]}, "fixed": {}}')
    assert report.committed_inputs("06_fast_training", {"ablation_sweep"}, tmp_path) == {
        "ablation_sweep": str((tmp_path / "sweep_06_ablation" / "summary.csv").resolve())}


def test_two_reports_of_one_notebook_at_once_keep_each_others_staging(tmp_path, monkeypatch):
    """A second `report --only NAME` started while the first runs must not delete the first one's results."""
    from cifar_lab.kit import notebooks
    reports = tmp_path / "reports"
    reports.mkdir()
    seen = []

    def execute(source, executed, params, log, show=None, env=None):
        results = Path(params["output_dir"])
        results.mkdir()
        (results / "metrics.json").write_text(json.dumps({"pid": report.os.getpid()}))
        executed.write_text(json.dumps(tiny))
        seen.append(results.exists())
        if len(seen) == 1:  # while the first runs, a second process starts the same notebook
            with monkeypatch.context() as other:
                other.setattr(report.os, "getpid", lambda: 99999999)
                report.run_notebook("99_tiny", {}, reports)
        seen.append(results.exists())
        return 0

    import nbformat
    tiny = nbformat.v4.new_notebook()
    monkeypatch.setattr(notebooks, "execute", execute)
    monkeypatch.setattr(notebooks, "declared", lambda source: {})
    monkeypatch.setattr(report, "committed_inputs", lambda *args: {})
    monkeypatch.setattr(notebooks, "source", lambda name: tmp_path / f"{name}.ipynb")
    (tmp_path / "99_tiny.ipynb").write_text(json.dumps(tiny))  # the source whose code cells the report records
    report.run_notebook("99_tiny", {}, reports)
    assert seen == [True, True, True, True]  # the first run's results survived the second's start
    assert json.loads((reports / "99_tiny" / "metrics.json").read_text())["pid"] == report.os.getpid()  # last done
    assert list((reports / ".staging").iterdir()) == []  # nothing left behind


def test_the_index_shows_each_sweep_with_its_budget_under_its_lesson(tmp_path):
    import pandas as pd
    from cifar_lab.kit import sweep
    runs = pd.DataFrame([{"run": f"seed={s}", "seed": s, "model": "fast", "test_acc": acc, "best_val_acc": acc,
                          "train_seconds": 60.0, "quick": False} for s, acc in [(0, 0.90), (1, 0.92)]])
    for name, info in [("sweep_06_longer", {"notebook": "06_fast_training", "grid": {"seed": [0, 1]},
                                            "fixed": {"fast_epochs": 14}}), ("sweep_03", None)]:
        (tmp_path / name).mkdir()
        sweep.summarize(runs).to_csv(tmp_path / name / "summary.csv", index=False)
        if info:
            (tmp_path / name / "sweep.json").write_text(json.dumps(info))
    page = report.write_index(tmp_path, [], []).read_text()
    shown = page.index("<h2>06_fast_training</h2>")
    assert page.index("Sweep: sweep_06_longer: 06_fast_training over seed 0 1, with fast_epochs=14") > shown
    assert "91.00% ± 1.41%" in page  # the mean and std of its two seeds
    assert "did not record their budget: sweep_03" in page  # named, its numbers not shown without their budget
