"""Every figure of the course. Each function takes `ax=None` (or draws its own figure), returns the
figure, and saves a PNG: to `save=PATH` when given; into the folder of `save_figures_to(folder)` (a
notebook's run folder: `course.start` sets it) as `save="name.png"`, or by default as FUNCTION_NAME.png."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator, NullFormatter, PercentFormatter
import torch

from .evaluate import EvalResult
from .files import atomic_write
from .history import History

CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")
_FOLDER: Path | None = None  # where figures go by default (None: nowhere)


def save_figures_to(folder: str | Path | None) -> None:
    """From now on save every figure into `folder` (None: only where `save=` says)."""
    global _FOLDER
    _FOLDER = Path(folder).resolve() if folder is not None else None  # a later chdir does not move it


def _target(save: str | Path | None, name: str) -> Path | None:
    """Where a figure goes: `save` as given, a bare file name inside the figures folder, else NAME.png there."""
    if save is None:
        return _FOLDER / f"{name}.png" if _FOLDER is not None else None
    save = Path(save)
    return _FOLDER / save if _FOLDER is not None and save.parent == Path(".") else save


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        fig._drawn_here = True  # a figure of its own: saved by default into the figures folder
    return ax.figure, ax


def _finish(fig, save: str | Path | None, name: str):
    if save is None and not getattr(fig, "_drawn_here", False):
        return fig  # drawn into the caller's axes: the caller saves the whole figure
    save = _target(save, name)
    if save is not None:
        atomic_write(save, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return fig


def to_display(images: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
               rescale: bool = False) -> np.ndarray:
    """Images as floats (N, H, W, 3) in 0..1 for imshow: uint8 as they are; normalised floats un-normalised
    with their mean/std, or, with `rescale`, each image's channels stretched to 0..1 (what the network sees)."""
    x = images.detach().cpu().float()
    if rescale:
        low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)  # (N, C, 1, 1)
        x = (x - low) / (high - low).clamp_min(1e-6)
    elif mean is not None:
        x = x * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    elif images.dtype == torch.uint8:
        x = x / 255
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               title: str = "", mean=None, std=None, rescale: bool = False, colors: Sequence[str] | None = None,
               save=None):
    """A grid of images, each with an optional title (in its colour from `colors`)."""
    pics = to_display(images, mean, std, rescale)
    nrows = max(-(-len(pics) // ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), layout="constrained", squeeze=False)
    fig._drawn_here = True
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(pics):
            ax.imshow(pics[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8, color=colors[i] if colors is not None else "black")
    fig.suptitle(title)
    return _finish(fig, save, "image_grid")


def examples_per_class(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], per_class: int = 1,
                       save=None):
    """`per_class` images of each class, one column per class."""
    picks = [i for c in range(len(classes)) for i in (labels == c).nonzero().flatten()[:per_class].tolist()]
    order = sorted(range(len(picks)), key=lambda k: k % per_class)  # row r holds the r-th example of each class
    picks = [picks[k] for k in order]
    return image_grid(images[picks], [classes[labels[i]] for i in picks], ncols=len(classes),
                      title=f"{per_class} example{'s' if per_class > 1 else ''} per class",
                      save=_target(save, "examples_per_class"))


def class_distribution(splits: dict[str, torch.Tensor], classes: Sequence[str], ax=None, save=None):
    """Bars of images per class, one colour per split ({'train': labels, 'test': labels})."""
    fig, ax = _axes(ax, (8, 4))
    width = 0.8 / len(splits)
    x = np.arange(len(classes))
    for k, (name, labels) in enumerate(splits.items()):
        counts = torch.bincount(labels, minlength=len(classes)).numpy()
        ax.bar(x + k * width - 0.4 + width / 2, counts, width, label=f"{name} ({len(labels):,})")
    ax.set(xticks=x, title="Images per class", xlabel="class", ylabel="images")
    ax.set_xticklabels(classes, rotation=30)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the bars: equal bars leave no gap
    return _finish(fig, save, "class_distribution")


def channel_histograms(images: torch.Tensor, ax=None, save=None):
    """Histogram of pixel values 0..255 for each RGB channel."""
    fig, ax = _axes(ax)
    for c, (name, colour) in enumerate(zip("RGB", CHANNEL_COLOURS)):
        counts = torch.bincount(images[:, c].flatten().long(), minlength=256).numpy()
        ax.plot(np.arange(256), counts / counts.sum(), color=colour, label=name)
    ax.set(title="Pixel values per channel", xlabel="pixel value (0-255)", ylabel="fraction of pixels")
    ax.legend()
    return _finish(fig, save, "channel_histograms")


def learning_curves(history: History | dict[str, History], save=None):
    """Loss and accuracy per epoch, train (dashed) vs validation (solid); LR on a twin axis; legend below."""
    runs = history if isinstance(history, dict) else {"": history}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    fig._drawn_here = True
    for (name, h), colour in zip(runs.items(), sns.color_palette(n_colors=max(len(runs), 1))):
        label = f"{name} " if name else ""
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            ax.plot(h.epoch, getattr(h, f"train_{key}"), "--s", ms=3, color=colour, label=f"{label}train")
            ax.plot(h.epoch, getattr(h, f"val_{key}"), "-o", ms=3, color=colour, label=f"{label}validation")
    smoothed = any(h.info.get("params", {}).get("label_smoothing") for h in runs.values())
    ax_loss.set(title="Loss" + (" (training loss includes label smoothing)" if smoothed else ""), xlabel="epoch",
                ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    handles, labels = ax_acc.get_legend_handles_labels()
    if len(runs) == 1:
        h = next(iter(runs.values()))
        ax_lr = ax_acc.twinx()
        handles += ax_lr.plot(h.epoch, h.lr, ":", color="grey", label="learning rate (right axis)")
        labels.append("learning rate (right axis)")
        ax_lr.set_ylabel("learning rate (end of epoch)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    return _finish(fig, save, "learning_curves")


def confusion_matrix(result: EvalResult, normalize: bool = True, ax=None, save=None):
    """Heatmap of true vs predicted classes; rows sum to 1 when `normalize`, else counts."""
    fig, ax = _axes(ax, (7, 6))
    cm = result.confusion_matrix(normalize)
    sns.heatmap(cm, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", square=True, ax=ax,
                xticklabels=result.classes, yticklabels=result.classes,
                cbar_kws={"label": "fraction of the true class" if normalize else "images"})
    ax.set(title=f"Confusion matrix ({result.split}, {'row-normalised' if normalize else 'counts'})",
           xlabel="predicted class", ylabel="true class")
    return _finish(fig, save, "confusion_matrix" if normalize else "confusion_matrix_counts")


def per_class_accuracy(results: EvalResult | dict[str, EvalResult], ax=None, save=None):
    """Bars of accuracy within each true class, one colour per model."""
    results = results if isinstance(results, dict) else {"model": results}
    fig, ax = _axes(ax, (9, 4))
    first_name, first = next(iter(results.items()))
    classes = first.classes
    width, x = 0.8 / len(results), np.arange(len(classes))
    for k, (name, r) in enumerate(results.items()):
        ax.bar(x + k * width - 0.4 + width / 2, list(r.per_class_accuracy().values()), width,
               label=f"{name} (overall {r.accuracy:.1%})")
    title = f"Accuracy per class ({first.split})"
    if len(results) == 1:  # one model: its overall accuracy in the title, no one-entry legend
        title = f"Accuracy per class ({first.split}; {first_name}, overall {first.accuracy:.1%})"
    ax.set(xticks=x, ylim=(0, 1), title=title, xlabel="true class", ylabel="accuracy")
    ax.set_xticklabels(classes, rotation=30)
    if len(results) > 1:  # beside the axes, where no bar can be under it
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _finish(fig, save, "per_class_accuracy")


def predictions(images: torch.Tensor, result: EvalResult, indices: Sequence[int], title: str = "Predictions",
                save=None):
    """Images with 'predicted (confidence) / true' titles; the titles of mistakes in red."""
    preds, conf, labels, names = result.predictions, result.confidences, result.labels, result.classes
    titles = [f"{names[preds[i]]} {conf[i]:.0%}\ntrue: {names[labels[i]]}" for i in indices]
    colors = ["tab:red" if preds[i] != labels[i] else "black" for i in indices]
    return image_grid(images[list(indices)], titles, ncols=min(8, max(len(indices), 1)), title=title,
                      colors=colors, save=_target(save, "predictions"))


def misclassified(images: torch.Tensor, result: EvalResult, k: int = 16, save=None):
    """The k most confident mistakes."""
    return predictions(images, result, result.misclassified(k), title="Most confident mistakes",
                       save=_target(save, "misclassified"))


METRIC_NAMES = {"test_acc": "test accuracy", "best_val_acc": "best validation accuracy", "val_acc":
                "validation accuracy", "train_seconds": "training seconds", "parameters": "parameters"}


def model_comparison(rows: Sequence[dict], metric: str = "test_acc", ax=None, save=None, title: str | None = None,
                     category: str = "model"):
    """Bars of one metric per row (dicts with 'model' and the metric), annotated with the values.

    Rows that also hold f"{metric}_std" get error bars of +- one standard deviation; `category` names the
    bars (e.g. "setting").
    """
    horizontal = len(rows) > 6  # long lists read better as rows
    fig, ax = _axes(ax, (7, 0.4 * len(rows) + 1) if horizontal else (7, 4))
    names, values = [r["model"] for r in rows], [r[metric] for r in rows]
    errors = [r.get(f"{metric}_std") for r in rows]
    errors = None if all(e is None for e in errors) else np.nan_to_num(np.array(errors, dtype=float))
    draw, error_key = (ax.barh, "xerr") if horizontal else (ax.bar, "yerr")
    bars = draw(names, values, color=sns.color_palette(n_colors=len(rows)),
                **({error_key: errors, "capsize": 4} if errors is not None else {}))
    fmt = "{:.3f}" if max(values, default=0) <= 1 else "{:,.0f}"
    if errors is None:
        ax.bar_label(bars, [fmt.format(v) for v in values], padding=2)
    else:  # inside the bars, clear of the error bars
        stds = [r.get(f"{metric}_std") for r in rows]  # one seed: no spread to show
        ax.bar_label(bars, [fmt.format(v) + (f" ± {fmt.format(e)}" if e is not None and e == e else "")
                            for v, e in zip(values, stds)], label_type="center", color="white", fontweight="bold")
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    ax.set(title=title or f"{name[0].upper()}{name[1:]} by {category}", xlabel=name if horizontal else category,
           ylabel=category if horizontal else name)
    if horizontal:
        ax.invert_yaxis()  # first row on top
        ax.margins(x=0.12)  # room for the value labels
    else:
        ax.margins(y=0.12)
    return _finish(fig, save, "model_comparison")


def sweep_summary(table, metric: str = "test_acc", x: str | None = None, ax=None, save=None):
    """Mean +- std of a metric over seeds (a table from `sweep.summarize`): one bar per setting and model, or with
    `x` (a grid parameter such as "epochs") one line per model against it."""
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    if x is not None:
        fig, ax = _axes(ax, (6.5, 4))
        for model, part in table.sort_values(x).groupby("model", sort=False):
            ax.errorbar(part[x], part[f"{metric}_mean"], yerr=part[f"{metric}_std"], fmt="-o", ms=4, capsize=3,
                        label=model)
        ax.set(xscale="log", xlabel=x, ylabel=name, title=f"{name[0].upper()}{name[1:]} against {x}: mean ± std "
               f"over seeds (n = {', '.join(map(str, sorted(set(table['n']))))})")
        ax.set_xticks(sorted(set(table[x])), [f"{v:g}" for v in sorted(set(table[x]))])
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the swept values are labelled
        if metric.endswith("acc"):
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.legend(fontsize=8)
        return _finish(fig, save, f"sweep_{metric}_by_{x}")
    rows = [{"model": " ".join(str(x) for x in (r["setting"], r["model"]) if x != ""),
             metric: r[f"{metric}_mean"], f"{metric}_std": r[f"{metric}_std"]} for _, r in table.iterrows()]
    n = ", ".join(map(str, sorted(set(table["n"]))))
    return model_comparison(rows, metric, ax=ax, save=save if ax is not None else _target(save, "sweep_summary"), category="setting",
                            title=f"{name[0].upper()}{name[1:]}: mean ± std over seeds (n = {n})")


def accuracy_vs_time(curves: dict[str, tuple[Sequence[float], Sequence[float]]], target: float | None = None,
                     ax=None, save=None, ylabel: str = "validation accuracy"):
    """Accuracy against wall-clock seconds, one line per run ({name: (seconds, accuracies)}), a target line."""
    fig, ax = _axes(ax, (7, 4.2))
    for (name, (seconds, accuracy)), colour in zip(curves.items(), sns.color_palette(n_colors=len(curves))):
        ax.plot(np.asarray(seconds) / 60, accuracy, "-o", ms=3, color=colour, label=name)
    if target is not None:
        ax.axhline(target, ls=":", color="grey", label=f"target {target:.0%}")
    ax.set(title="Accuracy against training time", xlabel="minutes since the start of training", ylabel=ylabel)
    ax.legend(loc="lower right", fontsize=8)
    return _finish(fig, save, "accuracy_vs_time")
