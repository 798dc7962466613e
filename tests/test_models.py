import urllib.error

import pytest
import torch

from cifar_lab import count_parameters, flops_per_image, make_model
from cifar_lab.models import MODELS


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "resnet9", "torchvision_resnet18", "plain20", "resnet56"])
def test_every_model_maps_a_batch_to_logits(name):
    model = make_model(name).eval()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert model.config["name"] == name


def test_knobs_change_the_model():
    small, big = make_model("cnn", widths=(8, 16, 32)), make_model("cnn")
    assert count_parameters(small) < count_parameters(big)
    no_bn = make_model("cnn", batchnorm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    assert make_model("mlp", num_classes=3)(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        make_model("vgg16")
    assert all(name in str(e.value) for name in MODELS)


def test_count_parameters_and_flops_of_a_known_layer():
    mlp = make_model("mlp", hidden=(4, 4), batchnorm=False)
    assert count_parameters(mlp) == (3072 * 4 + 4) + (4 * 4 + 4) + (4 * 10 + 10)
    assert flops_per_image(mlp) == 2 * (3072 * 4 + 4 * 4 + 4 * 10)


def test_whitening_stem_decorrelates_patches():
    model = make_model("resnet9", widths=(8, 8, 8))
    images = torch.randn(64, 3, 32, 32).cumsum(3)  # strongly correlated neighbours
    model.whiten(images)
    out = model.whitening(images).permute(0, 2, 3, 1).reshape(-1, 12)  # (N*31*31, 12)
    cov = torch.cov(out.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert not model.whitening.weight.requires_grad


def test_a_failed_weights_download_prints_no_cache_path(monkeypatch, tmp_path, capsys):
    """torch.hub announces the download with this machine's cache folder; a report must not show it."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights file: torch.hub tries to download
    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="pretrained resnet18 weights"):
        make_model("torchvision_resnet18", pretrained=True)
    assert str(tmp_path) not in capsys.readouterr().out


def test_pretrained_weights_offline_give_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.models.resnet18", offline)
    with pytest.raises(RuntimeError, match="pretrained resnet18 weights.*pretrained=False"):
        make_model("torchvision_resnet18", pretrained=True)


def test_he_et_als_cifar_nets_have_the_papers_sizes_and_plain_differs_only_by_its_shortcuts():
    """ResNet-20 and -56 hold 0.27M and 0.85M parameters (He et al. 2016, Table 6); a plain net is the same
    network without the identity shortcuts, so the two differ in what they compute, not in their weights."""
    assert count_parameters(make_model("resnet20")) == count_parameters(make_model("plain20")) == 269_722
    assert count_parameters(make_model("resnet56")) == 853_018
    torch.manual_seed(0)
    residual = make_model("resnet20").eval()
    plain = make_model("plain20").eval()
    plain.load_state_dict(residual.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(residual(x), plain(x))


def test_a_cifar_resnet_depth_must_be_6n_plus_2():
    from cifar_lab.resnets import CifarResNet
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        CifarResNet(depth=21)
