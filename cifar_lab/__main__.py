"""`python -m cifar_lab COMMAND ...`: the same as the `cifar-lab` console script (see cifar_lab/kit/cli.py)."""
import sys

from cifar_lab.kit.cli import main

sys.exit(main())
