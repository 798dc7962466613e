"""`cifar-lab fast`: one run of the fast recipe (notebook 06) into a folder of its own; its test accuracy."""
from __future__ import annotations

import argparse
import os

from .. import plots
from ..data import CifarDataError
from ..evaluate import evaluate
from ..fast import fast_options, train_fast, tta_flops
from ..options import FAST, add_arguments
from . import course, muon, runs
from .course import RUN

COMMAND_RUN_OPTIONS = ("val_size", "data_dir", "output_dir", "quick")


def main(argv: list[str] | None = None) -> int:
    """`cifar-lab fast`: one run of the fast recipe into a folder of its own; its test accuracy."""

    os.environ.setdefault("MPLBACKEND", "Agg")
    p = argparse.ArgumentParser(prog="cifar-lab fast", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p.add_argument_group("the fast recipe (default: the full recipe)"), FAST)
    add_arguments(p.add_argument_group("run"), {k: RUN[k] for k in COMMAND_RUN_OPTIONS})
    p.add_argument("--device", help="cuda, mps or cpu (default: the best there is)")
    p.add_argument("--optimizer", choices=("sgd", "muon"), default="sgd",
                   help="sgd: airbench94's recipe; muon: its 2024 record (cifar_lab/kit/muon.py), batch 2,000, "
                   "8 epochs and no lookahead unless given")
    args = p.parse_args(argv)
    options = {k: getattr(args, k) for k in FAST if getattr(args, k) is not None}
    try:
        options = muon.muon_options(options) if args.optimizer == "muon" else options
    except ValueError as e:
        p.error(str(e))
    try:
        run = course.start("train_fast", {k: getattr(args, k) for k in COMMAND_RUN_OPTIONS + ("seed",)
                                          if getattr(args, k) is not None})
        print(run.banner, flush=True)
        if run.quick:
            options["epochs"] = min(options.get("epochs", FAST["epochs"].default), 1)
        try:  # whatever fails (training, testing, a full disk), the folder's record says how it ended
            model, history = train_fast(run.data, device=args.device, progress=False, **options,
                                        make_optimizer=muon.make_muon if args.optimizer == "muon" else None)
            tta = fast_options(**options)["tta"]
            result = evaluate(model, run.data, "test", tta=tta)
            pflops = (history.info["flops"] + tta_flops(history, len(run.data.test_labels), tta)) / 1e15
            history.save(run.path("history.csv"))
            plots.plt.close(plots.learning_curves(history, save=run.path("learning_curves.png")))
            run.record("fast", model, history, result, tta=tta, pflops=pflops, fast_options=history.info["params"],
                       optimizer=args.optimizer)
        except BaseException as e:
            runs.finish(run.output_dir, "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {e}")
            raise
        runs.finish(run.output_dir, "finished")
    except (ValueError, OSError, CifarDataError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        return 130
    print(f"test accuracy {result.accuracy:.2%} after {history.info['params']['epochs']:g} epochs "
          f"({sum(history.seconds):.0f} s training, {pflops:.3f} PFLOPs with testing); results in {run.output_dir}",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
