"""What each device gets, decided without the device: fake CUDA capabilities, fake platforms, CPU only."""
import contextlib
import warnings

import pytest
import torch

from cifar_lab import devices
from cifar_lab.devices import (DEVICE_TABLE, autocast, choose_precision, cpu_has_native_bf16,
                               cpu_only_build_warning, describe, get_device, grad_scaler, is_out_of_memory,
                               precision_for, process_group_backend, synchronize, use_channels_last)

CUDA, MPS, CPU = torch.device("cuda"), torch.device("mps"), torch.device("cpu")  # constructing touches nothing


def test_gpus_get_bf16_from_ampere_on_fp16_on_volta_and_turing_and_fp32_before():
    assert choose_precision("cuda", (8, 0)) == "bf16"  # A100
    assert choose_precision("cuda", (9, 0)) == "bf16"  # H100
    assert choose_precision("cuda", (8, 6)) == "bf16"  # RTX 30xx
    assert choose_precision("cuda", (7, 5)) == "fp16"  # T4, RTX 20xx
    assert choose_precision("cuda", (7, 0)) == "fp16"  # V100
    assert choose_precision("cuda", (6, 1)) == "fp32"  # GTX 10xx
    assert choose_precision("cuda") == "fp32"  # capability unknown: the safe choice
    assert choose_precision("cuda", (8, 0), torch_version="1.9.0") == "fp32"  # no torch.autocast yet


def test_cpus_get_bf16_only_when_native_and_mps_and_others_get_fp32():
    assert choose_precision("cpu", cpu_bf16=True) == "bf16"
    assert choose_precision("cpu", cpu_bf16=False) == "fp32"
    assert choose_precision("mps") == "fp32"
    assert choose_precision("mps", torch_version="2.9.0") == "fp32"
    assert choose_precision("xpu") == "fp32"
    assert isinstance(cpu_has_native_bf16(), bool)
    assert precision_for(CPU) == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_precision_for_a_gpu_reads_its_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert precision_for(CUDA) == "fp16"


def test_a_t4_trains_in_fp16_with_a_grad_scaler():
    precision = choose_precision("cuda", (7, 5))
    with warnings.catch_warnings():
        # without a GPU, GradScaler warns "CUDA is not available" and disables itself; the choice is what is tested
        warnings.simplefilter("ignore")
        scaler = grad_scaler(CUDA, precision)
    assert isinstance(scaler, torch.amp.GradScaler)
    assert grad_scaler(CUDA, "bf16") is None and grad_scaler(CUDA, "fp32") is None
    assert grad_scaler(CPU, "fp16") is None and grad_scaler(MPS, "fp16") is None


def test_old_torch_gets_the_cuda_grad_scaler(monkeypatch):
    monkeypatch.delattr(torch.amp, "GradScaler")  # as before torch 2.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(grad_scaler(CUDA, "fp16"), torch.cuda.amp.GradScaler)


def test_fp32_runs_without_autocast_on_every_device():
    for device in (CPU, CUDA, MPS):  # for mps too: old torch refuses torch.autocast("mps") even disabled
        assert isinstance(autocast(device, "fp32"), contextlib.nullcontext)
    with autocast(CPU, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="valid: bf16, fp16, fp32"):
        autocast(CPU, "fp8")


def test_memory_layout_and_accumulators_per_device():
    assert use_channels_last("cuda", has_conv=True) and use_channels_last("cpu", has_conv=True)
    assert not use_channels_last("mps", has_conv=True)
    assert not use_channels_last("cuda", has_conv=False)


def test_process_group_backend_serves_cpu_tensors_on_gpu_machines():
    assert process_group_backend(cuda_available=True) == "cpu:gloo,cuda:nccl"
    assert process_group_backend(cuda_available=False) == "gloo"


def test_cpu_needs_no_synchronize_or_configuration():
    benchmark = torch.backends.cudnn.benchmark
    devices.synchronize(CPU)
    devices.configure(CPU)
    assert torch.backends.cudnn.benchmark == benchmark


def test_synchronize_and_configure_on_cuda(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    synchronize(CUDA)
    devices.configure(CUDA)
    assert waited == [CUDA] and torch.backends.cudnn.benchmark is True


def test_out_of_memory_is_recognised_on_cuda_mps_and_cpu():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an error torch raises for memory
    assert not is_out_of_memory(KeyboardInterrupt())


def test_a_cpu_only_torch_on_a_machine_with_an_nvidia_gpu_is_pointed_at_the_cuda_wheels():
    message = cpu_only_build_warning("Windows", torch_cuda=None, mps_built=False, has_nvidia_smi=True)
    assert "train on the CPU" in message and "Get started" in message
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu121" in message
    assert cpu_only_build_warning("Linux", torch_cuda=None, mps_built=False, has_nvidia_smi=True) == message
    assert cpu_only_build_warning("Windows", torch_cuda="12.1", mps_built=False, has_nvidia_smi=True) is None
    assert cpu_only_build_warning("Windows", torch_cuda=None, mps_built=False, has_nvidia_smi=False) is None
    assert cpu_only_build_warning("Darwin", torch_cuda=None, mps_built=True, has_nvidia_smi=False) is None


def test_describe_says_where_and_in_what_precision(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert describe(CPU, "fp32") == "cpu, 2 threads, fp32"
    assert describe(MPS, "fp32") == "mps, fp32"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert describe(CUDA, "fp16") == "cuda:0 (Tesla T4, capability 7.5), fp16 autocast + GradScaler"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    assert describe(torch.device("cuda:1"), "bf16") == "cuda:1 (NVIDIA A100, capability 8.0), bf16 autocast"


def test_the_device_table_says_what_the_functions_decide():
    examples = [("cuda", (8, 0), False), ("cuda", (7, 5), False), ("cuda", (6, 1), False),
                ("cpu", None, True), ("cpu", None, False), ("mps", None, False)]
    assert len(DEVICE_TABLE) == len(examples)
    for row, (device_type, capability, cpu_bf16) in zip(DEVICE_TABLE, examples):
        assert row["precision"] == choose_precision(device_type, capability, cpu_bf16), row["device"]
        assert row["channels_last"] == use_channels_last(device_type, has_conv=True), row["device"]


def test_missing_cuda_falls_back_with_a_warning_or_errors_when_insisted(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available"):
        assert get_device("cuda").type in ("cpu", "mps")
    with pytest.raises(RuntimeError, match="not available"):
        get_device("cuda", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="valid: cuda, mps, cpu"):
        get_device("tpu")


def test_set_seed_repeats_the_random_streams():
    devices.set_seed(3)
    first = torch.rand(3)
    devices.set_seed(3)
    assert torch.equal(torch.rand(3), first)
