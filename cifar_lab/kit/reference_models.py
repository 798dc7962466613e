"""The models of the five reference reports (ids 000-004), written out layer by layer.

Each class follows docs/reference_reports.md in the order it lists the layers, so that a
student can hold it next to the report and compare line by line. Where the note marks a reading as
"Unclear", the comment on that line says which reading is used. Every model maps a batch of CIFAR-10
images (B, 3, 32, 32) to logits (B, num_classes).

    model = REFERENCE_MODELS["cnn001"]()          # or CNN001()
    count_parameters(model) == PARAMETER_COUNTS["cnn001"]
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from ..models import torchvision_resnet18
from ..options import check_value

# --------------------------------------------------------------------------------------------------
# 000: regularised 3-conv CNN
# --------------------------------------------------------------------------------------------------


class Net000(nn.Module):
    """Report 000's 3-conv CNN: 3x[conv3x3-BN-ReLU-maxpool], 32/64/128 channels, FC 512 with BN and dropout."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.block2 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.block3 = nn.Sequential(
            nn.Conv2d(64, 128, kernel_size=3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.fc1 = nn.Linear(128 * 4 * 4, 512)
        self.bn_fc1 = nn.BatchNorm1d(512)
        self.relu = nn.ReLU()
        # the report lists Linear-BN1d-Dropout with an F.relu: read as Linear-BN1d-ReLU-Dropout
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)  # (B, 32, 16, 16)
        x = self.block2(x)  # (B, 64, 8, 8)
        x = self.block3(x)  # (B, 128, 4, 4)
        x = torch.flatten(x, 1)  # (B, 128, 4, 4) -> (B, 2048)
        x = self.dropout(self.relu(self.bn_fc1(self.fc1(x))))
        return self.fc2(x)


# --------------------------------------------------------------------------------------------------
# 001: 6-conv "3-block" CNN and 3-layer MLP
# --------------------------------------------------------------------------------------------------


class CNN001(nn.Module):
    """Report 001's 6-conv CNN: three blocks of two 'same' conv-BN-ReLU, maxpool, Dropout(0.25); FC 1024-512-10."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding="same"), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding="same"), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2, 2), nn.Dropout(0.25))
        self.block2 = nn.Sequential(
            # the report's listing has no ReLU after this first conv (probably a typo): a ReLU is used
            nn.Conv2d(64, 128, kernel_size=3, padding="same"), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 128, kernel_size=3, padding="same"), nn.BatchNorm2d(128), nn.ReLU(),
            nn.MaxPool2d(2, 2), nn.Dropout(0.25))
        self.block3 = nn.Sequential(
            nn.Conv2d(128, 256, kernel_size=3, padding="same"), nn.BatchNorm2d(256), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding="same"), nn.BatchNorm2d(256), nn.ReLU(),
            nn.MaxPool2d(2, 2), nn.Dropout(0.25))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 4 * 4, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)  # (B, 64, 16, 16)
        x = self.block2(x)  # (B, 128, 8, 8)
        x = self.block3(x)  # (B, 256, 4, 4)
        x = torch.flatten(x, 1)  # (B, 256, 4, 4) -> (B, 4096)
        return self.classifier(x)


class MLP001(nn.Module):
    """Report 001's 3-layer MLP: 3072 -> 1024 -> 512 -> 10, each hidden layer with BN1d, ReLU, Dropout(0.5)."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.fc1 = nn.Linear(3 * 32 * 32, 1024)
        self.bn1 = nn.BatchNorm1d(1024)
        self.fc2 = nn.Linear(1024, 512)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc3 = nn.Linear(512, num_classes)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # (B, 3, 32, 32) -> (B, 3072)
        x = self.dropout(self.relu(self.bn1(self.fc1(x))))
        # the report writes this dropout as `self.dropout(x)` without assigning it, so as printed it does
        # nothing; the intended Dropout(0.5) is applied here
        x = self.dropout(self.relu(self.bn2(self.fc2(x))))
        return self.fc3(x)


# --------------------------------------------------------------------------------------------------
# 002: 3-layer MLP and 3-conv CNN, hand-tuned
# --------------------------------------------------------------------------------------------------


class MLP002(nn.Module):
    """Report 002's MLP: 3072 -> 512 -> 256 -> 10, each hidden layer with BN1d, ReLU, Dropout(0.4)."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),  # (B, 3, 32, 32) -> (B, 3072)
            nn.Linear(3 * 32 * 32, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.4),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.4),
            nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN002(nn.Module):
    """Report 002's CNN: 3x[conv3x3-BN-ReLU-Dropout2d(0.1)-maxpool], 32/64/128 channels, Dropout(0.4), Linear."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Dropout2d(0.1), nn.MaxPool2d(2, 2),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Dropout2d(0.1), nn.MaxPool2d(2, 2),  # (B, 64, 8, 8)
            nn.Conv2d(64, 128, kernel_size=3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Dropout2d(0.1), nn.MaxPool2d(2, 2))  # (B, 128, 4, 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 128, 4, 4) -> (B, 2048)
            nn.Dropout(0.4),
            nn.Linear(128 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------------
# 003: tuned course Net and torchvision ResNet18
# --------------------------------------------------------------------------------------------------


class Net003(nn.Module):
    """Report 003's fine-tuned Net (78.08%): 3x[conv3x3-ReLU-maxpool], 16/32/64 channels, FC 500, no BN."""

    # The note reads the report's 7808/10000 table as this fine-tuned Net (the baseline is ~67%).

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))  # (B, 16, 16, 16)
        x = self.pool(self.relu(self.conv2(x)))  # (B, 32, 8, 8)
        x = self.pool(self.relu(self.conv3(x)))  # (B, 64, 4, 4)
        x = torch.flatten(x, 1)  # (B, 64, 4, 4) -> (B, 1024)
        x = self.dropout(x)
        x = self.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


def resnet18_003(stem: str = "imagenet", pretrained: bool = False, num_classes: int = 10,
                 timeout: float = 20.0) -> nn.Module:
    """Report 003's ResNet18: torchvision's resnet18 with fc -> Linear(512, num_classes).

    stem="imagenet" keeps the 7x7 stride-2 conv1 and the max-pool, as report 003 did on 32x32 input
    (the image is 8x8 after the stem and 1x1 before the average pool). stem="cifar" replaces conv1 by
    a 3x3 stride-1 conv and the max-pool by Identity, the usual form for 32x32 images.

    pretrained=True loads torchvision's ImageNet weights (ResNet18_Weights.IMAGENET1K_V1, as the report
    did; nothing is frozen) with a socket timeout of `timeout` seconds; offline it raises a RuntimeError
    saying where to put the weights file. With stem="cifar" the pretrained 7x7 conv1 is replaced by a
    new, randomly initialised 3x3 conv; the fc layer is always new.
    """
    return torchvision_resnet18(num_classes, pretrained=pretrained, stem=stem, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# 004: deep 4-conv CNN, fast (A) and improved (B)
# --------------------------------------------------------------------------------------------------
# The report's text pools after conv1 and conv3, but only pooling after conv2 and conv4 gives its
# stated 128*3*3 = 1152 inputs to the first Linear, so that layout is used in A and B.


class CNN004A(nn.Module):
    """Report 004's fast CNN A: unpadded convs 256-512 (3x3), maxpool, 256-128 (5x5), maxpool, one Linear."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.conv1 = nn.Conv2d(3, 256, kernel_size=3, padding=0)
        self.conv2 = nn.Conv2d(256, 512, kernel_size=3, padding=0)
        self.conv3 = nn.Conv2d(512, 256, kernel_size=5, padding=0)
        self.conv4 = nn.Conv2d(256, 128, kernel_size=5, padding=0)
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(128 * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))  # (B, 256, 30, 30)
        x = self.relu(self.conv2(x))  # (B, 512, 28, 28)
        x = self.pool(x)  # (B, 512, 14, 14)
        x = self.relu(self.conv3(x))  # (B, 256, 10, 10)
        x = self.relu(self.conv4(x))  # (B, 128, 6, 6)
        x = self.pool(x)  # (B, 128, 3, 3)
        x = torch.flatten(x, 1)  # (B, 128, 3, 3) -> (B, 1152)
        return self.fc(x)


class CNN004B(nn.Module):
    """Report 004's improved CNN B: A's convs with BN after conv1 and conv4, then FC 512-ReLU-Dropout(0.5)-10."""

    def __init__(self, num_classes: int = 10):
        check_value("num_classes", num_classes, int, low=2)
        super().__init__()
        self.conv1 = nn.Conv2d(3, 256, kernel_size=3, padding=0)
        self.bn1 = nn.BatchNorm2d(256)
        self.conv2 = nn.Conv2d(256, 512, kernel_size=3, padding=0)
        self.conv3 = nn.Conv2d(512, 256, kernel_size=5, padding=0)
        self.conv4 = nn.Conv2d(256, 128, kernel_size=5, padding=0)
        self.bn4 = nn.BatchNorm2d(128)
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(128 * 3 * 3, 512)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 256, 30, 30); BN between conv and ReLU
        x = self.relu(self.conv2(x))  # (B, 512, 28, 28)
        x = self.pool(x)  # (B, 512, 14, 14)
        x = self.relu(self.conv3(x))  # (B, 256, 10, 10)
        x = self.relu(self.bn4(self.conv4(x)))  # (B, 128, 6, 6)
        x = self.pool(x)  # (B, 128, 3, 3)
        x = torch.flatten(x, 1)  # (B, 128, 3, 3) -> (B, 1152)
        x = self.relu(self.fc1(x))  # the ReLU in B's head is implied by the report, not stated
        x = self.dropout(x)
        return self.fc2(x)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "net000": Net000,
    "cnn001": CNN001,
    "mlp001": MLP001,
    "mlp002": MLP002,
    "cnn002": CNN002,
    "net003": Net003,
    "resnet18_003": resnet18_003,  # stem="imagenet", as the report ran it
    "resnet18_003_cifar": functools.partial(resnet18_003, stem="cifar"),
    "cnn004a": CNN004A,
    "cnn004b": CNN004B,
}

# Trainable parameters with num_classes=10, as counted in the note (its "*" counts).
PARAMETER_COUNTS: dict[str, int] = {
    "net000": 1_148_938,
    "cnn001": 5_856_138,
    "mlp001": 3_679_754,
    "mlp002": 1_708_810,
    "cnn002": 114_186,
    "net003": 541_094,
    "resnet18_003": 11_181_642,
    # not in the note: its 11,181,642 with the 7x7 conv1 (3*64*7*7 weights) swapped for a 3x3 (3*64*3*3)
    "resnet18_003_cifar": 11_181_642 - 3 * 64 * 7 * 7 + 3 * 64 * 3 * 3,  # 11,173,962
    "cnn004a": 5_295_242,
    "cnn004b": 5_879_946,
}
