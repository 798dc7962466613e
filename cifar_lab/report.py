"""Run every notebook with papermill and export report-style HTML into reports/.

    python -m cifar_lab.report                      # all notebooks, their default (full) parameters
    python -m cifar_lab.report -p epochs 2 --only 01_mlp 02_cnn
    python -m cifar_lab.report --quick              # synthetic data, 1 epoch: checks the pipeline

Each notebook runs into a staging folder; only a notebook that finishes replaces its earlier results
in reports/NAME/ and reports/NAME.html, so a failed run never overwrites good results, and quick mode
writes into reports/quick/ (it never replaces real-data reports). Training shows its epochs as it goes;
a failure is reported by name and the other notebooks go on. reports/index.html compares every model.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from pathlib import Path

from . import notebooks
from .checks import check_output_dir
from .files import atomic_write, save_json
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
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)


def run_notebook(name: str, params: dict, reports: Path, show=print) -> Path:
    """Execute one notebook into staging, then move its results into place; returns the HTML path."""
    source = notebooks.source(name)
    staging = reports / ".staging" / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    declared = notebooks.declared(source)
    wanted = {k: v for k, v in params.items() if k in declared}
    wanted["output_dir"] = str((staging / "results").resolve())
    if "mlp_metrics" in declared:  # 02 compares with 01's results in these reports
        wanted["mlp_metrics"] = str((reports / "01_mlp" / "metrics.json").resolve())
    executed = staging / f"{name}.ipynb"
    code = notebooks.execute(source, executed, wanted, staging / "log.txt", show=show)
    if code != 0:
        failed = reports / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        for path in (executed, staging / "log.txt"):
            if path.exists():
                shutil.copy(path, failed / f"{name}{path.suffix}")
        raise RuntimeError(_last_error(staging / "log.txt"))
    page = export_html(executed, name)
    # success: swap in the new results, then the page that shows them
    final = reports / name
    old = reports / ".staging" / f"{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    (staging / "results").rename(final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.move(str(executed), reports / f"{name}.ipynb")
    return atomic_write(reports / f"{name}.html", lambda f: f.write(page), mode="w")


def _last_error(log: Path) -> str:
    """The most telling line of a failed notebook's log."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\w+Error\b|Exception", line)]
    return (errors or lines or ["(empty log)"])[-1].split(" - ", 2)[-1][:300]


def summary(reports: Path) -> list[dict]:
    """Every model of every notebook's metrics.json, as rows."""
    rows = []
    for path in sorted(reports.glob("*/metrics.json")):
        metrics = notebooks.read_metrics(path)
        for model, m in metrics.get("models", {}).items():
            rows.append({"notebook": metrics["notebook"], "model": model, "test_acc": m["test_acc"],
                         "parameters": m["parameters"], "epochs": m["epochs"],
                         "train_seconds": m["train_seconds"], "quick": metrics["quick"],
                         "device": metrics["device"], "saved_at": metrics["saved_at"]})
    return rows


def write_index(reports: Path, rows: list[dict], failed: list[str]) -> Path:
    """reports/index.html: links to each report and a table comparing every model."""
    from . import plots

    if rows:
        plots.model_comparison([{"model": f"{r['notebook'][:2]} {r['model']}", "test_acc": r["test_acc"]}
                                for r in rows], "test_acc", save=reports / "summary.png")
    save_json(rows, reports / "summary.json")
    links = "".join(f'<li><a href="{p.name}">{p.stem}</a></li>' for p in sorted(reports.glob("[0-9]*.html")))
    head = "".join(f"<th>{k}</th>" for k in (rows[0] if rows else {}))
    body = "".join("<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                    for v in r.values()) + "</tr>" for r in rows)
    warn = f"<p style='color:#b00'>Failed in the last run (earlier results kept): {', '.join(failed)}</p>" \
        if failed else ""
    quick = "<p style='color:#b00'><b>Some results come from quick mode (synthetic data).</b></p>" \
        if any(r["quick"] for r in rows) else ""
    page = (f"<html><head><meta charset='utf-8'><title>cifar_lab reports</title></head>"
            f"<body style='font-family:sans-serif;max-width:1000px;margin:auto'><h1>CIFAR-10 course: results</h1>"
            f"{warn}{quick}<ul>{links}</ul><table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>"
            f"<p><img src='summary.png' style='max-width:100%'></p></body></html>")
    return atomic_write(reports / "index.html", lambda f: f.write(page), mode="w")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="passed to every notebook that declares it (as papermill -p)")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="names like 02_cnn (default: all)")
    parser.add_argument("--quick", action="store_true", help="synthetic data, 1 epoch (into reports/quick/)")
    parser.add_argument("--reports", default=None, help="output folder (default reports/, or reports/quick/)")
    args = parser.parse_args(argv)
    params = {k: parse_value(v) for k, v in args.parameter}
    if args.quick:
        params["quick"] = True
    names = args.only or notebooks.names()
    try:
        for name in names:
            notebooks.source(name)
        known = set().union(*(notebooks.declared(notebooks.source(n)) for n in names)) - {"output_dir"}
        if set(params) - known:
            raise ValueError(f"no notebook among {', '.join(names)} has a parameter "
                             f"{', '.join(map(repr, sorted(set(params) - known)))}; known: {', '.join(sorted(known))}")
        reports = check_output_dir(args.reports or ROOT / "reports" / ("quick" if args.quick else ""), "--reports")
        if params.get("quick") and not _quick_reports(reports):
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
            models = notebooks.read_metrics(reports / name / "metrics.json").get("models", {})
            scores = ", ".join(f"{m} {v['test_acc']:.2%}" for m, v in models.items()) or "no model trained"
            print(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.0f} s: test accuracy {scores}; "
                  f"{page}", flush=True)
        except KeyboardInterrupt:
            print(f"[{i}/{len(names)}] {name} interrupted; earlier results kept", flush=True)
            failed.append(name)
            break
        except Exception as e:
            print(f"[{i}/{len(names)}] {name} FAILED: {e} (executed copy and log in {reports / 'failed'}; "
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
