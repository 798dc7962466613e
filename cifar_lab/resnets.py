"""Residual networks: ResNet-18 (CIFAR form, and torchvision's), and He et al.'s CIFAR nets, plain or residual.

He, Zhang, Ren and Sun (2016), "Deep residual learning for image recognition", section 4.2: 6n+2 layers of
3x3 convolutions in three stages of 16, 32 and 64 channels. With identity shortcuts they are ResNet-20 and
ResNet-56; without, the "plain" nets whose deeper one trains *worse* (their Figure 6): the degradation problem
that shortcuts remove.
"""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

from .files import socket_timeout
from .options import check_value


class CifarBlock(nn.Module):
    """Two 3x3 conv-BN layers and, if `shortcut`, He et al.'s identity shortcut around them (option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut, self.stride, self.extra = shortcut, stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:  # no parameters: subsample, and zero channels where the width doubles
            skip = x[:, :, ::self.stride, ::self.stride]  # (B, C_in, H/stride, W/stride)
            out = out + F.pad(skip, (0, 0, 0, 0, 0, self.extra))  # (B, C_out, ...)
        return F.relu(out)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR network of `depth` = 6n+2 layers, with identity shortcuts or (plain) without."""

    def __init__(self, depth: int = 20, shortcuts: bool = True, num_classes: int = 10):
        super().__init__()
        check_value("num_classes", num_classes, int, low=2)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110...), got {depth!r}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, c_in = [], 16
        for c_out in (16, 32, 64):
            for i in range(n):
                blocks.append(CifarBlock(c_in, c_out, 2 if i == 0 and c_out != 16 else 1, shortcuts))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)  # (B, 64, 8, 8)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # the paper's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def plain20(num_classes: int = 10) -> CifarResNet:
    """20 layers, no shortcuts."""
    return CifarResNet(20, False, num_classes)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """20 layers with identity shortcuts (0.27M parameters)."""
    return CifarResNet(20, True, num_classes)


def plain56(num_classes: int = 10) -> CifarResNet:
    """56 layers, no shortcuts: trains worse than plain20 (the degradation problem)."""
    return CifarResNet(56, False, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    """56 layers with identity shortcuts (0.85M parameters)."""
    return CifarResNet(56, True, num_classes)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut: the residual block of ResNet-18."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # match shape so the sum is defined
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 in its CIFAR form: 3x3 stem, no max-pool, four stages of two basic blocks."""

    def __init__(self, num_classes: int = 10, width: int = 64):  # channels of the first stage
        super().__init__()
        check_value("width", width, int, low=1)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(c_in, width * mult, stride), BasicBlock(width * mult, width * mult)]
            c_in = width * mult
        self.stages = nn.Sequential(*stages)  # (B, 8*width, 4, 4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


RESNET18_STEMS = ("cifar", "imagenet")


def torchvision_resnet18(num_classes: int = 10, pretrained: bool = False, stem: str = "cifar",
                         timeout: float = 20.0) -> nn.Module:
    """torchvision's resnet18 with a new fc layer, optionally starting from ImageNet weights.

    stem="cifar" puts a 3x3 stride-1 conv and no max-pool in front (32x32 images keep their resolution;
    a pretrained conv1 is replaced); stem="imagenet" keeps the 7x7 stride-2 conv and the max-pool.
    """
    from torchvision.models import ResNet18_Weights, resnet18

    stem = check_value("stem", stem, str, choices=tuple(RESNET18_STEMS))
    check_value("num_classes", num_classes, int, low=2)
    if not pretrained:
        model = resnet18()
    else:
        try:
            # offline: fail in seconds, never hang; torch.hub prints its cache path to stdout (a report shows
            # no machine's folders), its progress bar stays on stderr
            with socket_timeout(timeout), contextlib.redirect_stdout(io.StringIO()):
                model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)  # downloads, or reads the cached file
        except Exception as e:
            raise RuntimeError(
                f"Could not get torchvision's pretrained resnet18 weights ({type(e).__name__}: {e}), so place "
                f"resnet18-f37072fd.pth in $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints, "
                f"here {torch.hub.get_dir()}/checkpoints) or use pretrained=False.") from e
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
