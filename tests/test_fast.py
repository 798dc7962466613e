"""The fast recipe (notebook 06): FastNet, its loader features, its optimiser and schedule, on CPU in seconds."""
import pytest
import torch
from torch import nn

from cifar_lab import evaluate, make_model
from cifar_lab.kit.bench import time_to_accuracy
from cifar_lab.evaluate import tta_logits
from cifar_lab.fast import fast_flops, fast_options, first_reaching, make_sgd, tta_flops, train_fast
from cifar_lab.loader import DeviceLoader
from cifar_lab.models import FastNet, ShiftOnlyBatchNorm
from cifar_lab.optim import Lookahead, triangle

TINY = dict(widths="16,32,32", batch_size=100, progress=False, verbose=False)


def test_fastnet_maps_images_to_logits_through_three_groups():
    model = FastNet(widths=(16, 32, 32))
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert model.net[:2](model.whitening(torch.zeros(1, 3, 32, 32))).shape == (1, 16, 15, 15)  # 31 -> 15


def test_identity_initialisation_passes_the_first_channels_through():
    conv = FastNet(widths=(16, 32, 32)).net[1].net[4]  # the second conv of the first group: 16 -> 16
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(conv(x), x, atol=1e-6)
    plain = FastNet(widths=(16, 32, 32), dirac=False).net[1].net[4]
    assert not torch.allclose(plain(x), x, atol=1e-2)


def test_the_whitened_stem_decorrelates_patches_and_is_frozen(fake_data):
    model = FastNet(widths=(16, 32, 32))
    images = next(iter(fake_data.loader("train", 500, train=False)))[0]
    model.whiten(images)
    out = model.whitening(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # (patches, 12)
    assert torch.allclose(torch.cov(out.T), torch.eye(12), atol=0.05)
    assert torch.allclose(model.whitening.weight[12:], -model.whitening.weight[:12])  # both signs
    assert not model.whitening.weight.requires_grad and model.whitening.bias.requires_grad


def test_shift_only_batchnorm_learns_shifts_at_the_higher_lr():
    norm = ShiftOnlyBatchNorm(8)
    assert not norm.weight.requires_grad and norm.bias.requires_grad
    model = FastNet(widths=(16, 32, 32))
    groups = make_sgd(model, fast_options(widths="16,32,32")).param_groups
    assert groups[1]["lr"] == pytest.approx(64 * groups[0]["lr"])
    assert all(p.ndim == 1 for p in groups[1]["params"])
    assert groups[0]["nesterov"] and groups[0]["momentum"] == 0.85
    # the decay per step (lr x weight_decay) is the same in both groups: not multiplied by the bias scaler
    assert groups[0]["lr"] * groups[0]["weight_decay"] == pytest.approx(groups[1]["lr"] * groups[1]["weight_decay"])


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    images = torch.arange(8 * 3 * 4 * 4, dtype=torch.uint8).view(8, 3, 4, 4)  # every image different
    labels = torch.arange(8)
    loader = DeviceLoader(images, labels, torch.zeros(3), torch.ones(3) / 255, batch_size=8, crop_padding=0,
                          flip=True, alternate_flip=True, seed=3)

    def flipped(epoch_batch):
        x, y = epoch_batch
        return {int(label): bool((x[i] != images[label].float()).any()) for i, label in enumerate(y)}

    first, second, third = (flipped(next(iter(loader))) for _ in range(3))
    assert all(first[i] != second[i] for i in range(8)) and first == third
    assert 0 < sum(first.values()) < 8  # random in the first epoch


def test_triangle_schedule_and_lookahead():
    factor = triangle(100)
    assert factor(0) == pytest.approx(0.2) and factor(23) == pytest.approx(1.0) and factor(100) == pytest.approx(0.07)
    model = nn.Linear(2, 2)
    lookahead = Lookahead(model, every=5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    lookahead.step(4, decay=0.5)  # not a 5th step: nothing happens
    assert torch.allclose(model.weight, start + 1)
    lookahead.step(5, decay=0.5)  # slow weights half-way to the live ones, and the live ones jump there
    assert torch.allclose(model.weight, start + 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    lookahead.finish()
    assert torch.allclose(model.weight, start + 0.5)


def test_test_time_augmentation_levels_run_one_two_and_six_passes():
    calls = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    x = torch.randn(3, 3, 8, 8)
    for level, passes in ((0, 1), (1, 2), (2, 6)):
        calls.clear()
        assert tta_logits(model, x, level).shape == (3, 10) and len(calls) == passes


@pytest.mark.slow
def test_the_fast_recipe_learns_above_chance_and_counts_its_flops(fake_data):
    model, history = train_fast(fake_data, epochs=2.5, seed=0, **TINY)
    assert history.info["status"] == "completed" and len(history) == 3  # a fraction ends mid-epoch
    assert evaluate(model, fake_data, tta=2).accuracy > 0.3  # chance is 0.1
    steps = 2.5 * len(fake_data.train_labels) // 100
    assert history.info["flops"] >= 3 * history.info["flops_per_image"] * 100 * steps
    assert fast_flops(history)[-1] == pytest.approx(history.info["flops"])
    assert tta_flops(history, 200, 2) == 6 * 200 * history.info["flops_per_image"]
    assert history.info["elapsed"][-1] == pytest.approx(sum(history.seconds))


def test_the_same_seed_trains_the_same_model(fake_data):
    _, a = train_fast(fake_data, epochs=1, seed=4, **TINY)
    _, b = train_fast(fake_data, epochs=1, seed=4, **TINY)
    assert a.val_acc == b.val_acc and a.train_loss == b.train_loss


@pytest.mark.parametrize("switch", ["whiten", "dirac", "frozen_scale", "lookahead", "alternate_flip"])
def test_each_method_can_be_switched_off(fake_data, switch):
    model, history = train_fast(fake_data, epochs=1, **TINY, **{switch: False})
    assert len(history) == 1 and history.info["params"][switch] is False


@pytest.mark.parametrize("options, message", [
    (dict(epochs=0), "epochs must be a number > 0.0"),
    (dict(tta=3), "tta must be an integer >= 0 and <= 2"),
    (dict(lookahed=True), "did you mean 'lookahead'?"),
    (dict(activation="tanh"), "unknown activation 'tanh'"),
])
def test_bad_options_are_refused_with_what_is_allowed(fake_data, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        train_fast(fake_data, **options)


def test_first_reaching_reads_the_first_epoch_at_the_target(fake_data):
    _, history = train_fast(fake_data, epochs=2, **TINY)
    flops = fast_flops(history)
    hit = first_reaching(history, 0.0, flops)
    assert hit["reached"] and hit["epoch"] == 1 and hit["seconds"] == history.seconds[0] and hit["flops"] == flops[0]
    assert not first_reaching(history, 1.01, flops)["reached"]


@pytest.mark.slow
def test_bench_measures_time_to_accuracy_for_both(fake_data):
    reach = time_to_accuracy(fake_data, 0.05, cnn_epochs=1, fast_epochs=1, verbose=False)
    assert set(reach) == {"target", "cnn", "fast"}
    for name in ("cnn", "fast"):
        assert reach[name]["reached"] and reach[name]["seconds"] > 0 and reach[name]["flops"] > 0
    assert reach["fast"]["flops"] > reach["cnn"]["flops"]  # FastNet costs 3x the CNN's FLOPs per image


def test_a_diverging_run_stops_with_a_message(fake_data, monkeypatch):
    from cifar_lab import TrainingDiverged, fast
    real_step = fast.train_step

    def diverging(*args):
        logits, loss = real_step(*args)
        return logits, loss * float("nan")  # as a too-high learning rate ends
    monkeypatch.setattr(fast, "train_step", diverging)
    with pytest.raises(TrainingDiverged, match="try a smaller lr"):
        train_fast(fake_data, epochs=1, **TINY)


def test_orthogonalize_gives_a_matrix_whose_singular_values_sit_near_one():
    from cifar_lab.kit.muon import orthogonalize
    torch.manual_seed(0)
    for shape in [(16, 144), (144, 16)]:  # wide and tall filter banks
        g = torch.randn(*shape) * torch.logspace(-1, 0, shape[1])  # singular values spread 10x or more
        x = orthogonalize(g)
        singular = torch.linalg.svdvals(x)
        assert x.shape == g.shape and 0.3 < singular.min() and singular.max() < 1.5
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        in_gs_basis = u.T @ x @ vh.T  # diagonal when x keeps g's singular vectors
        off = in_gs_basis - torch.diag(torch.diagonal(in_gs_basis))
        assert off.norm() < 0.05 * torch.diagonal(in_gs_basis).norm()


def test_muon_steps_its_other_groups_exactly_as_torchs_nesterov_sgd():
    from cifar_lab.kit.muon import Muon
    torch.manual_seed(0)
    ours, theirs = torch.randn(10, requires_grad=True), None
    theirs = ours.detach().clone().requires_grad_()
    muon = Muon([dict(params=[ours], lr=0.1, weight_decay=0.01)], momentum=0.85)
    sgd = torch.optim.SGD([theirs], lr=0.1, weight_decay=0.01, momentum=0.85, nesterov=True)
    for _ in range(3):
        grad = torch.randn(10)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        muon.step()
        sgd.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_muon_keeps_a_filter_banks_norm_and_moves_it_by_its_learning_rate():
    from cifar_lab.kit.muon import Muon
    torch.manual_seed(0)
    conv = torch.randn(8, 4, 3, 3, requires_grad=True)
    muon = Muon([dict(params=[conv], lr=0.05, momentum=0.6, orthogonal=True)])
    before = conv.detach() * (8 ** 0.5 / conv.detach().norm())  # what the step renormalises to first
    conv.grad = torch.randn_like(conv) * 1e3  # the gradient's scale does not set the step
    muon.step()
    step = (conv.detach() - before).reshape(8, -1)
    assert torch.linalg.svdvals(step / 0.05).max() < 1.5 and step.norm() / 0.05 > 0.5 * 8 ** 0.5


def test_the_muon_record_trains_with_its_own_settings_and_refuses_sgds(fake_data):
    from cifar_lab.kit.muon import make_muon, muon_options
    assert muon_options({}) == {"batch_size": 2000, "epochs": 8.0, "lookahead": False}  # the record's
    assert muon_options({"lookahead": True})["lookahead"] is True  # what is given wins
    with pytest.raises(ValueError, match="lr sets the sgd optimizer's steps; optimizer muon takes the record's"):
        muon_options({"lr": 5.0})
    model, history = train_fast(fake_data, epochs=2, seed=0, make_optimizer=make_muon, **TINY)
    assert model.head_scale == 1 / 32 and history.lr[-1] < history.lr[0]  # logits / fan-in; lr falls to 0
    assert evaluate(model, fake_data).accuracy > 0.2  # chance is 0.1


def test_the_fast_command_runs_the_muon_record(tmp_path, fake_root, capsys):
    from cifar_lab.kit import fast
    out = tmp_path / "muon"
    assert fast.main(["--optimizer", "muon", "--quick", "--widths", "16,32,32", "--output-dir", str(out)]) == 0
    import json
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["fast"]["optimizer"] == "muon"
    assert metrics["models"]["fast"]["fast_options"]["batch_size"] == 2000
    with pytest.raises(SystemExit):
        fast.main(["--optimizer", "muon", "--lr", "5", "--quick", "--output-dir", str(tmp_path / "no")])
    assert "lr sets the sgd optimizer's steps" in capsys.readouterr().err
