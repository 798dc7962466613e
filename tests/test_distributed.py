"""Data-parallel training on the CPU: two gloo processes, as torchrun or torch.multiprocessing start them."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cifar_lab import load_cifar10, make_model
from cifar_lab.data import DeviceLoader

pytestmark = pytest.mark.slow  # torchrun subprocesses: the slow tier

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SMALL_CNN = ["--model", "cnn", "--widths", "8,16,16", "--convs-per-block", "1"]


def torchrun(args, cwd, timeout=240):
    env = {**os.environ, "CIFAR_LAB_QUICK": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(TORCHRUN + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_each_rank_takes_its_share_of_every_batch_and_of_the_validation_split():
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1).expand(12, 3, 4, 4).contiguous()
    labels = torch.arange(12)
    mean, std = torch.zeros(3), torch.ones(3) / 255

    def batches(rank, world, train=True):
        loader = DeviceLoader(images, labels, mean, std, batch_size=4, train=train, crop_padding=0, flip=False,
                              seed=3, rank=rank, world_size=world)
        return [y.tolist() for _, y in loader]

    whole = batches(0, 1)
    halves = [batches(0, 2), batches(1, 2)]
    assert [a + b for a, b in zip(*halves)] == whole  # same order: together one global batch per step
    assert all(len(b) == 2 for b in halves[0])
    shares = sum((sum(batches(r, 2, train=False), []) for r in range(2)), [])
    assert sorted(shares) == list(range(12))  # validation: every image once
    with pytest.raises(ValueError, match="divisible by the 3 processes"):
        DeviceLoader(images, labels, mean, std, batch_size=4, rank=0, world_size=3)


def _rank_worker(rank, world, root, out):
    """One rank of a 2-process run of `fit`, started by torch.multiprocessing (gloo on the CPU)."""
    import cifar_lab.checkpoints
    import cifar_lab.files
    import cifar_lab.history
    from cifar_lab import fit, set_seed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=world)
    writes, real_write = [], cifar_lab.files.atomic_write
    for module in (cifar_lab.files, cifar_lab.checkpoints, cifar_lab.history):  # every file fit writes goes through atomic_write
        module.atomic_write = lambda path, *a, **k: (writes.append(str(path)), real_write(path, *a, **k))[1]
    data = load_cifar10(root, val_size=100, download=False)
    set_seed(rank)  # different initial weights on purpose: DDP must start every rank from rank 0's
    model = make_model("cnn", widths=(8, 16, 16), convs_per_block=1, fc_width=32)
    history = fit(model, data, epochs=3, batch_size=64, lr=0.05, checkpoint_dir=f"{out}/checkpoints",
                  progress=False, verbose=False)
    weights = sum(float(t.double().sum()) for t in model.state_dict().values())
    dist.destroy_process_group()
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"history": history.to_dict(), "weights": weights, "writes": writes}, f)


def test_fit_in_two_processes_agrees_on_everything_and_only_rank_0_writes(fake_root, tmp_path):
    mp.spawn(_rank_worker, args=(2, str(fake_root), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    h0, h1 = (r["history"] for r in ranks)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert h0[key] == h1[key], key  # metrics summed over both ranks: identical numbers
    assert ranks[0]["weights"] == ranks[1]["weights"]  # one model, BatchNorm statistics included
    assert h0["info"]["processes"] == 2 and h0["info"]["status"] == "completed"
    assert max(h0["val_acc"]) > 0.3  # it learns (chance is 0.1)
    assert ranks[1]["writes"] == [] and any(w.endswith("last.pt") for w in ranks[0]["writes"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "history.json", "last.pt"]


def test_torchrun_two_processes_finish_agree_and_write_one_set_of_outputs(fake_root, tmp_path):
    out = tmp_path / "run"
    done = torchrun(["-m", "cifar_lab.kit.train", *SMALL_CNN, "--epochs", "3", "--batch-size", "64",
                     "--data-dir", str(fake_root), "--val-size", "100", "--output-dir", str(out)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Training CNN on cpu") == 1 and "x 2 processes (gloo)" in done.stdout  # rank 0 alone
    assert done.stdout.count("epoch   3/3") == 1
    metrics = json.loads((out / "metrics.json").read_text())["models"]["cnn"]
    assert metrics["processes"] == 2 and metrics["epochs"] == 3
    assert metrics["test_acc_by_rank"][0] == metrics["test_acc_by_rank"][1] == metrics["test_acc"]
    assert metrics["best_val_acc"] > 0.3
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert files == ["checkpoints", "checkpoints/best.pt", "checkpoints/history.json", "checkpoints/last.pt",
                     "confusion_matrix.png", "history.csv", "learning_curves.png", "metrics.json", "run.json"]


FAILING_RANK = """
import os, sys
from cifar_lab import models
from cifar_lab.kit import train

if os.environ["RANK"] == "1":
    forward, calls = models.CNN.forward, []
    def failing_forward(self, x):
        calls.append(1)
        if len(calls) == 3:  # in the middle of the first epoch (the first call checks the output shape)
            raise RuntimeError("rank 1 failed on purpose")
        return forward(self, x)
    models.CNN.forward = failing_forward
sys.exit(train.main(sys.argv[1:]))
"""


def test_a_failing_rank_fails_the_whole_run_with_its_error_instead_of_hanging(tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    t0 = time.perf_counter()
    done = torchrun([str(script), *SMALL_CNN, "--quick", "--output-dir", str(tmp_path / "run")], cwd=tmp_path)
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stdout + done.stderr
    assert time.perf_counter() - t0 < 120  # not waiting for the 30-minute collective timeout
    assert not (tmp_path / "run" / "metrics.json").exists()
