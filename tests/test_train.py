import math
import os
import warnings

import pytest
import torch

from cifar_lab import History, evaluate, fit, get_device, load_checkpoint, make_model, save_checkpoint, set_seed
from cifar_lab.files import atomic_write
from cifar_lab.train import TrainingDiverged

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
    partial = fit(model, fake_data, epochs=4, checkpoint_dir=tmp_path, **QUICK)
    handle.remove()
    assert len(partial) == 2 and partial.info["status"].startswith("interrupted")
    assert (tmp_path / "best.pt").exists() and (tmp_path / "history.json").exists()

    resumed = fit(small_cnn(), fake_data, epochs=4, resume=tmp_path / "last.pt", **QUICK)
    assert resumed.epoch == [1, 2, 3, 4]
    assert resumed.val_acc == straight.val_acc and resumed.lr == straight.lr


def test_early_stopping_and_best_checkpoint(fake_data, tmp_path):
    set_seed(0)
    model = small_cnn()
    h = fit(model, fake_data, epochs=30, lr=1e-4, scheduler="none", early_stopping=1, monitor="val_loss",
            restore_best=True, checkpoint_dir=tmp_path, **QUICK)
    # a tiny constant LR still lowers the loss, so a patience of 1 either runs out or stops early
    assert len(h) <= 30 and h.info["status"] in ("completed",) or "early stopped" in h.info["status"]
    best = load_checkpoint(tmp_path / "best.pt", small_cnn())
    assert best["epoch"] == h.epoch[h.val_loss.index(min(h.val_loss))]


def test_nan_loss_stops_with_a_clear_message(fake_data):
    model = small_cnn()
    model.head.register_forward_hook(lambda m, i, out: out * math.nan)
    with pytest.raises(TrainingDiverged, match="smaller lr"):
        fit(model, fake_data, epochs=1, **QUICK)


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(epochs="ten"), r"epochs must be an integer >= 1, got 'ten' \(str\)"),
    (dict(epochs=2.5), "epochs must be an integer"),
    (dict(batch_size=-1), "batch_size must be an integer >= 1"),
    (dict(lr=-0.1), "lr must be a number > 0"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; valid: sgd, adam, adamw"),
    (dict(scheduler="linear"), "unknown scheduler 'linear'; valid: onecycle, cosine, step, plateau, none"),
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


def test_weight_averaging_is_validated_kept_and_resumed(fake_data, tmp_path):
    set_seed(0)
    model = small_cnn()
    h = fit(model, fake_data, epochs=2, ema=0.9, checkpoint_dir=tmp_path, **QUICK)
    assert h.info["params"]["ema"] == 0.9
    # the model ends with the averaged weights, whose validation accuracy is the one recorded
    assert evaluate(model, fake_data, "val").accuracy == pytest.approx(h.val_acc[-1])
    assert load_checkpoint(tmp_path / "last.pt")["ema"]["n_averaged"].item() == 2 * 14
    resumed = fit(small_cnn(), fake_data, epochs=2, ema=0.9, resume=tmp_path / "last.pt", **QUICK)
    assert resumed.epoch == [1, 2] and resumed.val_acc == h.val_acc  # nothing left to train
    with pytest.raises(ValueError, match="comes from a run of 2 epochs; resume it with epochs=2"):
        fit(small_cnn(), fake_data, epochs=3, resume=tmp_path / "last.pt", **QUICK)
    with pytest.raises(ValueError, match="ema must be a number"):
        fit(small_cnn(), fake_data, epochs=1, ema=1.5, **QUICK)


def test_compiled_training_learns(fake_data):
    set_seed(0)
    h = fit(make_model("mlp", hidden=(32, 32)), fake_data, epochs=2, lr=1e-3, optimizer="adamw", compile=True,
            **QUICK)
    assert h.info["params"]["compile"] is True and h.val_acc[-1] > 0.3
