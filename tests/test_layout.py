"""The package's shape: a thin core a student reads in an afternoon, the kit's machinery apart from it."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cifar_lab"
CORE = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py")  # __main__ is the commands' entry


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, top-level or inside a function, as an absolute dotted name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "cifar_lab" if node.level == 1 else node.module or ""
            base = f"{base}.{node.module}" if node.level == 1 and node.module else base
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def test_the_core_never_imports_the_kit():
    offenders = {p.name: sorted(n for n in imported_modules(p) if n.startswith("cifar_lab.kit"))
                 for p in CORE}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_import_walk_sees_a_lazy_import_of_the_kit(tmp_path):
    """The check above can fail: an import inside a function counts."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from .kit import course\n")
    assert "cifar_lab.kit.course" in imported_modules(module)


def test_the_core_stays_thin():
    lines = {p.name: len(p.read_text().splitlines()) for p in CORE}
    assert sum(lines.values()) <= 3000, lines
    assert max(lines.values()) <= 350, lines


@pytest.mark.slow
def test_import_cifar_lab_loads_no_kit_scikit_learn_papermill_or_pandas():
    code = "import sys, cifar_lab; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout.split())
    assert "cifar_lab.training" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("sklearn", "papermill", "pandas", "nbformat")
                or m.startswith("cifar_lab.kit")}


def test_nothing_points_outside_the_repository():
    """Whoever clones the kit has only the repository: no path into the team's shared folder."""
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    texts = [f for f in tracked if f.endswith((".py", ".ipynb", ".md", ".toml", ".txt", ".yml"))
             and not f.startswith("reports/") and (ROOT / f).exists()]
    outside = "/".join(("shared", "notes"))  # spelt in parts, so that this file does not point there itself
    hits = [f for f in texts if outside in (ROOT / f).read_text(errors="replace")]
    assert not hits


def test_one_version_number_and_one_python_floor():
    import cifar_lab
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "cifar_lab.__version__"}' in pyproject
    assert cifar_lab.__version__.count(".") == 2
    floor = pyproject.split('requires-python = ">=')[1].split('"')[0]
    assert f"Python {floor}+" in (ROOT / "README.md").read_text()


def test_the_readmes_results_table_is_generated_from_the_committed_reports():
    """No number in the README is typed by hand: `cifar-lab report --readme` writes the table, and it is current."""
    from cifar_lab.kit import results
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(results.START):readme.index(results.END) + len(results.END)]
    assert block == results.table(ROOT / "reports")
    assert "85.65%" not in results.table(ROOT / "tests")  # the table comes from the folder it is given


def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    return [line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_runs_as_written(command):
    """The cheap ones run; the long ones are asked for --help, or checked against what they name."""
    for part in [p.strip("() ") for p in command.split("&&")]:
        words = part.split()
        if words[0] == "cifar-lab":  # the subcommand exists and takes every flag the README gives it
            done = subprocess.run([sys.executable, "-m", "cifar_lab", words[1], "--help"], capture_output=True,
                                  text=True, cwd=ROOT)
            assert done.returncode == 0, done.stderr
            assert all(w in done.stdout for w in words[2:] if w.startswith("--")), part
        elif words[0] == "papermill":
            import papermill
            declared = papermill.inspect_notebook(str(ROOT / "notebooks" / words[1]))
            assert all(name in declared for name in words[words.index("-p") + 1::3]), part
        elif words[0] == "pytest":
            done = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=ROOT)
            assert all(w in done.stdout for w in words[1:] if w.startswith("--")), part
        elif words[0] == "nbgrader":  # nbgrader's own command, with the lesson the README names
            done = subprocess.run([sys.executable, "-m", "nbgrader", words[1], "--help"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert all((ROOT / "teacher" / "source" / w).is_dir() for w in words[2:]), part
        elif words[:2] == ["pip", "install"]:
            assert (ROOT / words[-1]).exists(), part
        elif words[0] != "cd":
            raise AssertionError(f"the README runs {part!r}, which this test does not know how to check")


def test_the_readmes_python_example_names_only_what_cifar_lab_exports():
    import cifar_lab
    text = (ROOT / "README.md").read_text()
    example = text.split("```python\n")[1].split("```")[0]
    names = example.split("from cifar_lab import ")[1].split("\n")[0].split(", ")
    assert all(hasattr(cifar_lab, n) for n in names)


def test_the_reference_reports_table_is_generated_from_the_committed_reruns():
    from cifar_lab.kit import results
    docs = (ROOT / "docs" / "reference_reports.md").read_text()
    block = docs[docs.index(results.REPRO_START):docs.index(results.REPRO_END) + len(results.REPRO_END)]
    assert block == results.reproductions_table(ROOT / "reports")


def test_a_reproduction_is_judged_by_what_the_copy_and_seed_noise_explain():
    from cifar_lab.kit.reference import REFERENCE, TOLERANCE, reported_accuracy, verdict
    assert reported_accuracy(REFERENCE["002"]) == 81.0 and reported_accuracy(REFERENCE["004a"]) == 75.36
    assert verdict(81.0, 81.0 - TOLERANCE + 0.01) == "reproduced"
    assert verdict(81.0, 78.29) == "below" and verdict(56.54, 60.0) == "above"


def test_the_results_page_shows_every_committed_rerun_with_its_verdict():
    from cifar_lab.kit import report
    from cifar_lab.kit.reference import REFERENCE
    page = report._reproductions_section(ROOT / "reports")
    reruns = [n for n in REFERENCE if (ROOT / "reports" / "recipes" / n / "metrics.json").exists()]
    for name in reruns:
        assert f"<td>{name}</td>" in page
    assert page.count("<tr>") == 1 + len(reruns)


def test_a_random_init_rerun_of_a_pretrained_recipe_is_not_judged_against_its_report(tmp_path):
    import json
    from cifar_lab.kit.reference import reproductions
    folder = tmp_path / "recipes" / "003_resnet18"
    folder.mkdir(parents=True)
    model = {"test_acc": 0.7, "epochs": 10, "train_seconds": 3600.0, "history": {"info": {"precision": "bf16"}}}
    (folder / "metrics.json").write_text(json.dumps({"notebook": "train", "quick": False, "params": {"pretrained": False},
                                                      "models": {"resnet18_003": model}, "environment": {}}))
    (row,) = reproductions(tmp_path)
    assert row["verdict"].startswith("not comparable: random initial weights") and row["reproduced"] == "70.00%"


def test_the_ddp_docs_say_what_torchrun_needs_of_nproc_per_node():
    """torchrun's own traceback for --nproc_per_node=0 or abc is outside the kit: the docs say it in a line."""
    assert "`torchrun --nproc_per_node` needs a positive integer" in (ROOT / "docs" / "devices.md").read_text()


def test_a_run_of_a_fraction_of_a_recipes_epochs_gets_its_projected_cost_not_a_verdict(tmp_path):
    """004b's 60 epochs cost tens of hours here: a committed 3-epoch run says how long the whole would take."""
    from cifar_lab.kit.reference import reproductions
    (tmp_path / "recipes" / "004b").mkdir(parents=True)
    model = {"test_acc": 0.70, "epochs": 3, "train_seconds": 3 * 3600,
             "history": {"info": {"status": "completed", "precision": "bf16"}}}
    (tmp_path / "recipes" / "004b" / "metrics.json").write_text(json.dumps(
        {"models": {"cnn004b": model}, "environment": {"cpu": "AMD EPYC"}}))
    [row] = reproductions(tmp_path)
    assert row["verdict"] == "partial: 3 of 60 epochs, no verdict; the whole run would take about 60.0 h on this CPU"
    assert row["epochs"] == "3 of 60" and row["likeliest reason"] == ""


def test_a_seed_sweep_of_a_reference_recipe_stands_beside_the_reports_own_spread(tmp_path):
    """004a's ten seeds at a budget this CPU affords, beside report 004's 75.91 ± 0.34% at its full budget."""
    import pandas as pd
    from cifar_lab.kit import sweep
    from cifar_lab.kit.reference import seed_spreads
    folder = tmp_path / "sweep_05_004a"
    folder.mkdir()
    runs = pd.DataFrame([{"run": f"seed={s}", "seed": s, "model": "004a", "test_acc": 0.50 + s / 100,
                          "best_val_acc": 0.5, "train_seconds": 1.0, "quick": False} for s in range(10)])
    sweep.summarize(runs).to_csv(folder / "summary.csv", index=False)
    (folder / sweep.SWEEP_INFO).write_text(json.dumps(
        {"grid": {"seed": list(range(10))}, "fixed": {"model": "004a", "epochs": 1, "train_size": 10000}}))
    [row] = seed_spreads(tmp_path, tmp_path / "no_runs_here")
    assert row["recipe"] == "004a" and row["seeds"] == 10 and row["epochs"] == "1 of 4"
    assert row["training images"] == "10,000" and row["test accuracy here"] == "54.50% ± 3.03%"
    assert row["report's spread (its full budget)"] == "75.91% ± 0.34% over 10 seeds"
