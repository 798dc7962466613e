"""Grading a class with nbgrader, as docs/teachers.md tells a teacher to: release, collect, autograde, export."""
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses that execute notebooks
pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_data_analysis"


def nbgrader(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def answered(release: dict, source: dict, right: set) -> dict:
    """The released notebook with exercise N's cell from the teacher's copy (its solution) for N in `right`,
    and a wrong answer (-1) for every other exercise."""
    nb = json.loads(json.dumps(release))
    solved = {c["metadata"]["nbgrader"]["grade_id"]: c for c in source["cells"]
              if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            n = int(re.fullmatch(r"exercise_(\d+)", grade_id).group(1))
            text = "".join(solved[grade_id]["source"]) if n in right else \
                "".join(cell["source"]).replace(f"answer_{n} = None", f"answer_{n} = -1", 1)
            cell["source"] = re.sub(r"### (BEGIN|END) SOLUTION\n", "", text)
    return nb


def test_the_shipped_notebooks_are_what_nbgrader_makes_of_the_teachers_copies():
    done = subprocess.run([sys.executable, "-m", "cifar_lab", "release", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in done.stdout


def test_a_class_is_graded_with_nbgraders_commands_right_partly_right_and_blank(tmp_path):
    course = tmp_path / "course"  # a teacher's course folder: the config and one lesson's teacher's copy
    course.mkdir()
    shutil.copy(ROOT / "teacher" / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "teacher" / "source" / LESSON, course / "source" / LESSON)
    nbgrader("generate_assignment", LESSON, cwd=course)
    release = json.loads((course / "release" / LESSON / f"{LESSON}.ipynb").read_text())
    source = json.loads((course / "source" / LESSON / f"{LESSON}.ipynb").read_text())
    assert "BEGIN SOLUTION" not in json.dumps(release) and "run.check(1, answer_1) ==" not in json.dumps(release)
    exercises = sum(bool(c["metadata"].get("nbgrader", {}).get("grade")) for c in release["cells"])
    assert exercises >= 5

    downloads = course / "downloaded" / LESSON / "archive"  # as a learning platform hands them out
    downloads.mkdir(parents=True)
    submissions = {"alice": answered(release, source, right=set(range(1, exercises + 1))),
                   "bob": answered(release, source, right={1}), "carol": release}
    for student, nb in submissions.items():
        (downloads / f"{student}_{LESSON}.ipynb").write_text(json.dumps(nb))
    nbgrader("zip_collect", LESSON, cwd=course)
    nbgrader("autograde", LESSON, cwd=course)
    nbgrader("export", cwd=course)

    grades = {row["student_id"]: row for row in csv.DictReader((course / "grades.csv").open())}
    assert {s: float(g["score"]) for s, g in grades.items()} == {"alice": exercises, "bob": 1.0, "carol": 0.0}
    assert all(float(g["max_score"]) == exercises for g in grades.values())
