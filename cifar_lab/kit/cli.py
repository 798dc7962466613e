"""`cifar-lab COMMAND ...` (or `python -m cifar_lab COMMAND ...`): the kit's commands behind one entry.

    cifar-lab train --recipe cnn --epochs 20      one training run (a course or reference recipe)
    cifar-lab fast                                the fast recipe of notebook 06
    cifar-lab report                              run every notebook, export reports/*.html and index.html
    cifar-lab sweep --notebook 03_regularization --grid seed 0 1 2    one notebook over a grid
    cifar-lab bench                               the kit's loader and training step against the textbook's
    cifar-lab jpeg SRC DST                        a copy of the data, JPEG-compressed once more
    cifar-lab colab OWNER/REPO                    point the notebooks' Colab badges at your fork
    cifar-lab release                             the students' notebooks from the teacher's copies (nbgrader)

`cifar-lab COMMAND --help` lists each command's options; `python -m cifar_lab.kit.COMMAND` runs the same.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = ("train", "fast", "report", "sweep", "bench", "jpeg", "colab", "release")


def main(argv: list[str] | None = None) -> int:
    """Run the command named first in `argv` with the rest of it."""
    from ..options import did_you_mean

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"cifar-lab: unknown command {name!r}{did_you_mean(name, COMMANDS)}; commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    sys.argv = [f"cifar-lab {name}", *rest]  # argparse's usage line names the command as typed
    return importlib.import_module(f"cifar_lab.kit.{name}").main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
