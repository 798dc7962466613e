"""Running the course's notebooks from commands (report, sweep), and reading back what a run wrote."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from ..files import load_json

ROOT = Path(__file__).resolve().parents[2]  # the checkout (cifar_lab/kit/notebooks.py is two below it)
NOTEBOOKS = ROOT / "notebooks"
PROGRESS = re.compile(r"^(Training |epoch +\d+/\d+ +train loss|test accuracy|early stopped|training interrupted"
                      r"|\w*Error\b)"
                      r"|: train acc .*test acc")  # fit's lines, and a notebook's one line per training
RESULTS_AS = "CIFAR_LAB_RESULTS_AS"  # set by the report: where a run's results end up, for its banner


def shown_path(value: Any) -> Any:
    """A path inside the checkout as relative to it (a report never shows this machine's folders), else the value."""
    if not (isinstance(value, (str, Path)) and os.path.isabs(value)):
        return value
    path = Path(value).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else value


def names() -> list[str]:
    """The course's notebooks, in order ('00_data_analysis', ...)."""
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def source(name: str) -> Path:
    """notebooks/NAME.ipynb, or a ValueError listing the notebooks."""
    path = NOTEBOOKS / f"{Path(name).stem}.ipynb"
    if not path.exists():
        raise ValueError(f"no notebook {name!r}; valid: {', '.join(names())}")
    return path


def declared(notebook: Path) -> dict:
    """The parameters a notebook declares in its parameters cell, with their defaults."""
    import papermill as pm
    return {k: v["default"] for k, v in pm.inspect_notebook(str(notebook)).items()}


def parse_value(text: str):
    """A -p value typed as papermill's CLI types it: int, float, bool, None, else str.

    Digits with a leading zero ('002', a recipe's name) stay text.
    """
    if len(text) > 1 and text.startswith("0") and text.isdigit():
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def execute(notebook: Path, executed: Path, params: dict, log: Path,
            show: Callable[[str], None] | None = None, env: dict | None = None) -> int:
    """Run a notebook with papermill in a child process; every output line goes to `log`, progress to `show`.

    Returns papermill's exit code (0: every cell ran).
    """
    unknown = sorted(set(params) - set(declared(notebook)))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(sorted(declared(notebook)))}")
    args = [sys.executable, "-m", "papermill", str(notebook), str(executed), "--cwd", str(notebook.parent),
            "-k", "python3", "--no-progress-bar", "--log-output"]
    for k, v in params.items():
        args += ["-p", k, str(v)]
    with open(log, "w") as out, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 env=_child_env(env), **die_with_parent()) as child:
        for line in child.stdout:
            out.write(line)
            text = line.split(" - ", 2)[-1].strip() if " - " in line else line.strip()  # papermill's log prefix
            if show is not None and PROGRESS.search(text):
                show(text)
    _record_end(params.get("output_dir"), child.returncode)
    return child.returncode


def _record_end(output_dir: str | None, code: int) -> None:
    """A notebook cannot tell its run record (run.json) that it ended; the process that ran it does."""
    from . import runs

    if output_dir and (runs.read(output_dir) or {}).get("status") == "running":
        runs.finish(output_dir, "finished" if code == 0 else f"failed: papermill exit code {code}")


def _child_env(env: dict | None) -> dict:
    import os
    # the kernel draws figures into the notebook (inline), whatever backend the calling process uses
    return {**(env or os.environ), "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore"}


def die_with_parent() -> dict:
    """On Linux, a child ends when the command that started it dies (no orphan keeps training)."""
    if not sys.platform.startswith("linux"):
        return {}

    def set_death_signal() -> None:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    return {"preexec_fn": set_death_signal}


def read_metrics(path: str | Path) -> dict:
    """A run's metrics.json, with a plain error when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: run that notebook or command first")
    return load_json(path)
