"""`cifar-lab release`: the students' notebooks in notebooks/, made by nbgrader from the teacher's copies.

    cifar-lab release            # teacher/source/NN_*/NN_*.ipynb -> notebooks/NN_*.ipynb (solutions and tests out)
    cifar-lab release --check    # says whether notebooks/ is what the teacher's copies give (CI runs it)

The teacher's copy of a lesson (teacher/source/NN_name/NN_name.ipynb, nbgrader's "source") holds each
exercise's worked solution between `### BEGIN SOLUTION` and `### END SOLUTION`, and after it a graded cell
whose hidden test asserts that the exercise's check says "right". `nbgrader generate_assignment` removes
both; what it writes is copied to notebooks/, so every lesson is edited in one place, its teacher's copy.
Grading a class uses nbgrader's own commands in teacher/ (docs/teachers.md).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .notebooks import NOTEBOOKS, ROOT

TEACHER = ROOT / "teacher"
SOURCE = TEACHER / "source"


def lessons() -> list[str]:
    """The lessons that have a teacher's copy ('00_data_analysis', ...)."""
    return sorted(p.parent.name for p in SOURCE.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))


def generate(folder: Path) -> dict[str, Path]:
    """nbgrader's student version of every lesson, made in a scratch course `folder`: {lesson: notebook}."""
    shutil.copy(TEACHER / "nbgrader_config.py", folder)
    shutil.copytree(SOURCE, folder / "source")
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "*", "--force"], cwd=folder,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return {name: folder / "release" / name / f"{name}.ipynb" for name in lessons()}


def _cells(path: Path) -> list:
    """A notebook's cells, the part that matters (nbgrader and json.dump may differ in indentation)."""
    return json.loads(path.read_text())["cells"]


def release(check: bool = False) -> list[str]:
    """Write (or, with `check`, compare) notebooks/NN_*.ipynb from the teacher's copies; returns those that differ."""
    with tempfile.TemporaryDirectory() as scratch:
        made = generate(Path(scratch))
        differ = [name for name, path in made.items()
                  if not (NOTEBOOKS / path.name).exists() or _cells(path) != _cells(NOTEBOOKS / path.name)]
        if not check:
            for name in differ:
                shutil.copy(made[name], NOTEBOOKS / made[name].name)
    return differ


def main(argv: list[str] | None = None) -> int:
    """`cifar-lab release [--check]`."""
    import importlib.util

    parser = argparse.ArgumentParser(prog="cifar-lab release", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if notebooks/ is out of date")
    args = parser.parse_args(argv)
    if not lessons():
        parser.error(f"no teacher's copies in {SOURCE}: run this in a clone of the repository")
    if importlib.util.find_spec("nbgrader") is None:
        parser.error("nbgrader is not installed: pip install 'nbgrader>=0.9.6,<0.10'")
    differ = release(check=args.check)
    if args.check:
        print(f"out of date: {', '.join(differ)}; run `cifar-lab release`" if differ else
              f"notebooks/ is up to date with teacher/source ({len(lessons())} lessons)")
        return 1 if differ else 0
    print(f"wrote notebooks/{', notebooks/'.join(n + '.ipynb' for n in differ)}" if differ else
          "notebooks/ already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
