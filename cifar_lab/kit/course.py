"""The plumbing every notebook shares: its parameters checked, quick mode, its own output folder, the
data, and its results saved as it goes.

A notebook's first code cell is `run = course.start("02_cnn", globals(), recipe="cnn")`: the
parameters cell's values (and papermill's) are read from the notebook's globals and checked against
`ALL` below, so a misspelt name stops the notebook at once.
"""
from __future__ import annotations

import atexit
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import runs
from .notebooks import RESULTS_AS, ROOT, declared, shown_path, source
from ..data import CIFAR10Data, load_cifar10
from .. import plots
from ..devices import get_device, set_seed
from ..evaluate import EvalResult
from .fake import make_fake_cifar10
from ..files import environment_info, save_json
from ..history import History
from ..models import count_parameters, flops_per_image
from ..options import DATA, MODEL, TRAINING, Option, check, default, defaults, did_you_mean
from ..recipes import get_recipe, training_options

QUICK_ENV = "CIFAR_LAB_QUICK"  # "1": every notebook runs in quick mode (CI, the browser test)
QUICK_EPOCHS = 1
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

NOTEBOOK = {  # what a notebook or command needs around training (the data options are options.DATA)
    "quick": Option(False, "tiny synthetic data and 1 epoch: only checks that everything runs", bool),
    "output_dir": Option(None, "results folder, new or empty (None: a new dated folder)", str, optional=True),
    "tta": Option(None, "average test predictions with mirrored images (None: on for conv nets)", bool,
                  optional=True),
    "seeds": Option(3, "seeds of a multi-seed comparison (mean +- std)", int, low=1, high=100),
    "images_seen": Option(20_000, "training images each recipe sees (one pass over that many; more than its "
                          "split: whole epochs), the same for every recipe", int, low=100, high=10_000_000),
    "settings": Option("all", "notebook 03's settings to train, comma-separated (all: every one; none always runs)",
                       str),
    "reruns": Option("all", "comma-separated recipe names (all: every reference recipe)",
                      str),
    "models": Option("auto", "comma-separated model names (auto: what this device can train in time)", str),
    "resnet18_metrics": Option(None, "a committed ResNet-18 run's metrics.json for notebook 04 (None: "
                               "reports/recipes/resnet18/)", str, optional=True),
    "mlp_metrics": Option(None, "notebook 01's metrics.json for the side-by-side (None: its newest run)", str,
                          optional=True),
    "budget_sweep": Option(None, "notebook 03's sweep over epochs, its summary.csv (None: the newest under runs/, "
                           "else reports/)", str, optional=True),
    "sweep_summary": Option(None, "a sweep's summary.csv (None: the newest under runs/, else reports/)", str,
                            optional=True),
    "fast_epochs": Option(3.0, "epochs of the fast recipe's main run (10: the full recipe)", float, low=0.0,
                          high=100.0, open_low=True),
    "depth_epochs": Option(5, "epochs of each plain and residual net of notebook 04's depth experiment (0: skip it)",
                           int, low=0, high=200),
    "ablation": Option(True, "measure what each method of the fast recipe adds: the full recipe, then each method "
                       "left out, one short run each", bool),
    "ablation_epochs": Option(2.0, "epochs of each ablation run", float, low=0.0, high=100.0, open_low=True),
    "ablation_size": Option(5_000, "training images of each ablation run (None: all)", int, low=100,
                            optional=True),
    "ablation_batch_size": Option(256, "images per step of each ablation run", int, low=2),
    "ablation_seeds": Option(1, "seeds of each ablation row (mean ± std over them)", int, low=1, high=20),
    "ablation_sweep": Option(None, "notebook 06's committed leave-one-out sweep, its summary.csv (None: the newest "
                             "sweep_06_ablation* under runs/, else reports/)", str, optional=True),
    "target": Option(0.8, "validation accuracy the time-to-accuracy table asks for", float, low=0.0, high=1.0,
                     open_low=True),
}
RUN = {**DATA, **NOTEBOOK}  # every option of a run around `fit`
ALL = {**TRAINING, **MODEL, **RUN}



def quick_mode(quick: bool = False) -> bool:
    """True if asked for, or if $CIFAR_LAB_QUICK is 1/true/yes/on; another value there is an error."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"${QUICK_ENV} must be one of {', '.join(repr(v) for v in _TRUE + _FALSE[1:])}, "
                         f"got {value!r}")
    return bool(quick) or value in _TRUE


def notebook_parameters(namespace: dict[str, Any], notebook: str | None = None) -> dict[str, Any]:
    """The parameters among a notebook's globals: those its parameters cell declares, plus papermill's.

    A name papermill injected that the notebook does not declare (`-p epoch 5`) is a ValueError naming the
    closest one. Without the notebook's source, every public name bound to a number, text, bool or None.
    """
    if "__name__" not in namespace:  # already a dict of parameters
        return dict(namespace)
    scalars = {k: v for k, v in namespace.items()
               if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))}
    declared = _declared(notebook)
    if declared is None:
        return scalars
    unknown = sorted(_injected(namespace) - set(declared))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}{did_you_mean(unknown[0], declared)}: {notebook} has no such parameter; its "
                         f"parameters: {', '.join(declared)}")
    return {k: scalars[k] for k in declared if k in scalars}


def _declared(notebook: str | None) -> list[str] | None:
    """The names a course notebook's parameters cell declares, or None when it is not one of the course's."""
    try:
        return list(declared(source(notebook))) if notebook else None
    except (ValueError, ImportError):  # not a course notebook, or papermill is not installed
        return None


def _injected(namespace: dict[str, Any]) -> set[str]:
    """Names assigned in the cell papermill injects ("# Parameters"), read from IPython's input history."""
    import ast
    names = set()
    for source in namespace.get("In", []):
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            names |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                      if isinstance(t, ast.Name)}
    return names


@dataclass
class Run:
    """One notebook (or command) run: checked parameters, data, its own output folder, metrics so far."""

    notebook: str
    params: dict
    data: CIFAR10Data
    output_dir: Path
    quick: bool
    device: str
    training: dict = field(default_factory=dict)  # every option `fit` gets, for `fit(model, data, **run.training)`
    metrics: dict = field(default_factory=dict)  # per trained model
    extra: dict = field(default_factory=dict)  # anything else worth keeping (saved at the top level)
    namespace: dict = field(default_factory=dict, repr=False)  # the notebook's globals, for the answer key

    def check(self, number: int, answer: Any) -> str:
        """This notebook's exercise `number`: right, not answered yet, or a hint (the key: kit/answers.py)."""
        from .answers import check_answer
        return check_answer(self.notebook, number, answer, self.namespace)

    def passed(self, number: int, answer: Any) -> bool:
        """Whether exercise `number`'s check says right (the graders' hidden tests assert it)."""
        from .answers import passed
        return passed(self.notebook, number, answer, self.namespace)

    @property
    def shown_dir(self) -> str:
        """The results folder as a reader should see it: where a report puts it, else relative to the checkout."""
        if os.environ.get(RESULTS_AS):
            return os.environ[RESULTS_AS]
        return str(shown_path(Path(self.output_dir).resolve()))

    @property
    def banner(self) -> str:
        where = f"results in {self.shown_dir}"
        if not self.quick:
            return f"{self.notebook}: {self.data.describe()}; device {self.device}; {where}"
        bar = "!" * 78
        used = ", ".join(f"{k}={v}" for k, v in self.params.items() if k in ("epochs", "seeds", "train_size"))
        why = "quick=True" if self.params.get("quick") else f"${QUICK_ENV} is set"
        return (f"{bar}\n!!  QUICK MODE ({why}): {self.data.describe()}\n"
                f"!!  run with {used or 'epochs=1'}. The numbers below only show that the code runs;\n"
                f"!!  they say nothing about CIFAR-10. For real results: quick=False and ${QUICK_ENV} unset.\n"
                f"!!  {where}\n{bar}")

    def parameters_table(self, options: dict | None = None) -> "pd.io.formats.style.Styler":
        """A table of `options` (default: the run's parameters with its data, device and folder) to display."""
        import pandas as pd
        if options is None:  # unset paths mean "find the newest": rows of None would only pad the table
            given = {k: shown_path(v) for k, v in self.params.items() if k != "output_dir" and
                     not (v is None and (k.endswith(("_dir", "_metrics", "_summary", "_sweep"))))}
            options = {**given, "data": self.data.describe(), "device": self.device, "output folder": self.shown_dir}
        table = pd.DataFrame({"value": [_shown(v) for v in options.values()]},
                             index=pd.Index(list(options), name="parameter"))
        return table.style  # a DataFrame would cut the data row at pandas' 50 characters

    def data_for(self, recipe: str, train_size: int | None = None) -> CIFAR10Data:
        """The data as a recipe wants it (its validation size and normalisation), in this run's mode."""
        options = {**self.params, **check(get_recipe(recipe).data, ALL), "train_size": train_size}
        return _load(options, self.quick, self.params.get("seed", 0))

    def path(self, name: str) -> Path:
        """A file in this run's output folder (for figures: `run.path('curves.png')`)."""
        return self.output_dir / name

    def record(self, name: str, model: nn.Module, history: History | None, result: EvalResult,
               **extra: Any) -> dict:
        """Store one trained model's numbers and write metrics.json at once, so nothing is lost."""
        seconds = sum(history.seconds) if history else 0.0
        images = extra.get("train_images") or len(self.data.train_labels)  # a recipe's own split, where given
        images = images * len(history) if history else 0
        self.metrics[name] = {
            "test_acc": result.accuracy, "test_loss": result.loss, "parameters": count_parameters(model),
            "flops_per_image": flops_per_image(model), "epochs": len(history) if history else 0,
            "train_seconds": seconds, "images_per_second": images / seconds if seconds else None,
            "best_val_acc": max(history.val_acc) if history else None,
            "per_class_accuracy": result.per_class_accuracy(),
            "most_confused": [list(p) for p in result.most_confused()],
            "history": history.to_dict() if history else None, **extra}
        self.save()
        return self.metrics[name]

    def save(self) -> Path:
        """Write metrics.json: every model's numbers plus parameters, data, device and versions."""
        params = {k: shown_path(v) for k, v in self.params.items()}  # no folders of this machine in a report
        if params.get("output_dir"):
            params["output_dir"] = self.shown_dir  # where a report puts the results, not its staging folder
        return save_json({"notebook": self.notebook, "quick": self.quick, "params": params,
                          "data": self.data.describe(), "device": self.device, "environment": environment_info(),
                          "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"), **self.extra, "models": self.metrics},
                         self.path("metrics.json"))


def start(notebook: str, namespace: dict[str, Any], recipe: str | None = None, *, resume: bool = False,
          claim: bool = True) -> Run:
    """Check a notebook's parameters, take a fresh output folder, seed, pick the device, load the data."""
    params = check(notebook_parameters(namespace, notebook), ALL)
    _check_paths(params)
    if recipe:  # the recipe's data options (validation size, normalisation) unless given
        params = {**check(get_recipe(recipe).data, ALL), **params}
    quick = quick_mode(params.get("quick", False))
    if quick:
        params["epochs"] = min(params.get("epochs", QUICK_EPOCHS), QUICK_EPOCHS)
        for name in ("fast_epochs", "ablation_epochs", "depth_epochs"):  # notebook 06's and 04's
            if name in params:
                params[name] = min(params[name], QUICK_EPOCHS)
        if "__name__" in namespace:  # a notebook's globals: its variables are the values it runs with
            namespace.update({k: params[k] for k in ("epochs", "fast_epochs", "ablation_epochs", "depth_epochs")
                              if k in namespace})
    training = training_options(get_recipe(recipe), **_training(params)) if recipe else \
        {**defaults(TRAINING), **_training(params)}
    output_dir = _output_folder(notebook, params, quick, training, resume) if claim else None
    seed = params.get("seed", default("seed"))
    try:
        data = _load(params, quick, seed)
    except BaseException as e:  # the folder's record says so, and the folder stays free for the corrected run
        if output_dir is not None:
            runs.finish(output_dir, f"failed before training: {e}")
        raise
    set_seed(seed)
    if output_dir is not None:
        plots.save_figures_to(output_dir)  # every figure of the notebook lands in its run folder
        if not notebook.startswith("train_"):  # the commands record their own end
            _record_the_end(output_dir)
    return Run(notebook, params, data, output_dir, quick, str(get_device()), training, namespace=namespace)


def _check_paths(params: dict) -> None:
    """A results file named explicitly must exist (None means: find the newest)."""
    for name in ("mlp_metrics", "sweep_summary", "budget_sweep", "ablation_sweep", "resnet18_metrics"):
        if params.get(name) is not None and not Path(params[name]).exists():
            raise ValueError(f"{name}: there is no file {params[name]!r}; give an existing one, or None to use "
                             f"the newest run's")


def _training(params: dict) -> dict:
    return {k: v for k, v in params.items() if k in TRAINING}


_ENDS: list = []  # the (post_run_cell, atexit) pair of this kernel's current run


def _record_the_end(folder: Path) -> None:
    """run.json says how a notebook's run ended, however it was run (papermill, nbconvert, Run All, by hand).

    A cell that raises records "failed: ..." (or "interrupted"); when the kernel shuts down after a last cell
    that ran cleanly, with the results saved, the run is "finished".
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    if _ENDS:  # the start cell run again: only the newest run folder follows the notebook from now on
        shell.events.unregister("post_run_cell", _ENDS[0][0])
        atexit.unregister(_ENDS[0][1])
        _ENDS.clear()
    last = {"ok": True}

    def after_cell(result) -> None:
        error = result.error_in_exec
        last["ok"] = error is None
        if error is not None and folder.exists():
            runs.finish(folder, "interrupted" if isinstance(error, KeyboardInterrupt) else
                        f"failed: {type(error).__name__}: {error}")

    def at_exit() -> None:
        if last["ok"] and folder.exists():
            runs.finish(folder, "finished" if (folder / "metrics.json").exists() else
                        "ended before its results were saved")

    shell.events.register("post_run_cell", after_cell)
    atexit.register(at_exit)
    _ENDS.append((after_cell, at_exit))


def _output_folder(notebook: str, params: dict, quick: bool, training: dict, resume: bool) -> Path:
    """The run's own folder: output_dir if given (new or empty), else a new dated one; claimed atomically."""
    kind = "train" if notebook.startswith("train_") else "notebook"
    folder = params.get("output_dir")
    if folder is None:
        parent = Path("runs") if kind == "train" else Path("outputs") / ("quick" if quick else "") / notebook
        folder = runs.new_folder(parent, notebook.removeprefix("train_") if kind == "train" else "run")
    record = {**params, **training, "quick": quick}
    record.pop("output_dir", None)
    return runs.claim(folder, record, kind, resume=resume, hold=kind == "train")


def _load(params: dict, quick: bool, seed: int) -> CIFAR10Data:
    """CIFAR-10 (or, in quick mode, a tiny synthetic set), split and optionally cut to train_size."""
    if quick:
        root = Path(tempfile.gettempdir()) / f"cifar_lab_quick_{seed}_200"
        make_fake_cifar10(root, train_per_batch=40, test_size=100, seed=seed)  # 200 images: seconds per notebook
        data = load_cifar10(root, val_size=50, seed=seed, download=False)
    else:
        data = load_cifar10(params.get("data_dir"), val_size=params.get("val_size", default("val_size")), seed=seed)
    train_size = params.get("train_size")
    data = data.subset(min(train_size, len(data.train_labels))) if train_size else data
    if params.get("normalization") == "half":  # as transforms.Normalize((0.5,) * 3, (0.5,) * 3)
        data = data.normalized(0.5, 0.5)
    return data


def newest_results(notebook: str, quick: bool = False, root: str | Path = ".") -> Path | None:
    """metrics.json of the newest run of a notebook under ROOT/outputs (quick runs apart), or None."""
    parent = Path(root) / "outputs" / ("quick" if quick else "") / notebook
    found = sorted(parent.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _shown(value: Any) -> str:
    """A parameter's value as a reader wants it: 45,000 not 45000, 0.001 not 0.0010000000475."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def choose(names: str, known, what: str) -> list[str]:
    """A comma-separated choice ("all": every known name) as a list, checked: an unknown name is one sentence."""
    known = list(known)
    chosen = known if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    for name in chosen:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
    if not chosen:
        raise ValueError(f"no {what} named in {names!r}: give at least one, e.g. {known[0]!r}")
    twice = [name for i, name in enumerate(chosen) if name in chosen[:i]]
    if twice:
        raise ValueError(f"{what} {twice[0]!r} is listed twice in {names!r}: each runs once")
    return chosen
