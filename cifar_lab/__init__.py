"""cifar_lab: the helper package of a CIFAR-10 image-classification course."""
__version__ = "0.2.0"

from .checkpoints import load_checkpoint, save_checkpoint
from .checks import check_choice, check_data_dir, check_float, check_int, check_output_dir
from .data import CIFAR10Data, CifarDataError, load_cifar10
from .devices import get_device, set_seed
from .evaluate import EvalResult, evaluate, predict
from .fake import make_fake_cifar10
from .fast import train_fast
from .files import environment_info, load_json, save_json
from .history import History
from .loader import DeviceLoader
from .models import count_parameters, flops_per_image, make_model
from .training import TrainingDiverged, TrainingInterrupted, fit

__all__ = ["CIFAR10Data", "CifarDataError", "DeviceLoader", "EvalResult", "History", "TrainingDiverged",
           "TrainingInterrupted", "check_choice", "check_data_dir", "check_float", "check_int", "check_output_dir",
           "count_parameters", "environment_info", "evaluate", "fit", "flops_per_image", "get_device",
           "load_checkpoint", "load_cifar10", "load_json", "make_fake_cifar10", "make_model", "predict",
           "save_checkpoint", "save_json", "set_seed", "train_fast"]
