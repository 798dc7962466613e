"""airbench94's own code beside the kit's fast recipe: same data, machine, precision and training images.

    pip install -e ".[bench]"                     # airbench (PyPI, K. Jordan), never needed by the course
    cifar-lab bench --versus airbench --seeds 0 1 --output-dir reports/versus_airbench
    cifar-lab bench --versus airbench --seeds 0 1 --output-dir reports/versus_airbench --resume  # after a stop

Both train on all 50,000 training images of the data folder (airbench's protocol; the kit holds out one
image, as its loader needs a validation split) and are tested on the 10,000 test images with their own
test-time augmentation, interleaved seed by seed. airbench's code is called as installed: it is written for
one CUDA GPU in fp16, so on a CPU it runs inside `cpu_shims` (a CPU timer for CUDA events, no-op
synchronisation, `.cuda()` as a no-op, `.half()` as float32 under the CPU's bf16 autocast, or none in fp32) and reads the data
from `cifar10/train.pt` and `test.pt` that `write_airbench_data` makes from the kit's batch files. Nothing in
its training changes.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import time
from pathlib import Path

import numpy as np
import torch

from .. import devices
from ..data import FOLDER, TEST_FILES, TRAIN_FILES, find_cifar10, load_cifar10, read_batch, read_classes, META_FILE
from ..evaluate import evaluate
from ..fast import fast_options, train_fast, tta_flops
from ..models import flops_per_image

KIT = "cifar_lab fast recipe"


def write_airbench_data(data_dir: str | Path | None, folder: Path, limit: int | None = None) -> Path:
    """folder/cifar10/{train,test}.pt as airbench's CifarLoader reads them (uint8 NHWC images), from our files."""
    source = find_cifar10(data_dir, download=False)
    out = folder / "cifar10"
    out.mkdir(parents=True, exist_ok=True)
    classes = read_classes(source / META_FILE)
    for name, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        batches = [read_batch(source / f) for f in files]
        images = torch.cat([x for x, _ in batches]).permute(0, 2, 3, 1).contiguous()  # (N, 32, 32, 3)
        labels = torch.cat([y for _, y in batches])
        if limit:
            images, labels = images[:limit], labels[:limit]
        torch.save({"images": images, "labels": labels, "classes": classes}, out / f"{name}.pt")
    return out


class _CpuEvent:
    """torch.cuda.Event's timing interface on the host clock."""

    def __init__(self, enable_timing: bool = True):
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: "_CpuEvent") -> float:
        return 1000 * (end.t - self.t)  # milliseconds, as CUDA events give them


@contextlib.contextmanager
def cpu_shims(precision: str = "fp32"):
    """Run airbench's CUDA + fp16 code on the CPU unchanged; everything is restored on exit."""
    import airbench.utils as utils

    saved = [(torch.cuda, "Event"), (torch.cuda, "synchronize"), (torch.Tensor, "cuda"), (torch.nn.Module, "cuda"),
             (torch.Tensor, "half"), (torch.nn.Module, "half"), (torch.nn.BatchNorm2d, "forward"),
             (utils, "init_whitening_conv")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in saved]
    defaults, whiten, batchnorm = utils.CifarLoader.__init__.__defaults__, utils.init_whitening_conv, \
        torch.nn.BatchNorm2d.forward
    if inspect.signature(utils.CifarLoader.__init__).parameters.get("gpu") is None or defaults is None:
        raise RuntimeError("this airbench's CifarLoader has no gpu= default to point at the CPU; airbench 0.1.8 has")

    def whiten_in_fp32(*args, **kwargs):  # its patch covariance and eigh, as on the GPU: never under autocast
        with torch.autocast("cpu", enabled=False):
            return whiten(*args, **kwargs)

    def batchnorm_in_fp32(self, x):  # CUDA's autocast keeps batch norm in fp32; the CPU's would not
        with torch.autocast("cpu", enabled=False):
            return batchnorm(self, x.float())

    try:
        torch.cuda.Event, torch.cuda.synchronize = _CpuEvent, lambda *a, **k: None
        torch.Tensor.cuda = torch.nn.Module.cuda = lambda self, *a, **k: self
        torch.Tensor.half = torch.nn.Module.half = lambda self, *a, **k: self.float()  # precision: autocast below
        utils.init_whitening_conv, torch.nn.BatchNorm2d.forward = whiten_in_fp32, batchnorm_in_fp32
        utils.CifarLoader.__init__.__defaults__ = defaults[:-1] + ("cpu",)  # gpu=0 would mean cuda:0
        # One autocast around the whole of train94, so no weight-cast cache: with it, every step would reuse the
        # first step's bf16 copies of the weights and the net would never learn (chance level, found and tested).
        with (torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False) if precision == "bf16"
              else devices.autocast(torch.device("cpu"), precision)):
            yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        utils.CifarLoader.__init__.__defaults__ = defaults


def airbench_run(folder: Path, seed: int, precision: str, epochs: float | None = None,
                 batch_size: int | None = None) -> dict:
    """One train94 run in `folder` (which holds cifar10/): test accuracy (its TTA), seconds, FLOPs."""
    import airbench
    from airbench.lib_airbench94 import hyp

    epochs = hyp["opt"]["train_epochs"] if epochs is None else epochs
    batch_size = batch_size or hyp["opt"]["batch_size"]
    here = os.getcwd()
    os.chdir(folder)  # train94 builds its test loader as CifarLoader("cifar10", ...), relative to here
    try:
        with cpu_shims(precision):
            torch.manual_seed(seed)
            loader = airbench.CifarLoader("cifar10", train=True, batch_size=batch_size, aug=hyp["aug"],
                                          altflip=True)
            started = time.perf_counter()
            model = airbench.train94(loader, epochs=epochs, verbose=False)
            seconds = time.perf_counter() - started
            test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            accuracy = airbench.evaluate(model, test, tta_level=hyp["net"]["tta_level"])
    finally:
        os.chdir(here)
    per_image = flops_per_image(model)
    steps = int(np.ceil(len(loader) * epochs))
    flops = per_image * (3 * steps * batch_size + len(test.labels) * 6)  # training; 6-pass TTA testing
    return {"implementation": "airbench94", "seed": seed, "test_acc": accuracy, "seconds": seconds,
            "flops": float(flops), "epochs": epochs, "train_images": len(loader.labels)}


@contextlib.contextmanager
def cpu_precision(precision: str):
    """The kit trains on the CPU in `precision` (bf16 or fp32) whatever this CPU would choose."""
    chosen = devices.cpu_has_native_bf16
    devices.cpu_has_native_bf16 = lambda: precision == "bf16"
    try:
        yield
    finally:
        devices.cpu_has_native_bf16 = chosen


def kit_run(data_dir: str | Path | None, seed: int, precision: str, epochs: float | None = None,
            quick: bool = False) -> dict:
    """One run of the kit's fast recipe on the same images (all but one held out for validation)."""
    data = load_cifar10(data_dir, val_size=1, seed=seed, download=False)
    options = fast_options(seed=seed, **({"epochs": epochs} if epochs else {}), **({"batch_size": 100} if quick else {}))
    started = time.perf_counter()
    with cpu_precision(precision):  # on the CPU, as airbench's shimmed code: the same machine for both
        model, history = train_fast(data, device="cpu", progress=False, verbose=False, **options)
    seconds = time.perf_counter() - started
    result = evaluate(model, data, "test", tta=options["tta"])
    flops = history.info["flops"] + tta_flops(history, len(data.test_labels), options["tta"])
    return {"implementation": KIT, "seed": seed, "test_acc": result.accuracy, "seconds": seconds,
            "flops": float(flops), "epochs": options["epochs"], "train_images": len(data.train_labels)}


def resumable(folder: Path, precision: str, quick: bool) -> list[dict]:
    """The finished runs of an interrupted comparison in `folder` (its results.json), if it ran as asked now."""
    from ..files import load_json

    path = Path(folder) / "results.json"
    if not path.exists():
        raise ValueError(f"nothing to resume in {folder}: no run of it finished; start it again in a new folder "
                         f"(without --resume)")
    saved = load_json(path)
    if (saved.get("precision"), saved.get("quick")) != (precision, quick):
        raise ValueError(f"{folder} ran in {saved.get('precision')} with quick={saved.get('quick')}; resume it the "
                         f"same way (--precision {saved.get('precision')}{' --quick' if saved.get('quick') else ''})")
    return saved["runs"]


def versus(data_dir: str | Path | None, folder: Path, seeds: list[int], precision: str = "fp32",
           quick: bool = False, show=print, save=None, done: list[dict] | None = None) -> dict:
    """Both implementations in `precision`, interleaved seed by seed; each run as a row, and mean, std and ratios.

    `folder` holds airbench's copy of the data; `save(result)` is called after every run, so that an
    interrupted comparison keeps the runs it finished, and `done` (its runs) resumes it. In bf16 airbench trains
    under one CPU autocast around its whole run (its batch norm and whitening in fp32, as CUDA's autocast keeps
    them), the kit under its own autocast per step.
    """
    write_airbench_data(data_dir, folder, limit=2000 if quick else None)
    rows = list(done or [])
    result = _summary(rows, precision, quick) if rows else {}
    for seed in seeds:
        for name, run in (("airbench94", lambda: airbench_run(folder, seed, precision, *((1, 100) if quick else ()))),
                          (KIT, lambda: kit_run(data_dir, seed, precision, 1 if quick else None, quick))):
            if any(r["implementation"] == name and r["seed"] == seed for r in rows):
                show(f"{name}, seed {seed}: done before, kept")
                continue
            rows.append(row := run())
            show(f"{row['implementation']}, seed {seed}: {row['test_acc']:.2%} in {row['seconds']:.0f} s, "
                 f"{row['flops'] / 1e15:.3f} PFLOPs", flush=True)
            result = _summary(rows, precision, quick)
            if save:
                save(result)
    return result


def _summary(rows: list[dict], precision: str, quick: bool) -> dict:
    """The runs so far, with each implementation's mean, std and the kit-over-airbench ratios (once both ran)."""
    summary = {}
    for name in ("airbench94", KIT):
        mine = [r for r in rows if r["implementation"] == name]
        if not mine:
            continue
        accs = [r["test_acc"] for r in mine]
        summary[name] = {"test_acc_mean": float(np.mean(accs)), "test_acc_std": float(np.std(accs, ddof=1)) if
                         len(accs) > 1 else None, "n": len(accs), "seconds_mean": float(np.mean([r["seconds"] for r in mine])),
                         "pflops": mine[0]["flops"] / 1e15}
    result = {"runs": rows, "summary": summary, "precision": precision, "quick": quick}
    if len(summary) == 2:
        kit, peer = summary[KIT], summary["airbench94"]
        result["accuracy_ratio"] = kit["test_acc_mean"] / peer["test_acc_mean"]
        result["speed_ratio"] = peer["seconds_mean"] / kit["seconds_mean"]  # > 1: the kit is faster
    return result


def pooled(reports: str | Path) -> dict:
    """Every committed comparison under `reports` (versus_airbench*/results.json) as one: runs, summary, notes.

    Seeds run in separate folders (one per session) pool into one mean ± std per implementation, over the
    seeds both implementations finished. Only the first folder's precision pools (others are named in
    `notes`), a seed already counted is not counted twice, and seconds (and the speed ratio) come only from
    the CPU that ran most of the runs, since times compare only on one machine. {} when none is committed.
    """
    from ..files import load_json

    rows, notes, folders, precision = [], [], [], None
    for path in sorted(Path(reports).glob("versus_airbench*/results.json")):
        try:
            saved = load_json(path)
        except ValueError as e:
            notes.append(f"{path.parent.name} skipped: {e}")
            continue
        if saved.get("quick") or not saved.get("runs"):
            continue
        precision = precision or saved.get("precision")
        if saved.get("precision") != precision:
            notes.append(f"{path.parent.name} skipped: it ran in {saved.get('precision')}, the others in {precision}")
            continue
        cpu = saved.get("environment", {}).get("cpu", "not recorded")
        for r in saved["runs"]:
            if any((o["implementation"], o["seed"]) == (r["implementation"], r["seed"]) for o in rows):
                notes.append(f"{path.parent.name}: {r['implementation']} seed {r['seed']} counted once, from "
                             f"the earlier folder")
                continue
            rows.append({**r, "cpu": r.get("cpu", cpu), "folder": path.parent.name})
        folders.append(path.parent.name)
    by_name = {name: {r["seed"] for r in rows if r["implementation"] == name} for name in ("airbench94", KIT)}
    both = by_name["airbench94"] & by_name[KIT]
    rows = [r for r in rows if r["seed"] in both]  # an unpaired run (an interrupted comparison) waits for its pair
    if not rows:
        return {}
    cpus = [r["cpu"] for r in rows]
    main_cpu = max(set(cpus), key=cpus.count)
    result = _summary(rows, precision, False)
    timed = _summary([r for r in rows if r["cpu"] == main_cpu], precision, False)
    for name in result["summary"]:
        result["summary"][name]["seconds_mean"] = timed["summary"].get(name, {}).get("seconds_mean")
    result["speed_ratio"] = timed.get("speed_ratio")
    return {**result, "folders": folders, "cpus": sorted(set(cpus)), "seconds_cpu": main_cpu, "notes": notes}
