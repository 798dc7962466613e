"""Many runs as one command: a grid of parameters (seeds, learning rates...) run several at a time,
each in its own folder, then one table of mean +- std over seeds and a chart.

    cifar-lab sweep --grid seed 0 1 2 3 4 --grid lr 0.02 0.05 -p model cnn -p epochs 5
    cifar-lab sweep --notebook 03_regularization --grid seed 0 1 2 -p epochs 4 -p seeds 1 \\
        --output-dir runs/sweep_03

Without --notebook each run is `cifar-lab train` with the run's parameters; with it, papermill
runs notebooks/NAME.ipynb with them (`-p name value`, typed as papermill types them). Runs go to
OUTPUT_DIR/<name>/ (name from the grid values) with their log; a run that fails is reported by name and
the others go on; running the command again skips finished runs and resumes interrupted training runs
(an interrupted notebook run starts afresh, its unfinished attempt kept beside it as NAME.unfinished-N).
OUTPUT_DIR/summary.csv (mean, std and count over seeds, per setting and model), runs.csv and summary.png
collect the results; notebooks 03 and 04 show such a summary.
"""
from __future__ import annotations

import argparse
import json
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import notebooks, runs
from ..files import check_output_dir
from ..files import load_json, save_json
from .notebooks import parse_value

METRICS = ("test_acc", "best_val_acc", "train_seconds")  # averaged over seeds in the summary
SWEEP_RECORD = "sweep_run.json"  # the sweep's record of one run (the run's own is run.json)
SWEEP_INFO = "sweep.json"  # the sweep's grid and fixed parameters, beside its summary


def expand_grid(grid: dict[str, list], fixed: dict[str, object]) -> list[dict]:
    """Every combination of the grid's values, each with the fixed parameters, in a stable order."""
    names = list(grid)
    return [{**fixed, **dict(zip(names, values))} for values in itertools.product(*(grid[n] for n in names))]


def run_name(params: dict, grid: dict[str, list]) -> str:
    """A folder name from the grid values of one run, such as 'lr=0.05,seed=2'."""
    text = ",".join(f"{k}={params[k]}" for k in grid) or "run"
    return re.sub(r"[^A-Za-z0-9=,._+-]", "_", text)


def jobs_for(device_type: str, gpus: int, cores: int, memory_gib: float,
             gib_per_run: float = 2.0,  # memory of one run (a CNN run peaks at 1.4 GiB on the CPU)
             ) -> int:
    """Runs at a time where the best device is `device_type`: one per GPU, else one per core as memory allows."""
    if device_type == "cuda":
        return max(1, gpus)
    if device_type == "mps":
        return 1  # a Mac's one GPU: runs side by side would only share it
    return max(1, min(cores, int(memory_gib // gib_per_run)))


def default_jobs(gib_per_run: float = 2.0) -> int:
    """`jobs_for` this machine."""
    import torch

    from ..devices import get_device
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):  # not Linux/macOS
        memory = gib_per_run
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return jobs_for(get_device().type, gpus, os.cpu_count() or 1, memory, gib_per_run)


def gpu_slots(visible: str | None, gpus: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each GPU slot: the inherited choice kept ("2,3" gives "2" and "3")."""
    inherited = [v.strip() for v in (visible or "").split(",") if v.strip()]
    return (inherited or [str(i) for i in range(gpus)])[:gpus]  # torch sees only the first `gpus` of them


def command(params: dict, run_dir: Path) -> list[str]:
    """The command line of one training run; an unfinished run in `run_dir` is resumed."""
    args = [sys.executable, "-m", "cifar_lab.kit.train", "--output-dir", str(run_dir)]
    for k, v in params.items():
        args += [f"--{k}" if v else f"--no-{k}"] if isinstance(v, bool) else [f"--{k}", str(v)]
    record = runs.read(run_dir)
    if record is not None and record.get("status") != "finished":
        args.append("--resume")  # an interrupted run continues where it stopped
    return args


def check_names(params: dict, notebook: Path | None) -> None:
    """Refuse parameter names the target does not have, before anything runs."""
    if notebook is not None:
        known = set(notebooks.declared(notebook))
    else:
        from .train import parser
        known = set(vars(parser().parse_args([]))) - {"output_dir", "resume"}  # every option's name
    unknown = sorted(set(params) - known)
    if unknown:
        target = notebook.name if notebook is not None else "cifar-lab train"
        raise ValueError(f"{target} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(sorted(known))}")


def last_error(log: Path) -> str:
    """The most telling line of a failed run's log (its last error line, else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"(Error|Exception|error:)", line)]
    return (errors or lines or ["(empty log)"])[-1][:300]


def set_aside(run_dir: Path) -> Path:
    """Rename an unfinished attempt's folder NAME to NAME.unfinished-N (the first free N); returns the new path."""
    for n in range(1, 1000):
        aside = run_dir.with_name(f"{run_dir.name}.unfinished-{n}")
        if not aside.exists():
            run_dir.rename(aside)
            return aside
    raise RuntimeError(f"no free name to set {run_dir} aside")


def run_one(index: int, name: str, params: dict, grid: dict, out: Path, notebook: Path | None, env: dict) -> dict:
    """Run one setting in OUT/NAME (log.txt, run.json); a finished run with the same parameters is kept."""
    run_dir = out / name
    record_path = run_dir / SWEEP_RECORD
    if record_path.exists() and (run_dir / "metrics.json").exists():
        earlier = load_json(record_path)
        if earlier.get("status") == "ok" and earlier.get("params") == params:
            return {**earlier, "skipped": True}
        if earlier.get("status") == "ok":  # never overwrite a finished run made with other parameters
            return {"name": name, "params": params, "status": "failed",
                    "error": f"{run_dir} holds a finished run with other parameters ({earlier.get('params')}); "
                             f"use another --output-dir"}
    if notebook is not None and run_dir.is_dir() and any(run_dir.iterdir()):  # an attempt that did not finish
        if runs.in_use(run_dir / "results"):
            return {"name": name, "params": params, "status": "failed",
                    "error": f"{run_dir} is in use by another process; wait for it"}
        set_aside(run_dir)  # a notebook cannot resume: start afresh, its unfinished attempt kept beside it
    run_dir.mkdir(parents=True, exist_ok=True)
    args = command(params, run_dir) if notebook is None else ["papermill", notebook.name]
    record = {"index": index, "name": name, "params": params, "grid": {k: params[k] for k in grid},
              "command": args, "status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_json(record, record_path)
    t0 = time.perf_counter()
    if notebook is not None:
        results = run_dir / "results"
        code = notebooks.execute(notebook, run_dir / notebook.name, {**params, "output_dir": str(results.resolve())},
                                 run_dir / "log.txt", env=env)
        if code == 0:
            (results / "metrics.json").replace(run_dir / "metrics.json")
    else:
        with open(run_dir / "log.txt", "a") as log:  # appended: a rerun never truncates a live run's log
            code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  **notebooks.die_with_parent()).returncode
    ok = code == 0 and (run_dir / "metrics.json").exists()
    record.update(status="ok" if ok else "failed", returncode=code, seconds=time.perf_counter() - t0)
    if not ok:
        record["error"] = last_error(run_dir / "log.txt")
    save_json(record, record_path)
    return record


def run_sweep(runs: dict[str, dict], grid: dict, out: Path, notebook: Path | None = None,
              jobs: int = 1) -> list[dict]:
    """Run every named parameter set, `jobs` at a time; returns their records (status ok/failed)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = gpu_slots(os.environ.get("CUDA_VISIBLE_DEVICES"), gpus)  # keep an inherited choice
    threads = max(1, (os.cpu_count() or 1) // jobs)
    slots = list(range(jobs))  # which GPU / share of the CPU a run gets
    lock, records, done = threading.Lock(), [], [0]
    earlier = _sweep_info(out)[1].get("grid", {})  # a rerun may add values: the record keeps them all
    every_value = {k: earlier.get(k, []) + [v for v in values if v not in earlier.get(k, [])] for k, values in grid.items()}

    def work(item: tuple[int, tuple[str, dict]]) -> dict:
        index, (name, params) = item
        with lock:
            slot = slots.pop()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)]
        try:
            record = run_one(index, name, params, grid, out, notebook, env)
        except Exception as e:  # the runner itself failed (disk full...): still report it by name
            record = {"name": name, "params": params, "status": "failed", "error": repr(e)}
        with lock:
            slots.append(slot)
            records.append(record)
            done[0] += 1
            state = "kept (done before)" if record.get("skipped") else record["status"]
            extra = f": {record['error']}" if record["status"] == "failed" else \
                f" in {record.get('seconds', 0):.0f} s" if not record.get("skipped") else ""
            print(f"[{done[0]}/{len(runs)}] {name} {state}{extra}", flush=True)
            fixed = {k: v for k, v in params.items() if k not in grid}
            save_json({"notebook": notebook.stem if notebook else None, "grid": every_value, "fixed": fixed,
                       "runs": records}, out / SWEEP_INFO)
        return record

    first = next(iter(runs.values()), {})
    save_json({"notebook": notebook.stem if notebook else None, "grid": every_value,  # before any run: its identity
               "fixed": {k: v for k, v in first.items() if k not in grid}, "runs": []}, out / SWEEP_INFO)
    print(f"{len(runs)} runs, {jobs} at a time ({threads} CPU thread{'s' * (threads > 1)} each"
          f"{f', GPUs {gpus}' if gpus else ''}); results in {out}", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(work, enumerate(runs.items())))


def same_sweep(out: Path, notebook: str | None, grid: dict, fixed: dict) -> None:
    """A ValueError unless `out` is empty or holds this sweep (same notebook, same grid names, same fixed
    parameters): a folder's grid and fixed parameters are its identity, so its summary never pools two sweeps."""
    _, info = _sweep_info(out)
    if not info:
        if any(out.glob(f"*/{SWEEP_RECORD}")):
            raise ValueError(f"{out} holds runs of a sweep that recorded no sweep.json; give another --output-dir")
        return
    theirs = {"notebook": info.get("notebook"), "grid names": sorted(info.get("grid", {})),
              "fixed": json.loads(json.dumps(info.get("fixed", {}), default=str))}
    ours = {"notebook": notebook, "grid names": sorted(grid), "fixed": json.loads(json.dumps(fixed, default=str))}
    differ = [f"{k}: {theirs[k]} there, {ours[k]} here" for k in theirs if theirs[k] != ours[k]]
    if differ:
        raise ValueError(f"{out} holds another sweep ({'; '.join(differ)}); a sweep folder holds one sweep, so that "
                         f"its summary pools only runs of identical parameters: give another --output-dir")


def collect(out: str | Path) -> "pd.DataFrame":
    """One row per finished run and model: the run's grid values, then its metrics."""
    import pandas as pd

    out, rows = Path(out), []
    records = sorted(((record, p) for p in out.glob(f"*/{SWEEP_RECORD}") if (record := _readable(p)) is not None),
                     key=lambda item: (item[0].get("index", 0), str(item[1])))  # in the grid's order
    for record, record_path in records:
        metrics_path = record_path.parent / "metrics.json"
        if record.get("status") != "ok" or not metrics_path.exists():
            continue
        try:
            metrics = load_json(metrics_path)
        except ValueError as e:  # one damaged run must not hide the others
            print(f"skipped {record_path.parent.name}: {e}")
            continue
        for model, m in metrics.get("models", {}).items():  # a notebook's multi-seed rows: own setting, seed
            own = {"model": m["setting"], "seed": m["seed"]} if "setting" in m and "seed" in m else {"model": model}
            rows.append({"run": record["name"], **record.get("grid", {}), **own,
                         **{k: m.get(k) for k in METRICS}, "quick": metrics.get("quick", False)})
    return pd.DataFrame(rows)


def _readable(path: Path) -> dict | None:
    """A run's record, or None (with a line saying so) when it is damaged: one bad run hides no other."""
    try:
        return load_json(path)
    except ValueError as e:
        print(f"skipped {path.parent.name}: {e}")
        return None


def summarize(runs: "pd.DataFrame", over: str = "seed") -> "pd.DataFrame":
    """Mean, standard deviation (n-1) and count of each metric over `over`, per setting and model."""
    import pandas as pd

    if runs.empty:
        return pd.DataFrame()
    keys = [c for c in runs.columns if c not in (*METRICS, "run", "quick", over)]
    groups = runs.groupby(keys, sort=False, dropna=False)
    table = groups[list(METRICS)].agg(["mean", "std", "count"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table = table.rename(columns={"test_acc_count": "n"}).drop(columns=["best_val_acc_count", "train_seconds_count"])
    table["quick"] = groups["quick"].any()  # synthetic-data runs inside
    table = table.reset_index()
    settings = [k for k in keys if k != "model"]
    table.insert(0, "setting", [", ".join(f"{k}={row[k]}" for k in settings) for _, row in table.iterrows()])
    return table


def load_summary(path: str | Path) -> "pd.DataFrame":
    """A sweep's summary.csv (or the folder holding it), as a table; a missing file is a plain error."""
    import pandas as pd

    path = Path(path)
    path = path / "summary.csv" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no sweep summary at {path}: run cifar-lab sweep first")
    table = pd.read_csv(path, keep_default_na=False, dtype={"setting": str, "model": str})  # "002" stays "002"
    numbers = [c for c in table.columns if c.endswith(("_mean", "_std"))]
    table[numbers] = table[numbers].apply(pd.to_numeric, errors="coerce")  # n = 1: no std (NaN), still numbers
    return table


def newest_summary(notebook: str, over: str | None = None, folders: tuple[Path, ...] | None = None,
                   kind: str = "") -> Path | None:
    """The newest sweep summary of a notebook: the user's own under runs/ first, else the one shipped in reports/.

    With `over` (e.g. "epochs"), only sweeps whose grid varies it; without, only sweeps that vary no budget
    (seeds, models, or older ones that recorded no grid), so that a budget sweep is never taken for another. `kind` narrows
    the folder's name: "_ablation" finds only sweep_06_ablation*.
    """
    number = notebook[:2]
    for folder in folders or (notebooks.ROOT / "runs", notebooks.ROOT / "reports"):
        found = [p for p in sorted(folder.glob(f"sweep_{number}{kind}*/summary.csv"), key=lambda p: p.stat().st_mtime)
                 if _varies(p, over)]
        if found:
            return found[-1]
    return None


BUDGETS = {"epochs", "fast_epochs", "ablation_epochs"}  # a sweep over one of these is a budget sweep


def _varies(path: Path, over: str | None) -> bool:
    """Whether a sweep varies `over`; with None, whether it varies no budget (seeds, models, learning rates)."""
    grid = set(_sweep_info(path)[1].get("grid", {}))
    return over in grid if over else not grid & BUDGETS


def newest(notebook: str, path: str | Path | None = None, budget: dict | None = None,
           over: str | None = None, kind: str = "") -> tuple["pd.DataFrame | None", str]:
    """A notebook's sweep to draw: (its summary, one line naming it and its budget), or (None, why not).

    `path` (a notebook's sweep_summary parameter) wins over the newest; a sweep is drawn only when it
    recorded running with `budget` (e.g. {"epochs": 15}), so that it compares with the run above it.
    With `over`, the newest sweep that varies that parameter (a budget sweep), its other parameters checked.
    """
    found = Path(path) if path else newest_summary(notebook, over, kind=kind)
    if found is None or not found.exists():
        return None, f"No sweep of {notebook} yet: the command above makes one."
    table, about = load_summary(found), describe_summary(found)
    fixed = fixed_parameters(found)
    if fixed is None and budget:  # an older sweep that recorded nothing: its budget is unknown
        return None, f"Not drawn: {about} did not record its budget, so it may not compare with this run."
    fixed = fixed or {}
    other = {k: (fixed.get(k), v) for k, v in (budget or {}).items() if k != over and fixed.get(k, v) != v}
    if other:  # unset above: the default
        return None, (f"Not drawn: {about} ran with " + ", ".join(f"{k}={a}" for k, (a, _) in other.items()) +
                      ", not this run's " + ", ".join(f"{k}={b}" for k, (_, b) in other.items()) + ".")
    quick = " WARNING: quick mode (synthetic data): its numbers say nothing about CIFAR-10." \
        if table["quick"].astype(str).str.lower().eq("true").any() else ""
    return table, f"Sweep {about}.{quick}"


def styled(table: "pd.DataFrame"):
    """A sweep summary as a notebook shows it: setting, model, seeds, mean and std in %, seconds."""
    columns = [c for c in ("setting", "model", "n", "test_acc_mean", "test_acc_std", "train_seconds_mean")
               if c in table and not (c == "setting" and not table[c].astype(str).str.len().any())]
    return (table[columns].rename(columns={"n": "seeds", "test_acc_mean": "test accuracy", "test_acc_std": "± std",
                                           "train_seconds_mean": "training s"})
            .style.hide(axis="index").format({"test accuracy": "{:.2%}", "± std": "{:.2%}", "training s": "{:,.0f}"}))


def _sweep_info(path: str | Path) -> tuple[Path, dict]:
    """A sweep's folder (given it or its summary.csv) and its sweep.json ({} when it has none)."""
    path = Path(path)
    folder = path.parent if path.name == "summary.csv" else path
    return folder, load_json(folder / SWEEP_INFO) if (folder / SWEEP_INFO).exists() else {}


def fixed_parameters(path: str | Path) -> dict | None:
    """The parameters a sweep held fixed (from its sweep.json); None when it recorded none."""
    _, info = _sweep_info(path)
    return info.get("fixed") if "grid" in info else None


def describe_summary(path: str | Path) -> str:
    """Where a sweep summary is (relative to the checkout) and what it ran with, from its sweep.json."""
    folder, info = _sweep_info(path)
    shown = notebooks.shown_path(folder.resolve())
    if "grid" not in info:
        return f"{shown} (its fixed parameters were not recorded with it)"
    grid = "; ".join(f"{k} {' '.join(map(str, v))}" for k, v in info["grid"].items())
    fixed = ", ".join(f"{k}={v}" for k, v in info["fixed"].items()) or "the defaults"
    return f"{shown}: {info.get('notebook') or 'training runs'} over {grid}, with {fixed}"


def write_summary(out: Path) -> "pd.DataFrame":
    """runs.csv, summary.csv and summary.png from the finished runs in `out`; returns the summary."""
    from .. import plots
    from ..files import atomic_write

    runs = collect(out)
    table = summarize(runs)
    atomic_write(out / "runs.csv", lambda f: f.write(runs.to_csv(index=False)), mode="w")
    atomic_write(out / "summary.csv", lambda f: f.write(table.to_csv(index=False)), mode="w")
    if not table.empty:
        plots.plt.close(plots.sweep_summary(table, "test_acc", save=out / "summary.png"))
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cifar-lab sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter and the values to try (every combination of the grids runs)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter fixed for every run")
    p.add_argument("--notebook", help="run notebooks/NAME.ipynb with papermill instead of the training entry point")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: one per GPU, else one per CPU core, "
                   "at most one per 2 GiB of memory)")
    p.add_argument("--output-dir", default=None, help="default: runs/sweep_<notebook or model>")
    args = p.parse_args(argv)

    grid = {}
    for name, *values in args.grid:
        if not values:
            p.error(f"--grid {name} needs at least one value")
        grid[name] = [parse_value(v) for v in values]
    fixed = {k: parse_value(v) for k, v in args.parameter}
    try:
        notebook = notebooks.source(args.notebook) if args.notebook else None
        check_names({**fixed, **grid}, notebook)
    except ValueError as e:
        p.error(str(e))
    jobs = args.jobs if args.jobs is not None else default_jobs()
    if jobs < 1:
        p.error(f"--jobs must be >= 1, got {jobs}")
    try:
        out = check_output_dir(args.output_dir or f"runs/sweep_{notebook.stem if notebook else fixed.get('model', 'cnn')}", "--output-dir")
    except ValueError as e:
        p.error(str(e))

    planned = {run_name(params, grid): params for params in expand_grid(grid, fixed)}
    try:
        with runs.held(out):  # one sweep at a time in a folder: a second one never touches the first's records
            same_sweep(out, notebook.stem if notebook else None, grid, fixed)
            try:
                records = run_sweep(planned, grid, out, notebook, jobs)
            except KeyboardInterrupt:
                print("Interrupted: finished runs are kept; run the same command again to finish the others "
                      "(interrupted training runs resume from their checkpoints)")
                write_summary(out)
                return 130
            table = write_summary(out)
    except runs.RunFolderError as e:
        p.error(f"another sweep is running there: {e}")
    except ValueError as e:  # another sweep's folder
        p.error(str(e))
    failed = [r for r in records if r["status"] == "failed"]
    if not table.empty:
        import pandas as pd
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.drop(columns=[c for c in table.columns if c.startswith("train_seconds")]).round(4)
                  .to_string(index=False))
    print(f"summary: {out / 'summary.csv'}, {out / 'summary.png'}")
    if failed:
        print(f"{len(failed)} of {len(records)} runs FAILED (others kept): " +
              "; ".join(f"{r['name']} ({r.get('error', '')}) log {out / r['name'] / 'log.txt'}" for r in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
