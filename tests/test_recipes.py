"""The reference reports' recipes (docs/reference_reports.md): each runs, as the note reads it."""
import json

import pytest
import torch

from cifar_lab.kit import train
from cifar_lab.loader import augment, color_jitter, erase, rotate
from cifar_lab.kit.reference import REFERENCE
from cifar_lab.recipes import build_model, get_recipe, training_options
from cifar_lab.kit.reference_models import PARAMETER_COUNTS


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_reference_recipe_runs_in_quick_mode_with_its_options(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_QUICK", "1")
    out = tmp_path / name
    offline = ["--no-pretrained"] if "pretrained" in REFERENCE[name].model_options else []  # tests stay offline
    assert train.main(["--recipe", name, "--train-size", "100", "--output-dir", str(out), *offline]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (model,) = metrics["models"].values()
    recipe = get_recipe(name)
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.training.items()}
    expected["epochs"] = 1  # quick mode
    assert {k: model["fit_options"][k] for k in expected} == expected
    assert model["parameters"] == PARAMETER_COUNTS[recipe.model]
    assert metrics["params"].get("normalization", "split") == recipe.data.get("normalization", "split")


def test_a_recipe_is_checked_and_overridable():
    options = training_options(get_recipe("001"), epochs=2)
    assert options["epochs"] == 2 and options["padding_mode"] == "reflect" and options["warmup_fraction"] == 0.3
    with pytest.raises(ValueError, match="unknown recipe '005'"):
        get_recipe("005")
    assert sum(p.numel() for p in build_model(get_recipe("004b")).parameters()) == 5_879_946


def test_colour_jitter_at_the_centre_of_its_range_changes_nothing_and_stays_in_range():
    x = torch.rand(4, 3, 8, 8)
    centre, extreme = torch.full((4, 4), 0.5), torch.tensor([[0.0, 1.0, 0.0, 1.0]] * 4).T
    assert torch.allclose(color_jitter(x, centre, 0.2, 0.2, 0.2, 0.1), x, atol=1e-5)
    y = color_jitter(x, extreme, 0.5, 0.5, 0.5, 0.5)
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(y, x)


def test_rotation_and_erasing_do_what_torchvision_does():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(rotate(x, torch.full((2,), 0.5), 15), x)  # the middle of the range: no turn
    quarter = rotate(x, torch.ones(2), 90)  # +90 degrees
    assert torch.allclose(quarter, x.rot90(1, (2, 3)), atol=1e-6) or torch.allclose(quarter, x.rot90(-1, (2, 3)))
    u = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])  # erase the first only
    out = erase(x, u, p=0.5, scale=(0.02, 0.25))
    assert (out[0] == 0).float().mean() == pytest.approx(0.25, abs=0.02) and torch.equal(out[1], x[1])


def test_reflect_padding_mirrors_the_border_instead_of_black():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).expand(1, 3, 4, 4)
    shifted = torch.tensor([[0], [0], [0], [0], [0]])  # crop at the padded corner, no flip
    out = augment(x, crop_padding=1, random=shifted, padding_mode="reflect")
    assert out[0, 0, 0, 0] == x[0, 0, 1, 1] and out.min() > 0 or out[0, 0, 0, 0] == 5
    black = augment(x, crop_padding=1, random=shifted)
    assert black[0, 0, 0, 0] == 0


def test_an_equal_images_budget_is_one_pass_over_a_subset_or_whole_epochs():
    from cifar_lab.kit.reference import equal_images
    assert equal_images(20_000, 40_000) == (1, 20_000)  # half a split: one pass over 20,000 of its images
    assert equal_images(20_000, 45_000) == (1, 20_000)  # the same images, whatever the recipe's split
    assert equal_images(80_000, 40_000) == (2, None)  # two whole epochs
    assert equal_images(40_000, 40_000) == (1, None)
