import socket

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights

from cifar_lab import count_parameters
from cifar_lab.kit.reference_models import PARAMETER_COUNTS, REFERENCE_MODELS, resnet18_003


def test_every_report_model_has_a_count_from_the_note():
    assert set(REFERENCE_MODELS) == set(PARAMETER_COUNTS)


@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_model_maps_a_batch_to_logits_with_the_notes_parameter_count(name):
    torch.manual_seed(0)
    model = REFERENCE_MODELS[name]()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert model.train()(images).shape == (4, 10)  # BatchNorm on batch statistics, dropout on
        assert model.eval()(images).shape == (4, 10)  # running statistics, dropout off
    assert count_parameters(model) == PARAMETER_COUNTS[name]


def test_cifar_stem_count_is_the_notes_count_with_a_3x3_conv1():
    # the note counts only the ImageNet stem; a 3x3 conv1 has 3*64*(9-49) fewer weights
    assert PARAMETER_COUNTS["resnet18_003"] == 11_181_642
    assert PARAMETER_COUNTS["resnet18_003_cifar"] == 11_181_642 - 3 * 64 * 49 + 3 * 64 * 9 == 11_173_962


def test_imagenet_stem_keeps_7x7_conv_and_maxpool_cifar_stem_drops_them():
    imagenet, cifar = resnet18_003(stem="imagenet"), resnet18_003(stem="cifar")
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar.modules())
    assert imagenet.fc.in_features == cifar.fc.in_features == 512


def test_pretrained_offline_says_where_to_put_the_weights_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1, "get_state_dict", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError, match=r"resnet18-f37072fd\.pth.*hub/checkpoints.*pretrained=False"):
        resnet18_003(pretrained=True, timeout=1.0)
    assert socket.getdefaulttimeout() == before  # the timeout is put back


def test_pretrained_weights_are_loaded_and_the_cifar_stem_replaces_conv1(monkeypatch):
    # stand-in for the ImageNet file: a resnet18 state dict with a known conv1
    from torchvision.models import resnet18
    state = resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 0.5)
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1, "get_state_dict", lambda *a, **k: state)

    imagenet = resnet18_003(stem="imagenet", pretrained=True)
    assert torch.equal(imagenet.conv1.weight, state["conv1.weight"])
    assert torch.equal(imagenet.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert imagenet.fc.out_features == 10

    cifar = resnet18_003(stem="cifar", pretrained=True)
    assert cifar.conv1.weight.shape == (64, 3, 3, 3)  # new conv1: the pretrained 7x7 one is gone
    assert torch.equal(cifar.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_unknown_stem_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: cifar, imagenet"):
        resnet18_003(stem="tiny")


@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_fewer_than_two_classes_is_refused(name):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        REFERENCE_MODELS[name](num_classes=1)


def test_other_class_counts_change_only_the_last_layer():
    model = REFERENCE_MODELS["net000"](num_classes=3).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert count_parameters(model) == PARAMETER_COUNTS["net000"] - 7 * (512 + 1)
