"""cifar_lab: the helper package of a CIFAR-10 image-classification course."""
__version__ = "0.1.0"

import warnings

# `python -m cifar_lab.train` runs train.py as a script after this package imported it as a module;
# that is intended (the script part only calls cifar_lab.job.main), so runpy's warning would only confuse
warnings.filterwarnings("ignore", message="'cifar_lab.train' found in sys.modules", category=RuntimeWarning)

from .checks import check_choice, check_data_dir, check_float, check_int, check_output_dir
from .data import (CIFAR10Data, CifarDataError, DeviceLoader, load_cifar10, make_fake_cifar10,
                   textbook_loaders)
from .evaluate import EvalResult, evaluate, predict
from .files import environment_info, load_json, save_json
from .models import count_parameters, flops_per_image, make_model
from .train import History, fit, get_device, load_checkpoint, save_checkpoint, set_seed

__all__ = ["CIFAR10Data", "CifarDataError", "DeviceLoader", "EvalResult", "History", "check_choice",
           "check_data_dir", "check_float", "check_int", "check_output_dir", "count_parameters",
           "environment_info", "evaluate", "fit", "flops_per_image", "get_device", "load_checkpoint",
           "load_cifar10", "load_json", "make_fake_cifar10", "make_model", "predict", "save_checkpoint",
           "save_json", "set_seed", "textbook_loaders"]
