"""Which device, and what each device gets: precision, memory layout, process-group backend.

The decisions are pure functions of the device type, the CUDA compute capability and the torch version, so
they are tested without the hardware; `precision_for`, `describe` and `cpu_has_native_bf16` read the machine.
"""
from __future__ import annotations

import contextlib
import platform
import random
import re
import shutil
import warnings

import numpy as np
import torch

from .options import check_value

PRECISIONS = ("bf16", "fp16", "fp32")

# What each device gets, for the README; tests/test_devices.py checks it against the functions below.
DEVICE_TABLE = [
    dict(device="CUDA, compute capability 8.0 and up (A100, H100, RTX 30xx/40xx)", precision="bf16",
         channels_last=True,
         notes="bfloat16 autocast, no loss scaling needed; cudnn.benchmark on (off for deterministic algorithms)"),
    dict(device="CUDA, compute capability 7.x (V100, T4, RTX 20xx)", precision="fp16",
         channels_last=True, notes="float16 autocast with a GradScaler (bfloat16 is not native before 8.0)"),
    dict(device="CUDA, compute capability below 7.0 (P100, GTX 10xx)", precision="fp32",
         channels_last=True, notes="no tensor cores: float32"),
    dict(device="CPU with AVX512-BF16 or AMX", precision="bf16",
         channels_last=True, notes="bfloat16 autocast through oneDNN"),
    dict(device="other CPUs", precision="fp32",
         channels_last=True, notes="float32 (bfloat16 would be emulated, and slower)"),
    dict(device="Apple MPS", precision="fp32", channels_last=False,
         notes="float32, and float32 metric sums (no float64 on MPS); channels_last off (slow conv backward)"),
]


# ---------------------------------------------------------------- seeding and device choice

def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def get_device(prefer: str | None = None, strict: bool = False) -> torch.device:
    """CUDA if there, else Apple MPS, else CPU; `prefer` asks for one ('cuda', 'mps', 'cpu').

    A preferred device that is missing falls back (with a warning), or raises if `strict`.
    """
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                 "cpu": True}
    if prefer is not None:
        name = check_value("device", str(prefer).split(":")[0], str, choices=tuple(available))
        if available[name]:
            return torch.device(prefer)
        message = f"device {prefer!r} was asked for but is not available on this machine"
        if strict:
            raise RuntimeError(message)
        warnings.warn(message + "; falling back to the best available device", stacklevel=2)
    return torch.device(next(n for n in ("cuda", "mps", "cpu") if available[n]))


# ---------------------------------------------------------------- precision

def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.5.1+cu121' or '2.6.0a0+git1234'."""
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def choose_precision(device_type: str, capability: tuple[int, int] | None = None, cpu_bf16: bool = False,
                     torch_version: str = torch.__version__) -> str:
    """'bf16', 'fp16' or 'fp32': the autocast precision a device type (and CUDA capability) should train in."""
    if _version(torch_version) < (1, 10):  # torch.autocast(device_type, dtype=...), which `autocast` uses, is 1.10+
        return "fp32"
    if device_type == "cuda":
        if capability is None:
            return "fp32"
        if tuple(capability) >= (8, 0):  # Ampere and later: native bf16, same range as fp32, no loss scaling
            return "bf16"
        if tuple(capability) >= (7, 0):  # Volta/Turing tensor cores do fp16 only; bf16 would be emulated
            return "fp16"
        return "fp32"  # Pascal and older: no tensor cores; fp16 there is slow or risky, fp32 is safe
    if device_type == "cpu":
        return "bf16" if cpu_bf16 else "fp32"  # without AVX512-BF16/AMX, bf16 is emulated and slower
    # MPS stays fp32: torch.autocast("mps") is refused before torch 2.5, bf16 on MPS needs macOS 14+,
    # and which ops autocast covers there still varies by release; fp32 trains correctly on all of them.
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # builds without oneDNN's probe
        return False


def precision_for(device: torch.device) -> str:
    """The precision `choose_precision` picks for this machine's `device`."""
    if device.type == "cuda":
        return choose_precision("cuda", tuple(torch.cuda.get_device_capability(device)))
    if device.type == "cpu":
        return choose_precision("cpu", cpu_bf16=cpu_has_native_bf16())
    return choose_precision(device.type)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context to run forward passes in: torch.autocast for bf16/fp16, a do-nothing context for fp32."""
    precision = check_value("precision", precision, str, choices=tuple(PRECISIONS))
    if precision == "fp32":
        # not torch.autocast(..., enabled=False): torch before 2.5 refuses device_type "mps" even disabled
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _needs_scaler(device: torch.device, precision: str) -> bool:
    return precision == "fp16" and device.type == "cuda"  # bf16 has fp32's exponent range: nothing to scale


def grad_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 on CUDA (fp16 gradients underflow without one), else None."""
    if not _needs_scaler(device, precision):
        return None
    if hasattr(torch.amp, "GradScaler"):  # torch 2.3+
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


# ---------------------------------------------------------------- layout, backend

def use_channels_last(device_type: str, has_conv: bool) -> bool:
    """Whether to train in the channels_last (NHWC) memory format."""
    if not has_conv:
        return False  # only convolutions have faster NHWC kernels
    return device_type in ("cuda", "cpu")  # on MPS, conv backward has been reported far slower in NHWC


def process_group_backend(gpus: int, local_processes: int = 1) -> str:
    """The torch.distributed backend string for init_process_group, given this machine's GPUs and processes."""
    # NCCL needs a GPU of its own per process; gloo still serves CPU tensors, so --device cpu works beside it
    return "cpu:gloo,cuda:nccl" if 0 < local_processes <= gpus else "gloo"


# ---------------------------------------------------------------- the machine

def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA and MPS run asynchronously), so timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def use_cudnn_benchmark(deterministic: bool) -> bool:
    """Whether cuDNN should time its kernels once per input shape (fixed here) and keep the fastest."""
    # not for bit-exact runs: the timing may pick another (deterministic) kernel in each run
    return not deterministic


def configure(device: torch.device) -> None:
    """Set the backend flags a training run on `device` wants."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = use_cudnn_benchmark(torch.are_deterministic_algorithms_enabled())


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says a device (CUDA, MPS) or the CPU allocator ran out of memory."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    message = str(error).lower()
    # MPS raises a plain RuntimeError "MPS backend out of memory"; the CPU one "can't allocate memory"
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def _mps_built() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built()


def cpu_only_build_warning(system: str = platform.system(), torch_cuda: str | None = torch.version.cuda,
                           mps_built: bool = _mps_built(),
                           has_nvidia_smi: bool = shutil.which("nvidia-smi") is not None) -> str | None:
    """A one-sentence warning when an NVIDIA GPU is present but this torch build cannot use it, else None."""
    if system not in ("Windows", "Linux") or torch_cuda is not None or mps_built or not has_nvidia_smi:
        return None
    # pip keeps an installed CPU torch ("already satisfied"), hence the uninstall; torchvision must match torch
    return ("An NVIDIA GPU is present (nvidia-smi was found) but this PyTorch is a CPU-only build, so cifar_lab "
            "will train on the CPU; to use the GPU, run `pip uninstall -y torch torchvision` and then "
            "`pip install torch torchvision --index-url https://download.pytorch.org/whl/cu121`, or the "
            "command that pytorch.org's \"Get started\" selector gives for your system and CUDA version.")


def describe(device: torch.device, precision: str) -> str:
    """A short description such as 'cuda:0 (Tesla T4, capability 7.5), fp16 autocast + GradScaler'."""
    where = device.type
    if device.type == "cpu":
        threads = torch.get_num_threads()
        where += f", {threads} thread{'s' * (threads != 1)}"
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        where = f"cuda:{index} ({torch.cuda.get_device_name(index)}, capability {major}.{minor})"
    if precision == "fp32":
        return f"{where}, fp32"
    return f"{where}, {precision} autocast" + (" + GradScaler" if _needs_scaler(device, precision) else "")
