import math
import os

import pytest
import torch

from cifar_lab import History, TrainingDiverged, TrainingInterrupted, evaluate, fit, load_checkpoint, make_model, save_checkpoint, set_seed
from cifar_lab.files import atomic_write

QUICK = dict(batch_size=64, progress=False, verbose=False)


def small_cnn():
    return make_model("cnn", widths=(8, 16, 16), convs_per_block=1, fc_width=32)


def test_a_small_cnn_learns_the_fake_data_above_chance(fake_data):
    set_seed(0)
    model = small_cnn()
    history = fit(model, fake_data, epochs=3, lr=0.05, **QUICK)
    assert len(history) == 3 and history.info["status"] == "completed"
    assert history.val_acc[-1] > 0.5  # chance is 0.1
    assert history.train_loss[-1] < history.train_loss[0]
    assert evaluate(model, fake_data).accuracy > 0.5


def test_mlp_learns_with_adamw_and_a_plateau_schedule(fake_data):
    set_seed(0)
    history = fit(make_model("mlp", hidden=(64, 32)), fake_data, epochs=3, lr=1e-3, optimizer="adamw",
                  scheduler="plateau", label_smoothing=0.1, **QUICK)
    assert history.val_acc[-1] > 0.3


def test_same_seed_gives_identical_history_and_test_accuracy(fake_data):
    runs = []
    for _ in range(2):
        set_seed(0)
        model = small_cnn()
        h = fit(model, fake_data, epochs=2, seed=0, **QUICK)
        runs.append((h.train_loss, h.val_acc, evaluate(model, fake_data).accuracy))
    assert runs[0] == runs[1]


def test_history_records_the_run_and_round_trips(fake_data, tmp_path):
    set_seed(0)
    h = fit(small_cnn(), fake_data, epochs=2, **QUICK)
    assert h.info["seed"] == 0 and h.info["params"]["epochs"] == 2 and h.info["device"] == "cpu"
    assert h.info["environment"]["torch"] == torch.__version__
    assert h.info["data"] == fake_data.describe() and fake_data.source not in h.info["data"]  # no machine paths
    assert History.load(h.save(tmp_path / "h.json")) == h
    from_csv = History.load(h.save(tmp_path / "h.csv"))
    assert from_csv.epoch == h.epoch and from_csv.val_acc == pytest.approx(h.val_acc)


def test_interrupt_keeps_history_and_resume_continues_the_same_schedule(fake_data, tmp_path):
    set_seed(0)
    straight = fit(small_cnn(), fake_data, epochs=4, **QUICK)

    set_seed(0)
    model = small_cnn()
    calls = {"n": 0}

    def stop_in_epoch_3(module, inputs):  # 14 training + 1 validation forward passes per epoch
        calls["n"] += 1
        if calls["n"] == 2 * 15 + 5:
            raise KeyboardInterrupt
    handle = model.register_forward_pre_hook(stop_in_epoch_3)
    with pytest.raises(TrainingInterrupted, match="interrupted after 2 of 4 epochs.*resume=") as stopped:
        fit(model, fake_data, epochs=4, checkpoint_dir=tmp_path, **QUICK)  # a notebook's Run All stops here
    handle.remove()
    partial = stopped.value.history
    assert len(partial) == 2 and partial.info["status"].startswith("interrupted")
    assert (tmp_path / "best.pt").exists() and (tmp_path / "history.json").exists()
    with pytest.raises(ValueError, match="other options; resume it with the same ones: lr=0.05 \\(not 0.5\\)"):
        fit(small_cnn(), fake_data, epochs=4, lr=0.5, resume=tmp_path / "last.pt", **QUICK)
    with pytest.raises(ValueError, match="only the weights of one epoch.*resume from last.pt"):
        fit(small_cnn(), fake_data, epochs=4, resume=tmp_path / "best.pt", **QUICK)

    resumed = fit(small_cnn(), fake_data, epochs=4, resume=tmp_path / "last.pt", **QUICK)
    assert resumed.epoch == [1, 2, 3, 4]
    assert resumed.val_acc == straight.val_acc and resumed.lr == straight.lr


def test_early_stopping_and_best_checkpoint(fake_data, tmp_path):
    set_seed(0)
    model = small_cnn()
    h = fit(model, fake_data, epochs=30, lr=1e-4, scheduler="none", early_stopping=2, monitor="val_acc",
            restore_best=True, checkpoint_dir=tmp_path, **QUICK)
    # a tiny constant LR soon leaves the validation accuracy flat: 2 epochs without a new best end the run
    assert len(h) < 30 and h.info["status"].startswith(f"early stopped at epoch {len(h)}")
    best_epoch = h.epoch[h.val_acc.index(max(h.val_acc))]
    assert best_epoch == len(h) - 2 and h.info["restored_best_epoch"] == best_epoch
    assert load_checkpoint(tmp_path / "best.pt", small_cnn())["epoch"] == best_epoch
    assert evaluate(model, fake_data, "val").accuracy == pytest.approx(max(h.val_acc))  # the best weights


def test_nan_loss_stops_with_a_clear_message(fake_data):
    model = small_cnn()
    model.head.register_forward_hook(lambda m, i, out: out * math.nan)
    with pytest.raises(TrainingDiverged, match="smaller lr"):
        fit(model, fake_data, epochs=1, **QUICK)


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(epochs="ten"), r"epochs must be an integer >= 1, got 'ten' \(str\)"),
    (dict(epochs=2.5), "epochs must be an integer"),
    (dict(batch_size=1), "batch_size must be an integer >= 2"),  # BatchNorm needs 2 images
    (dict(lr=-0.1), "lr must be a number > 0"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; valid: sgd, adam, adamw"),
    (dict(scheduler="linear"), "unknown scheduler 'linear'; valid: onecycle, step, plateau, none"),
    (dict(patience=3), r"unknown parameter 'patience'"),
    (dict(monitor="acc"), "unknown monitor"),
])
def test_bad_parameters_are_refused_before_training(fake_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(small_cnn(), fake_data, **{**QUICK, "epochs": 1, **kwargs})


def test_checkpoint_of_another_model_or_a_corrupt_file(tmp_path):
    save_checkpoint(tmp_path / "cnn.pt", small_cnn())
    with pytest.raises(RuntimeError, match="holds a CNN.*not a MLP"):
        load_checkpoint(tmp_path / "cnn.pt", make_model("mlp"))
    with pytest.raises(RuntimeError, match="another shape"):
        load_checkpoint(tmp_path / "cnn.pt", make_model("cnn"))
    (tmp_path / "bad.pt").write_bytes((tmp_path / "cnn.pt").read_bytes()[:300])
    with pytest.raises(RuntimeError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "bad.pt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = atomic_write(tmp_path / "metrics.json", lambda f: f.write("good"), mode="w")

    def crash(f):
        f.write("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash, mode="w")
    assert path.read_text() == "good" and list(tmp_path.iterdir()) == [path]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, readable by the group


def test_weight_averaging_is_validated_kept_and_resumed(fake_data, tmp_path):
    set_seed(0)
    model = small_cnn()
    h = fit(model, fake_data, epochs=2, ema=0.9, checkpoint_dir=tmp_path, **QUICK)
    assert h.info["params"]["ema"] == 0.9
    # the model ends with the averaged weights, whose validation accuracy is the one recorded
    assert evaluate(model, fake_data, "val").accuracy == pytest.approx(h.val_acc[-1])
    assert load_checkpoint(tmp_path / "last.pt")["ema"]["n_averaged"].item() == 2 * 14
    with pytest.raises(ValueError, match="belongs to a run that ended \\(completed\\): nothing to resume"):
        fit(small_cnn(), fake_data, epochs=2, ema=0.9, resume=tmp_path / "last.pt", **QUICK)
    with pytest.raises(ValueError, match="resume it with the same ones: epochs=2 \\(not 3\\)"):
        fit(small_cnn(), fake_data, epochs=3, ema=0.9, resume=tmp_path / "last.pt", **QUICK)
    with pytest.raises(ValueError, match="ema must be a number"):
        fit(small_cnn(), fake_data, epochs=1, ema=1.5, **QUICK)


class OwnNet(torch.nn.Module):
    """A student's own model, not one of the kit's."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.conv(x)).mean((2, 3))  # (B, 8, 32, 32) -> (B, 8)
        return self.fc(x)


def test_any_module_trains_checkpoints_and_resumes(fake_data, tmp_path):
    set_seed(0)
    straight = fit(OwnNet(), fake_data, epochs=3, lr=0.1, **QUICK)
    assert straight.val_acc[-1] > 0.2
    set_seed(0)
    model = OwnNet()
    calls = {"n": 0}

    def stop_in_epoch_2(module, inputs):
        calls["n"] += 1
        if calls["n"] == 1 + 15 + 3:  # the output check, one epoch, then 3 steps into the next
            raise KeyboardInterrupt
    model.register_forward_pre_hook(stop_in_epoch_2)
    with pytest.raises(TrainingInterrupted):
        fit(model, fake_data, epochs=3, lr=0.1, checkpoint_dir=tmp_path, **QUICK)
    resumed_model = OwnNet()
    resumed = fit(resumed_model, fake_data, epochs=3, lr=0.1, resume=tmp_path / "last.pt", **QUICK)
    assert resumed.val_acc == straight.val_acc
    assert evaluate(resumed_model, fake_data).accuracy == pytest.approx(evaluate(resumed_model, fake_data).accuracy)


def test_a_model_with_the_wrong_output_is_refused_before_training(fake_data):
    with pytest.raises(ValueError, match=r"maps 2 images to \(2, 5\), but the data has 10 classes"):
        fit(OwnNet(classes=5), fake_data, epochs=1, **QUICK)
    with pytest.raises(ValueError, match="cannot take a batch of CIFAR-10 images"):
        fit(torch.nn.Linear(10, 10), fake_data, epochs=1, **QUICK)


def test_no_float64_tensor_is_made_on_the_training_device(fake_data):
    """MPS has no float64: the loop must not create any on the device (here: the CPU, watched)."""
    from torch.overrides import TorchFunctionMode

    made = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.dtype == torch.float64:
                made.append(getattr(func, "__name__", str(func)))
            return out

    set_seed(0)
    model = small_cnn()
    with Watch():
        fit(model, fake_data, epochs=1, ema=0.9, **QUICK)
    assert made == []


def test_a_full_disk_ends_in_one_plain_sentence_and_keeps_the_old_file(tmp_path):
    import errno

    from cifar_lab.files import DiskFullError
    path = atomic_write(tmp_path / "last.pt", lambda f: f.write(b"good"))

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFullError, match="no space left on the disk to write .*last.pt.*resume it"):
        atomic_write(path, full)
    assert path.read_bytes() == b"good"


def test_a_file_as_checkpoint_folder_is_refused_before_training(fake_data, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(small_cnn(), fake_data, epochs=1, checkpoint_dir=tmp_path / "f", **QUICK)
