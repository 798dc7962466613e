"""Benchmark: the textbook pipeline vs cifar_lab's, same machine, same process, same models.

    cifar-lab bench --json bench.json

Measures images/s of the data pipeline alone and of full training steps (forward, backward,
optimizer) for each model, the model FLOPs per image, and the achieved training FLOP/s as a
fraction of this machine's dense fp32 matmul peak, measured in the same run. With --target 0.9,
also time-to-accuracy: the seconds and FLOPs the 02 CNN (its recipe) and the fast recipe take to
reach that validation accuracy, trained one after the other in this process. Uses the real
CIFAR-10 files when they are in the data folder, else a synthetic set of the same format.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn

from .. import devices
from ..data import META_FILE, TRAIN_FILES, CifarDataError, channel_stats, find_cifar10, load_cifar10, read_batch, \
    read_classes, split_indices
from .fake import make_fake_cifar10
from ..files import environment_info, save_json
from ..models import flops_per_image, make_model
from ..optim import make_optimizer
from ..options import TRAINING, add_arguments, default, defaults
from ..fast import fast_options
from ..training import train_step

if TYPE_CHECKING:
    from ..data import CIFAR10Data


def matmul_peak(n: int = 2048, repeats: int = 10, device: torch.device = torch.device("cpu"),
                dtype: torch.dtype = torch.float32) -> float:
    """Best dense matmul FLOP/s of a few timed n x n products."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    devices.synchronize(device)  # the inputs are made before the clock starts
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        devices.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def images_per_second(batches, steps: int, warmup: int, step=None,
                      device: torch.device = torch.device("cpu")) -> float:
    """Images/s over `steps` batches after `warmup` untimed ones; `step(images, labels)` runs on each."""
    it = iter(batches)
    for _ in range(warmup):
        x, y = next(it)
        if step:
            step(x, y)
    devices.synchronize(device)  # the warm-up's queued work is not timed
    seen, t0 = 0, time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        if step:
            step(x, y)
        seen += len(y)
    devices.synchronize(device)
    return seen / (time.perf_counter() - t0)


def forever(loader):
    while True:
        yield from loader


def textbook_step(model: nn.Module, device: torch.device):
    """A training step as course material writes it: NCHW, plain SGD, `.item()` on every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    running = [0.0]

    def step(x, y):
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        running[0] += loss.item()
    return step


def lab_step(model: nn.Module, device: torch.device):
    """cifar_lab's training step, `fit`'s own `train_step`: channels_last, bf16 where native, foreach SGD."""
    opt = make_optimizer(model, {**defaults(), "lr": 0.01})
    loss_fn = nn.CrossEntropyLoss()
    precision = devices.precision_for(device)
    autocast, scaler = devices.autocast(device, precision), devices.grad_scaler(device, precision)
    return lambda x, y: train_step(model, x, y, loss_fn, opt, autocast, scaler)


def textbook_loaders(data_dir: str | Path | None = None, batch_size: int = default("batch_size"),
                     num_workers: int = 2, val_size: int = default("val_size"), seed: int = default("seed"),
                     download: bool = True):
    """The usual course-material path: torchvision `CIFAR10` + PIL transforms + `DataLoader`.

    Returns (train_loader, val_loader, test_loader). The files are checked by content
    (as in `load_cifar10`) instead of by md5, so that an equivalent copy loads too.
    """
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import CIFAR10

    folder = find_cifar10(data_dir, download=download)
    classes = read_classes(folder / META_FILE)
    batches = [read_batch(folder / n, len(classes)) for n in TRAIN_FILES]
    train_idx, val_idx = split_indices(sum(len(y) for _, y in batches), val_size, seed)
    mean, std = channel_stats(torch.cat([x for x, _ in batches])[train_idx])

    class ContentCheckedCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:  # read_batch above checked the content already
            return True

        def _load_meta(self) -> None:
            self.classes = classes
            self.class_to_idx = {c: i for i, c in enumerate(classes)}

    normalise = transforms.Normalize(mean.tolist(), std.tolist())
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalise])
    eval_tf = transforms.Compose([transforms.ToTensor(), normalise])
    root = str(folder.parent)
    train_set = Subset(ContentCheckedCIFAR10(root, train=True, transform=train_tf), train_idx.tolist())
    val_set = Subset(ContentCheckedCIFAR10(root, train=True, transform=eval_tf), val_idx.tolist())
    test_set = ContentCheckedCIFAR10(root, train=False, transform=eval_tf)
    kw = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    return (DataLoader(train_set, shuffle=True, drop_last=True, **kw),
            DataLoader(val_set, shuffle=False, **kw), DataLoader(test_set, shuffle=False, **kw))


def bench_data(data_dir=None, quick: bool = False):
    """The real CIFAR-10 files if they are in the data folder (45,000/5,000 split), else a synthetic set."""
    try:
        folder = find_cifar10(data_dir, download=False)
    except CifarDataError:
        tmp = Path(tempfile.mkdtemp(prefix="cifar_lab_bench_"))
        folder = make_fake_cifar10(tmp, train_per_batch=200 if quick else 2000, test_size=100)
    return load_cifar10(folder.parent, val_size=100 if quick else default("val_size"), download=False)


def run(data_dir=None, models=("mlp", "cnn", "resnet9", "fastnet"), batch_size: int = default("batch_size"),
        pipeline_steps: int = 60, train_steps: int = 25, rounds: int = 2, quick: bool = False, verbose: bool = True) -> dict:
    """Run every measurement and return the results (see module docstring)."""
    say = print if verbose else (lambda *a, **k: None)
    device = devices.get_device()
    devices.configure(device)  # cudnn.benchmark as `fit` sets it
    try:
        folder, source = find_cifar10(data_dir, download=False), "CIFAR-10 files in the data folder"
    except CifarDataError:
        tmp = Path(tempfile.mkdtemp(prefix="cifar_lab_bench_"))
        per_batch = 200 if quick else 2000
        folder, source = make_fake_cifar10(tmp, train_per_batch=per_batch, test_size=100), "synthetic set"
    say(f"device {device}, {torch.get_num_threads()} threads; data: {source} ({folder})")
    val_size = 100 if quick else 5000
    data = load_cifar10(folder.parent, val_size=val_size, download=False)
    workers = 0 if quick else 2
    tb_train, _, _ = textbook_loaders(folder.parent, batch_size, num_workers=workers, val_size=val_size,
                                      download=False)
    layout = devices.use_channels_last(device.type, has_conv=True)
    lab_train = data.loader("train", batch_size, device=device, channels_last=layout)
    warm = 1 if quick else 3

    peak = matmul_peak(512 if quick else 2048, 3 if quick else 10, device)
    bf16 = devices.precision_for(device) == "bf16"
    peak_bf16 = matmul_peak(512 if quick else 2048, 3 if quick else 10, device, torch.bfloat16) if bf16 else None
    say(f"dense matmul peak: fp32 {peak / 1e9:.1f} GFLOP/s" + (f", bf16 {peak_bf16 / 1e9:.1f} GFLOP/s" if bf16 else ""))
    result = {"device": str(device), "data": source, "batch_size": batch_size, "matmul_peak_flops": peak,
              "matmul_peak_flops_bf16": peak_bf16, "cifar_lab_bf16": bf16,
              "environment": environment_info(), "pipeline": {}, "train": {}, "train_speedup": {},
              "peak_fraction": {}, "flops_per_image": {}}

    # 1. the data pipeline alone, interleaved rounds, best of each
    tb, lab = 0.0, 0.0
    for _ in range(rounds):
        tb = max(tb, images_per_second(forever(tb_train), pipeline_steps, warm, device=device))
        lab = max(lab, images_per_second(forever(lab_train), pipeline_steps, warm, device=device))
    result["pipeline"] = {"textbook": tb, "cifar_lab": lab}
    result["pipeline_speedup"] = lab / tb
    say(f"data pipeline: textbook {tb:,.0f} img/s, cifar_lab {lab:,.0f} img/s -> {lab / tb:.1f}x")

    # 2. full training steps per model
    for name in models:
        devices.set_seed(0)
        plain = make_model(name).to(device)
        fast = make_model(name).to(device, memory_format=torch.channels_last if layout else torch.preserve_format)
        flops = 3 * flops_per_image(plain)  # forward + backward (about twice the forward)
        tb_step, lab_step_fn = textbook_step(plain, device), lab_step(fast, device)
        tb, lab = 0.0, 0.0
        for _ in range(rounds):
            tb = max(tb, images_per_second(forever(tb_train), train_steps, warm, tb_step, device))
            lab = max(lab, images_per_second(forever(lab_train), train_steps, warm, lab_step_fn, device))
        result["train"][name] = {"textbook": tb, "cifar_lab": lab}
        result["train_speedup"][name] = lab / tb
        result["flops_per_image"][name] = flops
        result["peak_fraction"][name] = lab * flops / peak  # against the fp32 peak, as the issue defines it
        if bf16:
            result.setdefault("peak_fraction_bf16", {})[name] = lab * flops / peak_bf16
        # in the precision the kit trains in: the fraction that says how much of this machine a step uses
        result.setdefault("peak_fraction_training_precision", {})[name] = lab * flops / (peak_bf16 or peak)
        result.setdefault("textbook_peak_fraction", {})[name] = tb * flops / peak
        say(f"{name:8s} training: textbook {tb:,.0f} img/s, cifar_lab {lab:,.0f} img/s -> {lab / tb:.2f}x; "
            f"{flops / 1e6:.0f} MFLOP/img, {lab * flops / peak:.0%} of matmul peak "
            f"(textbook {tb * flops / peak:.0%})" + (f"; {lab * flops / peak_bf16:.0%} of the bf16 peak" if bf16 else ""))

    # 3. FastNet as the fast recipe steps it (batch 1,024), against a peak re-measured beside each round
    if "fastnet" in models:
        step, batches = fast_recipe_step(data, device, layout)
        flops, best, best_peak = result["flops_per_image"]["fastnet"], 0.0, 0.0
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(devices.precision_for(device), torch.float32)
        for _ in range(rounds):
            best_peak = max(best_peak, matmul_peak(512 if quick else 2048, 3 if quick else 10, device, dtype))
            best = max(best, images_per_second(batches, 2 if quick else 8, 1, step, device))
        shares = time_by_op_kind(step, batches, 1 if quick else 2) if device.type == "cpu" else {}
        batch = min(fast_options()["batch_size"], len(data.train_labels))
        result["fast_recipe_step"] = {"batch_size": batch, "images_per_second": best, "peak_flops": best_peak,
                                      "peak_fraction": best * flops / best_peak, "time_by_op_kind": shares}
        say(f"fastnet as the fast recipe steps it (batch {batch:,}): {best:,.0f} img/s, {best * flops / best_peak:.0%} "
            f"of the {str(dtype).removeprefix('torch.')} peak ({best_peak / 1e9:.0f} GFLOP/s, best of {rounds} beside it)"
            + ("; time: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) if shares else ""))
    return result


OP_KINDS = {"convolution": ("conv",), "max-pool": ("max_pool",), "BatchNorm": ("batch_norm",),
            "activation": ("gelu", "relu"), "zero-fill": ("fill_", "zero_")}  # by aten op name


def fast_recipe_step(data: "CIFAR10Data", device: torch.device, layout: bool) -> tuple[Callable, Iterator]:
    """FastNet's training step as the fast recipe takes it: its batch, summed smoothed loss and SGD (without
    the schedule, lookahead or alternating flips, which cost little per step).

    Returns (step, batches): `step(images, labels)` and an endless iterator of the recipe's batches.
    """
    from ..fast import make_fastnet, make_sgd

    opt = fast_options()
    model = make_fastnet(data, opt, device).to(memory_format=torch.channels_last if layout else torch.preserve_format)
    sgd = make_sgd(model, opt)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=opt["label_smoothing"], reduction="sum")
    precision = devices.precision_for(device)
    autocast, scaler = devices.autocast(device, precision), devices.grad_scaler(device, precision)
    loader = data.loader("train", min(opt["batch_size"], len(data.train_labels)), crop_padding=opt["translate"], padding_mode="reflect", flip=True,
                         device=device, channels_last=layout)
    return (lambda x, y: train_step(model, x, y, loss_fn, sgd, autocast, scaler)), forever(loader)


def time_by_op_kind(step: Callable, batches: Iterator, steps: int = 2) -> dict[str, float]:
    """Share of a training step's CPU time per kind of operation (`OP_KINDS`, the rest "other"), by the profiler."""
    from torch.profiler import ProfilerActivity, profile

    step(*next(batches))  # warm-up: first-call allocations are not the step's cost
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(*next(batches))
    times = {kind: 0.0 for kind in [*OP_KINDS, "other"]}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # autograd and Python frames: their time is their aten ops' (self time counts once)
        kind = next((k for k, names in OP_KINDS.items() if any(n in event.key for n in names)), "other")
        times[kind] += event.self_cpu_time_total
    total = sum(times.values()) or 1.0
    return {kind: t / total for kind, t in times.items()}


def time_to_accuracy(data, target: float, cnn_epochs: int = 20, fast_epochs: float = 10.0,
                     verbose: bool = True) -> dict:
    """Seconds and FLOPs (training plus validation) to reach `target` validation accuracy, 02's CNN vs the fast recipe."""
    from ..fast import first_reaching, fast_flops, fit_flops, train_fast
    from ..recipes import build_model, get_recipe, training_options
    from ..training import fit

    recipe = get_recipe("cnn")
    devices.set_seed(0)
    model = build_model(recipe, data)
    cnn = fit(model, data, **training_options(recipe, epochs=cnn_epochs), progress=False, verbose=verbose)
    cnn_flops = fit_flops(cnn, flops_per_image(model), len(data.train_labels), len(data.val_labels))
    _, fast = train_fast(data, epochs=fast_epochs, progress=False, verbose=verbose)
    return {"target": target, "cnn": first_reaching(cnn, target, cnn_flops),
            "fast": first_reaching(fast, target, fast_flops(fast))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--models", default="mlp,cnn,resnet9,fastnet", help="comma-separated model names")
    add_arguments(parser, {"batch_size": TRAINING["batch_size"]})  # the training option, checked the same way
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats; the best of each counts")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--target", type=float, default=None,
                        help="also measure time-to-accuracy: seconds and FLOPs to this validation accuracy (0..1)")
    parser.add_argument("--cnn-epochs", type=int, default=20, help="time-to-accuracy: most epochs of the 02 CNN")
    parser.add_argument("--fast-epochs", type=float, default=10.0, help="time-to-accuracy: the fast recipe's epochs")
    parser.add_argument("--versus", choices=["airbench"], help="train airbench94's own code beside the fast recipe "
                        "(pip install -e '.[bench]'), interleaved over --seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="--versus: the seeds of each")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                        help="--versus: both train in this precision (default: bf16 where the CPU has it natively, "
                             "else fp32, as the kit trains)")
    parser.add_argument("--resume", action="store_true", help="--versus: go on with an interrupted comparison in "
                        "--output-dir, keeping its finished runs")
    parser.add_argument("--output-dir", default=None, help="--versus: results folder, new or empty "
                        "(default runs/versus_airbench_DATE-TIME)")
    args = parser.parse_args(argv)
    if args.versus:
        return _versus(args, parser)
    if args.target is not None and not 0 < args.target <= 1:
        parser.error(f"--target must be a validation accuracy in (0, 1], like 0.9, got {args.target}")
    kwargs = dict(pipeline_steps=3, train_steps=2, rounds=1) if args.quick else dict(rounds=args.rounds)
    batch_size = args.batch_size or default("batch_size")
    result = run(args.data_dir, tuple(m.strip() for m in args.models.split(",")), batch_size,
                 quick=args.quick, **kwargs)
    if args.target is not None:
        result["time_to_accuracy"] = reach = time_to_accuracy(
            bench_data(args.data_dir, args.quick), args.target, 1 if args.quick else args.cnn_epochs,
            0.5 if args.quick else args.fast_epochs)
        for name, r in (("02 CNN", reach["cnn"]), ("fast recipe", reach["fast"])):
            print(f"{name}: {'reached' if r['reached'] else 'did not reach'} {args.target:.1%} validation accuracy "
                  f"{'at epoch ' + str(r['epoch']) if r['reached'] else '(best ' + format(r['val_acc'], '.1%') + ')'}"
                  f" after {r['seconds']:.0f} s and {r['flops'] / 1e15:.3f} PFLOPs")
    if args.json:
        print(f"wrote {save_json(result, args.json)}")
    return 0


def _versus(args, parser) -> int:
    """`cifar-lab bench --versus airbench`: both implementations into a folder of their own."""
    import importlib.util
    import tempfile
    from . import runs, versus

    if importlib.util.find_spec("airbench") is None:
        parser.error("airbench is not installed: pip install -e '.[bench]' (or pip install airbench)")
    args.precision = args.precision or ("bf16" if devices.cpu_has_native_bf16() else "fp32")
    folder = Path(args.output_dir) if args.output_dir else runs.new_folder("runs", "versus_airbench")
    params, done = {"seeds": args.seeds, "quick": args.quick, "data_dir": args.data_dir}, []
    try:
        if args.resume:  # an interrupted comparison: keep its finished runs, train the others
            done = versus.resumable(folder, args.precision, args.quick)
        runs.claim(folder, params, "bench", resume=args.resume, hold=False)
    except ValueError as e:
        parser.error(str(e))
    environment = environment_info()
    elsewhere = sorted({r.get("cpu", "not recorded") for r in done} - {environment["cpu"]})
    if elsewhere:  # a resumed comparison: its accuracies pool, its seconds compare only within one machine
        print(f"note: finished runs here ran on another CPU ({', '.join(elsewhere)}); compare their seconds only "
              f"with runs of the same CPU (each run's row names its CPU)")

    def save(result: dict) -> None:  # after every run: an interrupted comparison keeps what it finished
        for row in result["runs"]:
            row.setdefault("cpu", environment["cpu"])  # a resumed comparison may span machines
        save_json({**result, "environment": environment}, folder / "results.json")

    try:
        with tempfile.TemporaryDirectory(prefix="airbench_data_") as scratch:  # no data copy among results
            result = versus.versus(args.data_dir, Path(scratch), args.seeds, args.precision, quick=args.quick,
                                   save=save, done=done)
    except BaseException:
        runs.finish(folder, "interrupted")
        print(f"interrupted: the finished runs are in {folder / 'results.json'}; the same command with --resume "
              f"trains the others")
        raise
    runs.finish(folder, "finished")
    for name, s in result["summary"].items():
        spread = f" ± {s['test_acc_std']:.2%}" if s["test_acc_std"] is not None else " (one seed)"
        print(f"{name}: {s['test_acc_mean']:.2%}{spread} (n = {s['n']}), {s['seconds_mean']:,.0f} s, "
              f"{s['pflops']:.3f} PFLOPs")
    print(f"ratios, kit over airbench: accuracy {result['accuracy_ratio']:.4f}, speed {result['speed_ratio']:.2f}; "
          f"results in {folder / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
