"""Run every notebook with papermill and export report-style HTML into reports/.

    cifar-lab report                      # all notebooks, their default (full) parameters
    cifar-lab report -p epochs 2 --only 01_mlp 02_cnn
    cifar-lab report --quick              # synthetic data, 1 epoch: checks the pipeline

Each notebook runs into a staging folder; only a notebook that finishes replaces its earlier results
in reports/NAME/ and reports/NAME.html, so a failed run never overwrites good results, and quick mode
writes into reports/quick/ (it never replaces real-data reports). Training shows its epochs as it goes;
a failure is reported by name and the other notebooks go on. reports/index.html compares every model.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import time
from pathlib import Path

from . import notebooks
from ..files import check_output_dir
from ..files import atomic_write, load_json, save_json
from .notebooks import ROOT, parse_value


def export_html(notebook: Path, title: str) -> str:
    """The executed notebook as HTML with code hidden, figures inline and a table of contents."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(notebook))
    headings = re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)<', body)
    toc = "".join(f'<li style="margin-left:{(int(level) - 1) * 1.2}em"><a href="#{anchor}">{text}</a></li>'
                  for level, anchor, text in headings)
    nav = (f'<nav style="max-width:1000px;margin:1em auto;font-family:sans-serif"><b>{html.escape(title)}</b>'
           f'<ul style="list-style:none">{toc}</ul></nav>')
    style = "<style>pre { white-space: pre-wrap; word-break: normal !important; overflow-wrap: anywhere; }</style>"
    body = body.replace("</head>", style + "</head>", 1)  # long output lines wrap between words, not inside them
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)


def committed_inputs(name: str, declared: set, reports: Path) -> dict:
    """Earlier reports a notebook reads, as paths: only committed ones, so a report never cites a private runs/ folder."""
    from . import sweep

    inputs = {}
    mlp = reports / "01_mlp" / "metrics.json"
    if "mlp_metrics" in declared and mlp.exists():  # 02 compares with 01's results in these reports
        inputs["mlp_metrics"] = str(mlp.resolve())
    for parameter, over, kind in (("sweep_summary", None, ""), ("budget_sweep", "epochs", ""),
                                  ("ablation_sweep", None, "_ablation")):
        shipped = sweep.newest_summary(name, over, folders=(reports,), kind=kind)  # committed here, not in runs/
        if parameter in declared and shipped:
            inputs[parameter] = str(shipped.resolve())
    return inputs


def run_notebook(name: str, params: dict, reports: Path, show=print) -> Path:
    """Execute one notebook into staging, then move its results into place; returns the HTML path."""
    source = notebooks.source(name)
    staging = reports / ".staging" / f"{name}-{os.getpid()}"  # two reports of one notebook never share one
    shutil.rmtree(staging, ignore_errors=True)  # left by a dead process that had this pid
    staging.mkdir(parents=True)
    declared = notebooks.declared(source)
    wanted = {k: v for k, v in params.items() if k in declared}
    wanted["output_dir"] = str((staging / "results").resolve())
    wanted.update(committed_inputs(name, set(declared) - set(params), reports))  # a -p of the teacher wins
    executed = staging / f"{name}.ipynb"
    shown = notebooks.shown_path(reports.resolve())
    env = {**os.environ, notebooks.RESULTS_AS: f"{shown}/{name}/",  # what the banner names, not the staging folder
           "TQDM_DISABLE": "1"}  # a saved notebook keeps a bar's first frame ("0%"); the epoch lines carry the numbers
    started = time.perf_counter()
    code = notebooks.execute(source, executed, wanted, staging / "log.txt", show=show, env=env)
    if code != 0:
        failed = reports / "failed"
        try:
            failed.mkdir(parents=True, exist_ok=True)
            for path in (executed, staging / "log.txt"):
                if path.exists():
                    shutil.copy(path, failed / f"{name}{path.suffix}")
        except OSError:  # a full disk: they stay in the staging folder, which the message then names
            pass
        raise RuntimeError(_last_error(staging / "log.txt"))
    stamp_run_facts(executed, staging / "results" / "metrics.json", time.perf_counter() - started)
    save_json({"notebook": name, "code_cells": code_cells(source)}, staging / "results" / SOURCE_RECORD)
    page = export_html(executed, name)
    # success: swap in the new results, then the page that shows them
    final = reports / name
    old = staging.with_name(staging.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    (staging / "results").rename(final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.move(str(executed), reports / f"{name}.ipynb")
    shutil.rmtree(staging, ignore_errors=True)  # only the log is left in it (a failed run's stays, to read)
    return atomic_write(reports / f"{name}.html", lambda f: f.write(page), mode="w")


SOURCE_RECORD = "source_cells.json"  # the code cells of the notebook a report ran: a drift check compares them


def code_cells(notebook: Path) -> list[str]:
    """A notebook's code cells as text, without papermill's injected-parameters cell."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and
            "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def drifted(reports: Path) -> dict[str, str]:
    """The committed reports not executed from today's source notebook: {name: why}."""
    found = {}
    for record in sorted(reports.glob(f"*/{SOURCE_RECORD}")):
        name = record.parent.name
        try:
            source = notebooks.source(name)
        except ValueError:
            found[name] = "its notebook is gone"
            continue
        if load_json(record)["code_cells"] != code_cells(source):
            found[name] = f"its code differs from {notebooks.shown_path(source)}: rerun `cifar-lab report --only {name}`"
    for metrics in sorted(reports.glob("[0-9]*/metrics.json")):
        if not (metrics.parent / SOURCE_RECORD).exists():
            found.setdefault(metrics.parent.name, f"it records no {SOURCE_RECORD} (made before the record existed)")
    return found


def run_facts(metrics_path: Path, seconds: float) -> str:
    """One markdown line for the top of a report: when and how long it ran, on which CPU, device and precision."""
    from ..files import cpu_name

    metrics = notebooks.read_metrics(metrics_path) if metrics_path.exists() else {}
    cpu = metrics.get("environment", {}).get("cpu") or cpu_name()
    precisions = sorted({m.get("history", {}).get("info", {}).get("precision") for m in metrics.get("models", {}).values()}
                        - {None})
    trained = f", trained in {'/'.join(precisions)}" if precisions else ""
    when = metrics.get("saved_at") or time.strftime("%Y-%m-%d %H:%M")
    return (f"**This report's run**: {seconds / 60:.1f} min for the whole notebook ({seconds:,.0f} s), "
            f"finished {when}, on {cpu} (device {metrics.get('device', 'cpu')}{trained}).")


def stamp_run_facts(executed: Path, metrics_path: Path, seconds: float) -> None:
    """Insert `run_facts` as a markdown cell under the executed notebook's title, so the report opens with it."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(run_facts(metrics_path, seconds)))
    nbformat.write(nb, executed)


def _last_error(log: Path) -> str:
    """The most telling line of a failed notebook's log."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\w+Error\b|Exception", line)]
    return (errors or lines or ["(empty log)"])[-1].split(" - ", 2)[-1][:300]


def summary(reports: Path) -> list[dict]:
    """One row per notebook and model (or setting, its seeds pooled: mean, std and n), from each metrics.json."""
    import numpy as np

    rows = []
    for path in sorted(reports.glob("*/metrics.json")):
        metrics = notebooks.read_metrics(path)
        groups: dict[str, list[dict]] = {}
        for model, m in metrics.get("models", {}).items():
            groups.setdefault(m.get("setting", model), []).append(m)
        for name, ms in groups.items():
            accs = [m["test_acc"] for m in ms]
            rows.append({"notebook": metrics["notebook"], "model": name, "epochs": max(m["epochs"] for m in ms),
                         "train_images": ms[0].get("train_images") or _train_images(metrics.get("data", "")),
                         "seeds": len(ms), "test_acc": float(np.mean(accs)),
                         "test_acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                         "parameters": ms[0]["parameters"],
                         "train_seconds": float(np.mean([m["train_seconds"] for m in ms])),
                         "quick": metrics["quick"], "data": metrics.get("data", ""), "device": metrics["device"],
                         "cpu": metrics.get("environment", {}).get("cpu", ""),
                         "precision": ms[0].get("history", {}).get("info", {}).get("precision", ""),
                         "saved_at": metrics["saved_at"]})
    return rows


def _train_images(described: str) -> int | None:
    """The training split's size from a data description ("...: 45,000 train, 5,000 val, ...")."""
    found = re.search(r"([\d,]+) train", described)
    return int(found.group(1).replace(",", "")) if found else None


_TABLE = "<table border='1' cellpadding='4' style='border-collapse:collapse'>"


def _notebook_section(name: str, rows: list[dict], reports: Path) -> str:
    """One notebook's results: a link to its report, where and when it ran, a row per model or setting."""
    first = rows[0]
    quick = " <b>(quick mode: synthetic data)</b>" if first["quick"] else ""
    link = f'<a href="{name}.html">{name}</a>' if (reports / f"{name}.html").exists() else name
    body = "".join(
        f"<tr><td>{html.escape(r['model'])}</td><td>{r['epochs']}</td><td>{_count(r.get('train_images'))}</td>"
        f"<td>{r['seeds']}</td><td>{r['test_acc']:.2%}" + (f" ± {r['test_acc_std']:.2%}" if r["test_acc_std"] is not None else "") +
        f"</td><td>{r['parameters']:,}</td><td>{r['train_seconds']:,.0f}</td></tr>" for r in rows)
    machine = ", ".join(x for x in (first.get("cpu"), first.get("precision")) if x)  # times compare only on one
    where = f"device {first['device']}" + (f" ({machine})" if machine else "")
    return (f"<h2>{link}</h2><p>{html.escape(first['data'])}; {html.escape(where)}; "
            f"run {html.escape(first['saved_at'])}{quick}</p>"
            f"{_TABLE}<tr><th>model or setting</th><th>epochs</th><th>training images</th><th>seeds</th>"
            "<th>test accuracy (mean ± std over seeds)</th><th>parameters</th>"
            f"<th>training seconds (mean)</th></tr>{body}</table>")


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _sweep_owner(path: Path) -> str:
    """The notebook a sweep belongs to: its record's notebook, else the two digits of its folder's name."""
    from . import sweep

    info = sweep._sweep_info(path)[1]
    if info.get("notebook"):
        return info["notebook"]
    digits = re.match(r"sweep_(\d\d)", path.parent.name)
    return digits.group(1) if digits else ""


def _sweep_section(path: Path) -> str:
    """One committed sweep: what it ran with (its budget), mean ± std per setting, its chart."""
    from . import sweep

    try:
        table = sweep.load_summary(path)
        table[["setting", "model", "n", "test_acc_mean", "test_acc_std"]]  # the columns shown below
    except (KeyError, ValueError, OSError) as e:  # a hand-edited or truncated file: say so, show the rest
        return (f"<h3>{html.escape(path.parent.name)}</h3><p>summary.csv cannot be read ({html.escape(repr(e))}); "
                f"rerun its sweep or delete it</p>")
    body = "".join(f"<tr><td>{html.escape(str(r['setting']))}</td><td>{html.escape(str(r['model']))}</td>"
                   f"<td>{r['n']}</td><td>{r['test_acc_mean']:.2%}" +
                   (f" ± {r['test_acc_std']:.2%}" if r["n"] > 1 else " (one seed: no spread)") +
                   f"</td><td>{r.get('train_seconds_mean', float('nan')):,.0f}</td></tr>" for _, r in table.iterrows())
    image = f"<p><img src='{path.parent.name}/summary.png' style='max-width:70%'></p>" \
        if (path.parent / "summary.png").exists() and len(table) > 1 else ""  # one bar says no more than its row
    about = sweep.describe_summary(path).replace(str(path.parent), path.parent.name)
    return (f"<h3>Sweep: {html.escape(about)}</h3>{_TABLE}<tr><th>setting</th><th>model</th>"
            f"<th>seeds</th><th>test accuracy (mean ± std)</th><th>training seconds (mean)</th></tr>{body}</table>{image}")


def _sweeps(reports: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Committed sweeps by notebook, and the names of those that did not record their budget (not shown)."""
    from . import sweep

    by_notebook: dict[str, list[Path]] = {}
    unrecorded = []
    for path in sorted(reports.glob("sweep_*/summary.csv")):
        if sweep.fixed_parameters(path) is None:
            unrecorded.append(path.parent.name)
            continue
        owner = _sweep_owner(path)
        key = next((n for n in _NOTEBOOKS if n == owner or n[:2] == owner), owner or "other")
        by_notebook.setdefault(key, []).append(path)
    return by_notebook, unrecorded


_NOTEBOOKS = ("00_data_analysis", "01_mlp", "02_cnn", "03_regularization", "04_resnet_comparison",
              "05_reference_recipes", "06_fast_training")


def _best_section(reports: Path) -> str:
    """The kit's headline results, the same rows as the README's generated table."""
    from .results import rows

    found = rows(reports)
    if not found:
        return ""
    heads = [("what", "result"), ("accuracy", "test accuracy"), ("budget", "budget"), ("seconds", "training s"),
             ("machine", "machine"), ("source", "from")]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k, _ in heads) + "</tr>" for r in found)
    return (f"<h2>Best results</h2>{_TABLE}<tr>" + "".join(f"<th>{h}</th>" for _, h in heads) + f"</tr>{body}</table>")


def _reproductions_section(reports: Path) -> str:
    """The reference reports' accuracies against the committed full-budget reruns, with a verdict each."""
    from .reference import TOLERANCE, reproductions

    rows = reproductions(reports)
    if not rows:
        return ""
    heads = ["recipe", "reported", "reproduced", "difference", "verdict", "likeliest reason", "epochs", "hours", "machine"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[h]))}</td>" for h in heads) + "</tr>" for r in rows)
    return (f"<h3>The reference reports, rerun at their own budgets</h3><p>One seed each (reports/recipes/); "
            f"reproduced: within {TOLERANCE:.2f} points, what the JPEG copy and seed noise explain.</p>"
            "<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>" +
            "".join(f"<th>{h}</th>" for h in heads) + f"</tr>{body}</table>")


def write_index(reports: Path, rows: list[dict], failed: list[str]) -> Path:
    """reports/index.html: per notebook a link to its report and its results (epochs, seeds, mean ± std), the
    sweeps, a chart, and the data caveat."""
    from .. import plots

    if rows:
        chart = [{"model": f"{r['notebook'][:2]} {r['model']} ({r['epochs']} ep" +
                  (f", {r['seeds']} seeds)" if r["seeds"] > 1 else ")"), "test_acc": r["test_acc"],
                  "test_acc_std": r["test_acc_std"]} for r in rows]
        plots.plt.close(plots.model_comparison(chart, "test_acc", category="notebook and model",
                                               title="Test accuracy of every model (epochs; mean ± std over seeds)",
                                               save=reports / "summary.png"))
    save_json(rows, reports / "summary.json")
    by_notebook: dict[str, list[dict]] = {}
    for r in rows:
        by_notebook.setdefault(r["notebook"], []).append(r)
    names = sorted(set(by_notebook) | {p.stem for p in reports.glob("[0-9]*.html")})
    sweeps, unrecorded = _sweeps(reports)
    sections = ""
    for n in sorted(set(names) | set(sweeps)):
        sections += _notebook_section(n, by_notebook[n], reports) if n in by_notebook else \
            f'<h2><a href="{n}.html">{n}</a></h2><p>(no model trained)</p>' if n in names else f"<h2>{html.escape(n)}</h2>"
        if n == "05_reference_recipes":
            sections += _reproductions_section(reports)
        sections += "".join(_sweep_section(p) for p in sweeps.get(n, []))
    if unrecorded:
        sections += (f"<p>Not shown, as they did not record their budget: {html.escape(', '.join(unrecorded))} "
                     "(rerun them with today's sweep command).</p>")
    warn = f"<p style='color:#b00'>Failed in the last run (earlier results kept): {', '.join(failed)}</p>" \
        if failed else ""
    quick = "<p style='color:#b00'><b>Some results come from quick mode (synthetic data).</b></p>" \
        if any(r["quick"] for r in rows) else ""
    caveat = ("<p>Unless marked otherwise, these results come from <b>CIFAR-10 (JPEG-q75 copy)</b>: the real images, "
              "recompressed by whoever made the course's offline copy, so accuracies run a little below those on "
              "the original files. Epochs differ between notebooks (each runs at its own defaults): compare rows "
              "of one notebook, or at equal epochs. One seed unless the seeds column says more.</p>")
    page = (f"<html><head><meta charset='utf-8'><title>cifar_lab reports</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:auto'><h1>CIFAR-10 course: results</h1>"
            f"{warn}{quick}{caveat}{_best_section(reports)}{sections}"
            f"<h2>All models</h2><p><img src='summary.png' style='max-width:100%'></p></body></html>")
    return atomic_write(reports / "index.html", lambda f: f.write(page), mode="w")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="passed to every notebook that declares it (as papermill -p)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="names like 02_cnn (default: all)")
    parser.add_argument("--quick", action="store_true", help="synthetic data, 1 epoch (into reports/quick/)")
    parser.add_argument("--reports", default=None, help="output folder (default reports/, or reports/quick/)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite README.md's results table from the committed reports/, run nothing")
    args = parser.parse_args(argv)
    if args.readme:
        from . import results
        print("README.md results table " + ("updated" if results.update_readme() else "already up to date"))
        return 0
    params = {k: parse_value(v) for k, v in args.parameter}
    names = args.only or notebooks.names()
    try:
        from .course import quick_mode
        quick = quick_mode(args.quick or params.get("quick") is True)  # --quick, -p quick True or $CIFAR_LAB_QUICK
        if quick:
            params["quick"] = True
        for name in names:
            notebooks.source(name)
        known = set().union(*(notebooks.declared(notebooks.source(n)) for n in names)) - {"output_dir"}
        if set(params) - known:
            raise ValueError(f"no notebook among {', '.join(names)} has a parameter "
                             f"{', '.join(map(repr, sorted(set(params) - known)))}; known: {', '.join(sorted(known))}")
        reports = check_output_dir(args.reports or ROOT / "reports" / ("quick" if quick else ""), "--reports")
        if quick and not _quick_reports(reports):
            raise ValueError(f"{reports} holds real-data reports: quick mode never replaces them; "
                             f"use --reports {reports / 'quick'}")
    except ValueError as e:
        parser.error(str(e))
    failed = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        try:
            page = run_notebook(name, params, reports, show=lambda line: print(f"    {name}: {line}", flush=True))
            rows = [r for r in summary(reports) if r["notebook"] == name]  # a setting's seeds pooled
            scores = ", ".join(f"{r['model']} {r['test_acc']:.2%}" + (f" (mean of {r['seeds']})" if r["seeds"] > 1
                               else "") for r in rows) or "no model trained"
            print(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.0f} s: test accuracy {scores}; "
                  f"{page}", flush=True)
        except KeyboardInterrupt:
            print(f"[{i}/{len(names)}] {name} interrupted; earlier results kept", flush=True)
            failed.append(name)
            break
        except Exception as e:  # the copy and log are in failed/, or (a full disk) still in the staging folder
            where = reports / "failed" if (reports / "failed" / f"{name}.txt").exists() else \
                reports / ".staging" / f"{name}-{os.getpid()}"
            print(f"[{i}/{len(names)}] {name} FAILED: {e} (executed copy and log in {where}; "
                  f"earlier results kept)", flush=True)
            failed.append(name)
    index = write_index(reports, summary(reports), failed)
    print(f"summary: {index}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _quick_reports(reports: Path) -> bool:
    """Whether every report in a folder came from quick mode (true of an empty folder)."""
    return all(notebooks.read_metrics(p).get("quick") for p in reports.glob("*/metrics.json"))


if __name__ == "__main__":
    sys.exit(main())
