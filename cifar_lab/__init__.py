"""cifar_lab: the helper package of a CIFAR-10 image-classification course.

The core a lesson calls (read it in an afternoon): data and loader, models, training (`fit`), optim,
evaluate, history, plots, the fast recipe and the named recipes, with the one table of options. The kit's
machinery (notebook runs, reports, sweeps, benchmarks, commands) lives apart in `cifar_lab.kit`; the
core never imports it.
"""
__version__ = "0.3.0"

from .checkpoints import load_checkpoint, save_checkpoint
from .data import CIFAR10Data, CifarDataError, load_cifar10
from .devices import get_device, set_seed
from .evaluate import EvalResult, evaluate, predict
from .fast import train_fast
from .files import load_json
from .history import History
from .loader import DeviceLoader
from .models import count_parameters, flops_per_image, layers, make_model
from .training import TrainingDiverged, TrainingInterrupted, fit

__all__ = ["CIFAR10Data", "CifarDataError", "DeviceLoader", "EvalResult", "History", "TrainingDiverged",
           "TrainingInterrupted", "count_parameters", "evaluate", "fit", "flops_per_image", "get_device", "layers",
           "load_checkpoint", "load_cifar10", "load_json", "make_model", "predict", "save_checkpoint", "set_seed",
           "train_fast"]
