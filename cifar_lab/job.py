"""One training run from the command line, on one device or data-parallel under torchrun.

    python -m cifar_lab.train --model cnn --epochs 20                 # one process, best device
    torchrun --nproc_per_node=2 -m cifar_lab.train --model cnn --epochs 5 --batch-size 128
    python -m cifar_lab.train --model mlp --quick                     # synthetic data, 1 epoch

The parameters are the notebooks' (papermill's `-p epochs 5` is `--epochs 5` here), with each model's
notebook defaults. `--batch-size` is images per optimisation step over all processes. Results go to
--output-dir: metrics.json (the notebooks' format), history.csv, figures and checkpoints/.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from . import distributed
from .checks import check_choice
from .models import MODELS

# each model's notebook recipe (01 for the MLP, 02 for the conv nets); command-line values override it
RECIPES = {"mlp": dict(optimizer="adamw", lr=0.002, weight_decay=0.05, crop_padding=0),
           "cnn": dict(optimizer="sgd", lr=0.05, weight_decay=5e-4, crop_padding=4)}
DEFAULT_RECIPE = RECIPES["cnn"]
# model options the command line knows, and the models that take them
MODEL_OPTIONS = {"hidden": ("mlp",), "dropout": ("mlp",), "batchnorm": ("mlp", "cnn"), "widths": ("cnn",),
                 "convs_per_block": ("cnn",), "fc_dropout": ("cnn",), "conv_dropout": ("cnn",),
                 "pretrained": ("torchvision_resnet18",)}


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m cifar_lab.train` (dashes or underscores, as in the notebooks)."""
    p = argparse.ArgumentParser(prog="python -m cifar_lab.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    def arg(name: str, **kw) -> None:
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        p.add_argument(*sorted(flags, key=len), dest=name, **kw)

    arg("model", default="cnn", help=f"one of {', '.join(MODELS)} (default cnn)")
    arg("epochs", type=int, default=20, help="passes over the training split (default 20)")
    arg("batch_size", type=int, default=128, help="images per optimisation step, all processes together (128)")
    arg("lr", type=float, help="peak learning rate (default: 0.002 for mlp, 0.05 otherwise)")
    arg("optimizer", help="sgd, adam or adamw (default: adamw for mlp, sgd otherwise)")
    arg("weight_decay", type=float, help="default: 0.05 for mlp (AdamW), 5e-4 otherwise")
    arg("label_smoothing", type=float, default=0.1, help="(default 0.1)")
    arg("scheduler", default="onecycle", help="onecycle, cosine, step, plateau or none (default onecycle)")
    arg("crop_padding", type=int, help="random-crop padding in pixels (default: 0 for mlp, 4 otherwise)")
    arg("flip", action=argparse.BooleanOptionalAction, default=True, help="random horizontal flip")
    arg("cutout", type=int, default=0, help="side of a random erased square, pixels (0: off)")
    arg("patience", type=int, help="early stopping after this many epochs without improvement (default off)")
    arg("ema", type=float, help="decay of a moving average of the weights, e.g. 0.99 (default off)")
    arg("tta", action=argparse.BooleanOptionalAction, default=None,
        help="average test predictions with mirrored images (default: on for conv nets)")
    for name, kind in (("hidden", str), ("dropout", float), ("widths", str), ("convs_per_block", int),
                       ("fc_dropout", float), ("conv_dropout", float)):
        arg(name, type=kind, help=f"model option for {', '.join(MODEL_OPTIONS[name])}")
    arg("batchnorm", action=argparse.BooleanOptionalAction, default=None, help="model option for mlp, cnn")
    arg("pretrained", action=argparse.BooleanOptionalAction, default=None, help="ImageNet weights (torchvision_resnet18)")
    arg("seed", type=int, default=0, help="seeds the split, initial weights, batch order and augmentation")
    arg("val_size", type=int, default=5000, help="training images held out for validation (default 5000)")
    arg("data_dir", help="folder holding cifar-10-batches-py/ (default: $CIFAR_LAB_DATA, else data/ of the checkout)")
    arg("output_dir", help="results folder (default: runs/MODEL_DATE-TIME)")
    arg("resume", action="store_true", help="continue the run in --output-dir from its checkpoints/last.pt")
    arg("quick", action=argparse.BooleanOptionalAction, default=False,
        help="tiny synthetic data and 1 epoch: checks that everything runs")
    arg("device", help="cuda, mps or cpu (default: the best there is; torchrun: each rank's GPU, or the CPU)")
    return p


def model_options(args: argparse.Namespace) -> dict:
    """The model options given on the command line, checked against the model."""
    from .course import parse_widths

    options = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
    for name in options:
        if args.model not in MODEL_OPTIONS[name]:
            raise ValueError(f"--{name} applies to {', '.join(MODEL_OPTIONS[name])}, not to {args.model}")
    for name, count in (("hidden", 2), ("widths", 3)):
        if name in options:
            options[name] = parse_widths(name, options[name], count)
    return options


def fit_options(args: argparse.Namespace) -> dict:
    """`fit`'s keyword arguments: the model's recipe, overridden by what the command line gives."""
    given = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                 weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, scheduler=args.scheduler,
                 crop_padding=args.crop_padding, flip=args.flip, cutout=args.cutout, early_stopping=args.patience,
                 ema=args.ema, seed=args.seed)
    recipe = RECIPES.get(args.model, DEFAULT_RECIPE)
    return {**given, **{k: v for k, v in recipe.items() if given[k] is None}}


def run_training(args: argparse.Namespace) -> dict:
    """Check, load, build, `fit`, test; rank 0 writes the results. Returns the metrics of the model."""
    from . import course, plots
    from .evaluate import evaluate
    from .models import make_model
    from .train import fit

    # 1. parameters (the notebooks' checks and messages), one output folder for all ranks
    args.model = check_choice("model", args.model, MODELS)
    options, fit_kw = model_options(args), fit_options(args)
    output_dir = args.output_dir or f"runs/{args.model}_{time.strftime('%Y%m%d-%H%M%S')}"
    output_dir = distributed.broadcast_object(output_dir)  # rank 0's clock names the folder
    finished = Path(output_dir) / "metrics.json"
    if finished.exists() and not args.resume:
        raise ValueError(f"{output_dir} already holds a finished run ({finished.name}); choose another "
                         f"--output-dir, or delete it to run again")
    checked = {k: v for k, v in {**fit_kw, **options}.items() if k not in ("hidden", "widths")}
    if distributed.local_rank() != 0:
        distributed.barrier()  # let each machine's first rank download the data alone
    run = course.start(f"train_{args.model}", {**checked, "quick": args.quick, "data_dir": args.data_dir,
                                               "val_size": args.val_size, "output_dir": output_dir})
    if distributed.local_rank() == 0:
        distributed.barrier()
    fit_kw["epochs"] = run.params["epochs"]  # quick mode caps it
    tta = args.tta if args.tta is not None else args.model != "mlp"
    if distributed.is_main():
        print(run.banner, flush=True)

    # 2. model (ResNet-9's whitening layer is set from training images, the same on every rank)
    model = make_model(args.model, **options)
    if args.model == "resnet9":
        model.whiten(next(iter(run.data.loader("train", batch_size=5000, crop_padding=0, flip=False)))[0])
    last = run.path("checkpoints") / "last.pt"
    history = fit(model, run.data, **fit_kw, checkpoint_dir=run.path("checkpoints"), device=args.device,
                  resume=last if args.resume and last.exists() else None)
    if history.info["status"].startswith("interrupted"):  # unfinished: no metrics.json, checkpoints kept
        if distributed.is_main():
            print(f"Not finished: to continue, run the same command with --resume --output-dir {run.output_dir}")
        raise KeyboardInterrupt

    # 3. test on every rank (they hold one model, so they must agree), rank 0 writes
    result = evaluate(model, run.data, "test", tta=tta)
    by_rank = distributed.all_gather_object(result.accuracy)
    if not distributed.is_main():
        return {}
    history.save(run.path("history.csv"))
    for fig in (plots.learning_curves(history, save=run.path("learning_curves.png")),
                plots.confusion_matrix(result, save=run.path("confusion_matrix.png"))):
        plots.plt.close(fig)  # saved; a command line shows no window
    metrics = run.record(args.model, model, history, result, tta=tta, processes=distributed.world_size(),
                         test_acc_by_rank=by_rank, model_options=options, fit_options=fit_kw)
    if len(set(by_rank)) > 1:
        print(f"WARNING: the processes disagree on the test accuracy ({by_rank}); please report this")
    print(f"test accuracy {result.accuracy:.2%} after {len(history)} epochs "
          f"({metrics['train_seconds']:.0f} s training); results in {run.output_dir}", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cifar_lab.train` and `torchrun ... -m cifar_lab.train`."""
    from torch.distributed.elastic.multiprocessing.errors import record

    os.environ.setdefault("MPLBACKEND", "Agg")  # figures to files, no window
    args = parser().parse_args(argv)

    def run() -> None:
        distributed.init_distributed()
        try:
            run_training(args)
        finally:
            distributed.close_distributed()

    if "TORCHELASTIC_ERROR_FILE" in os.environ:  # under torchrun: the launcher reports a failing rank's traceback
        run = record(run)
    try:
        run()
    except ValueError as e:  # a bad parameter: the message is enough, no traceback
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        return 130  # the shell's code for an interrupted command
    return 0
