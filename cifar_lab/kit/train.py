"""One training run from the command line, on one device or data-parallel under torchrun.

    cifar-lab train --model cnn --epochs 20                 # one process, best device
    torchrun --nproc_per_node=2 -m cifar_lab.kit.train --model cnn --epochs 5 --batch-size 128
    cifar-lab train --model mlp --quick                     # synthetic data, 1 epoch
    cifar-lab train --recipe 001 --epochs 50                # a reference report's recipe

Each model trains with its recipe (the notebooks' settings); a flag overrides one option.
`--batch-size` is images per optimisation step over all processes. Results go to a folder of their own
(--output-dir, new or empty; default runs/MODEL_DATE-TIME): metrics.json (the notebooks' format),
history.csv, figures and checkpoints/. A finished run is never overwritten; an interrupted one is
continued with --resume and the same parameters.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import distributed, plots
from . import course, runs
from ..evaluate import evaluate
from ..options import MODEL, MODEL_USERS, TRAINING, add_arguments
from .course import RUN
from ..recipes import RECIPES, build_model, get_recipe, training_options
from ..data import CifarDataError
from ..training import fit

COMMAND_RUN_OPTIONS = ("val_size", "train_size", "normalization", "tta", "data_dir", "output_dir", "quick")


def parser() -> argparse.ArgumentParser:
    """The command line of `cifar-lab train`, generated from the option tables."""
    p = argparse.ArgumentParser(prog="cifar-lab train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", "--model", dest="model", default="cnn", metavar="ID",
                   help="a recipe (default cnn): " + "; ".join(f"{k} ({r.source})" for k, r in RECIPES.items()))
    add_arguments(p.add_argument_group("training options (default: the model's recipe)"), TRAINING)
    add_arguments(p.add_argument_group("model options"), MODEL)
    add_arguments(p.add_argument_group("run"), {k: RUN[k] for k in COMMAND_RUN_OPTIONS})
    p.add_argument("--resume", action="store_true", help="continue the unfinished run in --output-dir")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best there is; torchrun: each rank's GPU)")
    return p


def plan(args: argparse.Namespace) -> tuple:
    """(recipe, training options, model options, run parameters) from the command line, all checked."""
    recipe = get_recipe(args.model)
    given = {k: getattr(args, k) for k in TRAINING}
    options = {k: getattr(args, k) for k in MODEL if getattr(args, k) is not None}
    for name in options:
        if recipe.model not in MODEL_USERS[name] and name not in recipe.model_options:
            raise ValueError(f"--{name.replace('_', '-')} applies to {', '.join(MODEL_USERS[name])}, "
                             f"not to {args.model}")
    run = {k: getattr(args, k) for k in COMMAND_RUN_OPTIONS if getattr(args, k) is not None}
    return recipe, training_options(recipe, **given), options, run


def run_training(args: argparse.Namespace) -> dict:
    """Claim the folder, load, build, `fit`, test; rank 0 writes. Returns the model's metrics."""
    recipe, fit_kw, model_options, run_params = plan(args)
    notebook = f"train_{args.model}"
    if distributed.local_rank() != 0:
        distributed.barrier()  # each machine's first rank loads (downloads) the data alone
    run = course.start(notebook, {**fit_kw, **model_options, **run_params}, args.model, resume=args.resume,
                       claim=distributed.is_main())
    try:
        if distributed.local_rank() == 0:
            distributed.barrier()
        run.output_dir = distributed.broadcast_object(run.output_dir)  # rank 0 named the folder
        if distributed.is_main():
            print(run.banner, flush=True)
        fit_kw = {k: run.params[k] for k in TRAINING}  # quick mode caps epochs
        model = build_model(recipe, run.data, **model_options)
        last = run.path("checkpoints") / "last.pt"
        try:
            history = fit(model, run.data, **fit_kw, checkpoint_dir=run.path("checkpoints"), device=args.device,
                          resume=last if args.resume else None,
                          progress=sys.stderr.isatty())  # a bar on a terminal; one line per epoch in a log
        except BaseException as e:  # the folder stays an unfinished run, to continue with --resume
            if distributed.is_main():
                runs.finish(run.output_dir, "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {e}")
                if last.exists() and not isinstance(e, ValueError):  # a ValueError (bad checkpoint) says itself
                    print(f"Not finished: to continue, run the same command with --resume --output-dir {run.output_dir}")
            raise

        # every rank tests (they hold one model, so they must agree); rank 0 writes
        tta = run.params.get("tta")
        tta = recipe.tta if tta is None else tta
        result = evaluate(model, run.data, "test", tta=tta)
        by_rank = distributed.all_gather_object(result.accuracy)
        if not distributed.is_main():
            return {}
        history.save(run.path("history.csv"))
        for fig in (plots.learning_curves(history, save=run.path("learning_curves.png")),
                    plots.confusion_matrix(result, save=run.path("confusion_matrix.png"))):
            plots.plt.close(fig)  # saved; a command line shows no window
        metrics = run.record(args.model, model, history, result, tta=tta, processes=distributed.world_size(),
                             test_acc_by_rank=by_rank, model_options=model_options, fit_options=fit_kw)
        runs.finish(run.output_dir, "finished")
        if len(set(by_rank)) > 1:
            print(f"WARNING: the processes disagree on the test accuracy ({by_rank}); please report this")
        print(f"test accuracy {result.accuracy:.2%} after {len(history)} epochs "
              f"({metrics['train_seconds']:.0f} s training); results in {run.output_dir}", flush=True)
        return metrics
    except BaseException as e:  # whatever failed (a model's weights, a full disk...), the record says so
        if distributed.is_main() and run.output_dir is not None and \
                (runs.read(run.output_dir) or {}).get("status") == "running":
            runs.finish(run.output_dir, "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {e}")
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cifar-lab train` and `torchrun ... -m cifar_lab.kit.train`."""
    from torch.distributed.elastic.multiprocessing.errors import record

    os.environ.setdefault("MPLBACKEND", "Agg")  # figures to files, no window
    args = parser().parse_args(argv)

    def go() -> None:
        distributed.init_distributed()
        try:
            run_training(args)
        finally:
            distributed.close_distributed()

    if "TORCHELASTIC_ERROR_FILE" in os.environ:  # under torchrun: the launcher reports a failing rank's traceback
        go = record(go)
    try:
        go()
    except (ValueError, OSError, CifarDataError) as e:  # a bad parameter, folder or file, a full disk
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        return 130  # the shell's code for an interrupted command
    return 0


if __name__ == "__main__":
    sys.exit(main())
