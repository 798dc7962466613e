"""What each device gets, decided without the device: fake CUDA capabilities, fake platforms, CPU only."""
import contextlib
import threading
import warnings

import torch.nn as nn

import pytest
import torch

from cifar_lab import devices, distributed, fit, make_model, training
from cifar_lab.kit import bench, sweep
from cifar_lab.devices import (DEVICE_TABLE, autocast, choose_precision, cpu_has_native_bf16,
                               cpu_only_build_warning, describe, get_device, grad_scaler, is_out_of_memory,
                               precision_for, process_group_backend, synchronize, use_channels_last)

CUDA, MPS, CPU = torch.device("cuda"), torch.device("mps"), torch.device("cpu")  # constructing touches nothing
QUICK = dict(batch_size=64, progress=False, verbose=False)


def _small_cnn():
    return make_model("cnn", widths=(8, 16, 16), convs_per_block=1, fc_width=32)


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


def test_memory_layout_per_device():
    assert use_channels_last("cuda", has_conv=True) and use_channels_last("cpu", has_conv=True)
    assert not use_channels_last("mps", has_conv=True)
    assert not use_channels_last("cuda", has_conv=False)


def test_process_group_backend_serves_cpu_tensors_on_gpu_machines():
    assert process_group_backend(gpus=2, local_processes=2) == "cpu:gloo,cuda:nccl"  # --device cpu works too
    assert process_group_backend(gpus=8, local_processes=1) == "cpu:gloo,cuda:nccl"
    assert process_group_backend(gpus=0, local_processes=2) == "gloo"
    assert process_group_backend(gpus=1, local_processes=4) == "gloo"  # NCCL needs a GPU per process


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


# ---------------------------------------------------------------- precision, scaler and the fit loop

def test_torch_2_1_and_2_2_give_a_t4_fp16_since_their_autocast_refuses_bf16_there():
    for version in ("2.1.2+cu121", "2.2.0"):
        assert choose_precision("cuda", (7, 5), torch_version=version) == "fp16"
        assert choose_precision("cuda", (8, 0), torch_version=version) == "bf16"


def _tiny():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


@pytest.mark.skipif(not hasattr(torch.amp, "GradScaler"), reason="torch.amp.GradScaler('cpu') is torch 2.3+")
def test_train_step_scales_the_loss_and_skips_a_step_whose_gradients_overflowed():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)
    training.train_step(model, x, y, nn.CrossEntropyLoss(), opt, contextlib.nullcontext(), scaler)
    assert scaler.get_scale() == 8.0  # a good step: stepped, and the scale grows
    before = [p.detach().clone() for p in model.parameters()]
    x[0, 0, 0, 0] = float("inf")  # as fp16 overflows: gradients not finite
    training.train_step(model, x, y, nn.CrossEntropyLoss(), opt, contextlib.nullcontext(), scaler)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert scaler.get_scale() == 4.0  # and the scale halved


@pytest.mark.skipif(not hasattr(torch.amp, "GradScaler"), reason="torch.amp.GradScaler('cpu') is torch 2.3+")
def test_fit_steps_through_the_scaler_the_device_gets(fake_data, monkeypatch):
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1)
    asked = []
    monkeypatch.setattr(devices, "grad_scaler", lambda device, precision: asked.append((device, precision)) or scaler)
    fit(_small_cnn(), fake_data, epochs=1, **QUICK)
    assert asked == [(CPU, devices.precision_for(CPU))]
    assert scaler.get_scale() > 1.0  # scaler.update() ran after the steps


def test_fit_configures_its_device_keeps_the_layout_it_is_given_and_warns_of_a_cpu_only_torch(
        fake_data, monkeypatch, capsys):
    configured, layouts = [], []
    monkeypatch.setattr(devices, "configure", configured.append)
    monkeypatch.setattr(devices, "use_channels_last", lambda *args: layouts.append(args) and False)  # as on MPS
    monkeypatch.setattr(devices, "cpu_only_build_warning", lambda: "this PyTorch is a CPU-only build")
    model = _small_cnn()
    fit(model, fake_data, epochs=1, batch_size=64, progress=False, verbose=True)
    assert configured == [CPU] and layouts == [("cpu", True)]
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 3)
    assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert "WARNING: this PyTorch is a CPU-only build" in capsys.readouterr().out


def test_an_mps_out_of_memory_error_suggests_a_smaller_batch(fake_data):
    model = _small_cnn()

    def oom(module, inputs):
        if module.training:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB, other allocations: 1.00 GB)")
    model.register_forward_pre_hook(oom)
    with pytest.raises(RuntimeError, match="ran out of memory with batch_size=64; try batch_size=32"):
        fit(model, fake_data, epochs=1, **QUICK)


SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__", "cpu", "numpy")  # each waits for the GPU


def _syncs_of_fit(fake_data, **options) -> int:
    """How many times `fit` reads a tensor back to the host (a blocking sync on a GPU), over one epoch."""
    from torch.overrides import TorchFunctionMode
    made = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in SYNCS:
                made.append(func.__name__)
            return func(*args, **(kwargs or {}))
    model = _small_cnn()
    with Watch():
        fit(model, fake_data, epochs=1, batch_size=32, progress=False, verbose=False, **options)
    return len(made)


def test_the_training_loop_reads_the_device_back_once_every_25_steps_not_every_step(fake_data):
    assert len(fake_data.loader("train", 32)) == 28
    assert _syncs_of_fit(fake_data) < 28 // 2  # 2 loss checks, then the epoch's sums and the validation


def test_weight_averaging_adds_no_sync_per_step(fake_data):
    assert _syncs_of_fit(fake_data, ema=0.9) < 28 // 2


# ---------------------------------------------------------------- what moves between host and device

def test_the_moving_average_and_its_counter_live_on_the_training_device(fake_data, monkeypatch):
    built = []

    class Spy(training.AveragedModel):
        def __init__(self, *args, device=None, **kwargs):
            super().__init__(*args, device=device, **kwargs)
            built.append((device, self.n_averaged.device))
    monkeypatch.setattr(training, "AveragedModel", Spy)
    fit(_small_cnn(), fake_data, epochs=1, ema=0.9, **QUICK)
    # without device=, the counter stays on the CPU: a copy per step, and NCCL cannot broadcast it
    assert built == [(CPU, CPU)]


def test_a_resumed_optimizer_state_is_read_through_the_cpu(fake_data, tmp_path, monkeypatch):
    fit(_small_cnn(), fake_data, epochs=1, optimizer="adamw", checkpoint_dir=tmp_path, **QUICK)
    state = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all(s["step"].device == CPU for s in state.values())
    read, real = [], training.load_checkpoint

    def spy(*args, **kwargs):
        read.append(kwargs.get("map_location", args[2] if len(args) > 2 else "cpu"))  # "cpu": its default
        return real(*args, **kwargs)
    monkeypatch.setattr(training, "load_checkpoint", spy)
    with pytest.raises(ValueError):  # the run ended, so it is refused; what matters here is how it was read
        fit(_small_cnn(), fake_data, epochs=1, optimizer="adamw", resume=tmp_path / "last.pt", **QUICK)
    # map_location=device would put AdamW's step counters on the GPU: a sync per parameter per step
    assert read == ["cpu"]


def test_augmentation_copies_to_the_device_per_epoch_not_per_batch():
    """On the meta device (shapes only), every host-to-device copy is seen: one set per epoch, whatever the batches."""
    from torch.overrides import TorchFunctionMode

    from cifar_lab.loader import DeviceLoader
    meta, moves = torch.device("meta"), []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            on_host = any(a.device.type == "cpu" for a in tensors) or func in (torch.tensor, torch.as_tensor)
            if isinstance(out, torch.Tensor) and out.device == meta and on_host:
                moves.append(func.__name__)
            return out

    images, labels = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (300,))
    every = dict(crop_padding=4, flip=True, cutout=8, padding_mode="reflect", brightness=0.2, contrast=0.2,
                 saturation=0.2, hue=0.1, rotation=10, erasing=0.5)
    counts = []
    for batch_size in (150, 25):  # 2 and 12 batches
        loader = DeviceLoader(images, labels, torch.zeros(3), torch.ones(3), batch_size, device=meta, **every)
        list(loader)  # the first epoch may put constants on the device once
        moves.clear()
        with Watch():
            batches = list(loader)
        assert batches[0][0].shape == (batch_size, 3, 32, 32) and batches[0][0].device == meta
        counts.append(len(moves))
    assert counts[0] == counts[1] <= 3  # order, crop/flip/cutout numbers, jitter/rotation/erasing numbers


# ---------------------------------------------------------------- several processes

def test_a_gpu_machine_running_more_processes_than_gpus_on_the_cpu_uses_gloo(monkeypatch):
    joined, chosen = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: joined.append(backend))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.init_distributed() and joined == ["gloo"] and chosen == []  # torchrun ... --device cpu
    with pytest.raises(RuntimeError, match="4 processes on this machine but 1 GPU: .*--nproc_per_node=1"):
        distributed.rank_device()  # and a GPU run says why it cannot
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert distributed.init_distributed() and joined[-1] == "cpu:gloo,cuda:nccl"
    assert chosen == [torch.device("cuda", 3)] == [distributed.rank_device()]


def test_batchnorm_becomes_syncbatchnorm_on_gpus_and_keeps_its_parameters(monkeypatch):
    wrapped = []
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda model, device_ids=None: wrapped.append((model, device_ids)) or model)
    model = make_model("cnn", widths=(8, 16, 16), convs_per_block=1, fc_width=32)
    params, buffers = list(model.parameters()), list(model.buffers())
    distributed.wrap(model, torch.device("cuda", 1))
    kinds = {type(m) for m in model.modules()}
    assert nn.SyncBatchNorm in kinds and nn.BatchNorm2d not in kinds
    # the optimizer (made before wrapping) still holds the very parameters trained, BN statistics included
    assert all(a is b for a, b in zip(params, model.parameters())) and len(params) == len(list(model.parameters()))
    assert all(a is b for a, b in zip(buffers, model.buffers()))
    assert wrapped == [(model, [1])]
    cpu_model = make_model("cnn", widths=(8, 16, 16), convs_per_block=1, fc_width=32)
    distributed.wrap(cpu_model, CPU)  # gloo has no SyncBatchNorm: per-process statistics on CPUs
    assert nn.SyncBatchNorm not in {type(m) for m in cpu_model.modules()} and wrapped[-1] == (cpu_model, None)


def test_a_sweep_keeps_the_inherited_gpu_choice_and_runs_one_job_on_a_mac(monkeypatch, tmp_path):
    assert sweep.gpu_slots("2,3", 2) == ["2", "3"]  # not "0" and "1"
    assert sweep.gpu_slots(None, 2) == sweep.gpu_slots("", 2) == ["0", "1"]
    assert sweep.gpu_slots("GPU-5c1f0e2a, 1", 2) == ["GPU-5c1f0e2a", "1"]
    assert sweep.jobs_for("mps", gpus=0, cores=10, memory_gib=32) == 1  # one GPU, not one job per core
    assert sweep.jobs_for("cuda", gpus=4, cores=32, memory_gib=256) == 4
    assert sweep.jobs_for("cpu", gpus=0, cores=8, memory_gib=64) == 8
    assert sweep.jobs_for("cpu", gpus=0, cores=8, memory_gib=5) == 2  # 2 GiB per run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "get_device", lambda prefer=None: MPS)
    assert sweep.default_jobs() == 1

    given, together = [], threading.Barrier(2, timeout=30)  # both jobs run at once, each in its own slot

    def run_one(index, name, params, grid, out, notebook, env):
        given.append(env["CUDA_VISIBLE_DEVICES"])
        together.wait()
        return {"name": name, "status": "ok", "skipped": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(sweep, "run_one", run_one)
    sweep.run_sweep({f"seed={i}": {"seed": i} for i in range(4)}, {"seed": [0, 1, 2, 3]}, tmp_path, jobs=2)
    assert sorted(given) == ["2", "2", "3", "3"]


# ---------------------------------------------------------------- timing, cuDNN, determinism

def test_mps_is_synchronised_and_the_bench_waits_before_and_after_its_clock(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append("mps"))
    synchronize(MPS)
    assert waited == ["mps"]
    monkeypatch.setattr(bench.devices, "synchronize", waited.append)
    batches = iter([(torch.zeros(4, 3), torch.zeros(4))] * 3)
    assert bench.images_per_second(batches, steps=2, warmup=1, device=MPS) > 0
    assert waited[1:] == [MPS, MPS]  # after the warm-up, so its queued work is not timed, and at the end


def test_cudnn_benchmark_stays_off_for_deterministic_runs(monkeypatch):
    assert devices.use_cudnn_benchmark(deterministic=False) and not devices.use_cudnn_benchmark(deterministic=True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    devices.configure(CUDA)
    assert torch.backends.cudnn.benchmark is False  # fit's configure must not undo the bit-exact recipe


# CUDA backward passes that raise under torch.use_deterministic_algorithms(True) (its docstring's list)
NOT_DETERMINISTIC_ON_CUDA = (nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool1d, nn.FractionalMaxPool2d, nn.MaxUnpool2d,
                             nn.AvgPool3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.CTCLoss, nn.NLLLoss,
                             nn.EmbeddingBag)


def _not_deterministic(model: nn.Module) -> list[str]:
    found = [type(m).__name__ for m in model.modules() if isinstance(m, NOT_DETERMINISTIC_ON_CUDA)]
    found += [f"AdaptiveAvgPool2d({m.output_size})" for m in model.modules()  # output 1 is a mean: deterministic
              if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))]
    found += [f"Upsample({m.mode})" for m in model.modules()
              if isinstance(m, nn.Upsample) and m.mode in ("linear", "bilinear", "bicubic", "trilinear")]
    return found


def test_every_model_trains_under_the_deterministic_gpu_recipe():
    from cifar_lab.models import MODELS
    from cifar_lab.kit.reference_models import REFERENCE_MODELS
    for name in MODELS:
        assert _not_deterministic(make_model(name)) == [], name
    for name, build in REFERENCE_MODELS.items():
        assert _not_deterministic(build()) == [], name
    assert _not_deterministic(nn.Sequential(nn.AdaptiveMaxPool2d(1))) == ["AdaptiveMaxPool2d"]


def test_resnet9_global_max_pool_is_adaptive_max_pool_with_a_deterministic_backward():
    from cifar_lab.models import GlobalMaxPool
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    GlobalMaxPool()(x).sum().backward()
    nn.AdaptiveMaxPool2d(1)(x2).flatten(1).sum().backward()
    assert torch.equal(GlobalMaxPool()(x), nn.AdaptiveMaxPool2d(1)(x).flatten(1)) and torch.equal(x.grad, x2.grad)
