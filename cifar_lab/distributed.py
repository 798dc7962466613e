"""Data-parallel training with PyTorch's own engine: the process group torchrun describes, and its helpers.

`torchrun --nproc_per_node=N ...` starts N copies of a program and tells each its RANK, WORLD_SIZE,
LOCAL_RANK and where rank 0 listens. `init_distributed` joins that group (NCCL for CUDA tensors, gloo for CPU ones);
`fit` then sees it and trains with `DistributedDataParallel`. Without torchrun every helper here is a
no-op for a single process, so the same code runs on one device unchanged.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from .devices import process_group_backend


def is_distributed() -> bool:
    """Whether this process is one rank of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its own machine (torchrun's LOCAL_RANK; 0 without one)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def barrier() -> None:
    """Wait until every rank gets here (nothing with one process)."""
    if is_distributed():
        dist.barrier()


def is_main() -> bool:
    """True on the one process that prints and writes files (rank 0)."""
    return rank() == 0


def local_world_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without one)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def gpu_count() -> int:
    """CUDA GPUs this process can see (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def rank_device() -> torch.device:
    """The device of this rank: its own GPU (by LOCAL_RANK) when the machine has GPUs, else the CPU."""
    gpus = gpu_count()
    if not gpus:
        return torch.device("cpu")
    if local_rank() >= gpus:
        raise RuntimeError(f"{local_world_size()} processes on this machine but {gpus} GPU{'s' * (gpus > 1)}: "
                           f"start one per GPU (torchrun --nproc_per_node={gpus}), or train on the CPU (--device cpu)")
    return torch.device("cuda", local_rank())


def init_distributed(timeout_minutes: float = 30.0,  # how long a rank waits for the others before failing
                     ) -> bool:
    """Join the process group that torchrun's environment describes; False (and nothing done) without one."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    # both backends when each process has a GPU: NCCL for CUDA tensors, gloo for a run on the CPU (--device cpu)
    backend = process_group_backend(gpu_count(), local_world_size())
    if "nccl" in backend:
        torch.cuda.set_device(rank_device())  # before NCCL starts, so each rank uses its own GPU
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return True


def close_distributed() -> None:
    """Leave the process group (if any), so the program exits cleanly."""
    if is_distributed():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in `DistributedDataParallel` under a process group (gradients averaged over ranks), else as is."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel
    if device.type == "cuda":  # BatchNorm statistics over the whole batch, as in one process
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the BN layers inside `model` in place
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `values` over all ranks (`values` itself with one process)."""
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all ranks hold one model."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def all_gather_object(obj) -> list:
    """Every rank's `obj`, in rank order (`[obj]` with one process)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (a picklable value, such as a folder name)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
