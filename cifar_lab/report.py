"""Run every notebook with papermill and export report-style HTML into reports/.

    python -m cifar_lab.report                      # all notebooks, their default (full) parameters
    python -m cifar_lab.report -p epochs 2 --only 01_mlp 02_cnn
    python -m cifar_lab.report --quick              # synthetic data, 1 epoch: checks the pipeline

Each notebook runs into a staging folder; only a notebook that finishes replaces its earlier results
in reports/NAME/ and reports/NAME.html, so a failed run never overwrites good results. A failure is
reported by name and the other notebooks go on. reports/index.html compares every model.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from pathlib import Path

from .files import atomic_write, load_json, save_json

ROOT = Path(__file__).resolve().parents[1]


def parse_value(text: str):
    """A -p value typed as papermill's CLI types it: int, float, bool, None, else str."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


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


def run_notebook(name: str, params: dict, reports: Path) -> Path:
    """Execute one notebook into staging, then move its results into place; returns the HTML path."""
    import papermill as pm

    source = ROOT / "notebooks" / f"{name}.ipynb"
    staging = reports / ".staging" / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    declared = pm.inspect_notebook(str(source))
    wanted = {**params, "output_dir": str(staging / "results")}
    if "mlp_metrics" in declared:  # 02 compares with 01's saved results
        wanted["mlp_metrics"] = str(reports / "01_mlp" / "metrics.json")
    wanted = {k: v for k, v in wanted.items() if k in declared}
    executed = staging / f"{name}.ipynb"
    try:
        pm.execute_notebook(str(source), str(executed), parameters=wanted, cwd=str(source.parent),
                            kernel_name="python3", progress_bar=True)
    except BaseException:
        failed = reports / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        if executed.exists():
            shutil.copy(executed, failed / f"{name}.ipynb")
        raise
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


def summary(reports: Path) -> list[dict]:
    """Every model of every notebook's metrics.json, as rows."""
    rows = []
    for path in sorted(reports.glob("*/metrics.json")):
        metrics = load_json(path)
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
    parser.add_argument("--quick", action="store_true", help="synthetic data, 1 epoch")
    parser.add_argument("--reports", default=str(ROOT / "reports"), help="output folder")
    args = parser.parse_args(argv)
    params = {k: parse_value(v) for k, v in args.parameter}
    if args.quick:
        params["quick"] = True
    names = args.only or sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    unknown = [n for n in names if not (ROOT / "notebooks" / f"{n}.ipynb").exists()]
    if unknown:
        parser.error(f"no such notebook: {', '.join(unknown)}")
    reports = Path(args.reports)
    reports.mkdir(parents=True, exist_ok=True)
    failed = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        try:
            page = run_notebook(name, params, reports)
            print(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.0f}s: {page}", flush=True)
        except KeyboardInterrupt:
            print(f"[{i}/{len(names)}] {name} interrupted; earlier results kept", flush=True)
            failed.append(name)
            break
        except Exception as e:
            print(f"[{i}/{len(names)}] {name} FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}"
                  f" (executed copy in {reports / 'failed'}; earlier results kept)", flush=True)
            failed.append(name)
    index = write_index(reports, summary(reports), failed)
    print(f"summary: {index}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
