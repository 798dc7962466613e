"""The models of the course, from a 3-layer MLP to FastNet (the residual nets: resnets.py), and a registry
to build them by name."""
from __future__ import annotations

import inspect

import torch
from torch import nn

from .options import MODEL, check, check_value, default, did_you_mean
from .resnets import ResNet18, plain20, plain56, resnet20, resnet56, torchvision_resnet18


class MLP(nn.Module):
    """Three fully connected layers on the flattened image, with BatchNorm and dropout."""

    def __init__(self, num_classes: int = 10,
                 hidden: tuple[int, int] = default("hidden"),  # options.MODEL says what each means
                 dropout: float = default("dropout"), batchnorm: bool = default("batchnorm")):
        super().__init__()
        layers, width = [nn.Flatten()], 3 * 32 * 32  # (B, C, H, W) -> (B, 3072)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h) if batchnorm else nn.Identity(),
                       nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def conv_bn(c_in: int, c_out: int, batchnorm: bool = True) -> list[nn.Module]:
    """3x3 convolution, optional BatchNorm, ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm),
            nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(), nn.ReLU(inplace=True)]


class CNN(nn.Module):
    """Three conv blocks ((conv-BN-ReLU) x convs_per_block, then max-pool) and an FC head with dropout."""

    def __init__(self, num_classes: int = 10,
                 widths: tuple[int, int, int] = default("widths"),  # options.MODEL says what each means
                 convs_per_block: int = default("convs_per_block"),
                 fc_width: int = 256,  # width of the hidden FC layer
                 batchnorm: bool = default("batchnorm"), conv_dropout: float = default("conv_dropout"),
                 fc_dropout: float = default("fc_dropout")):
        super().__init__()
        check_value("fc_width", fc_width, int, low=1)
        blocks, c_in = [], 3
        for w in widths:
            for i in range(convs_per_block):
                blocks += conv_bn(c_in if i == 0 else w, w, batchnorm)
            blocks += [nn.MaxPool2d(2)]
            blocks += [nn.Dropout2d(conv_dropout)] if conv_dropout > 0 else []
            c_in = w
        self.features = nn.Sequential(*blocks)  # (B, 3, 32, 32) -> (B, widths[-1], 4, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 4 * 4, fc_width), nn.ReLU(inplace=True),
                                  nn.Dropout(fc_dropout), nn.Linear(fc_width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.f = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class GlobalMaxPool(nn.Module):
    """The largest value of each channel: (B, C, H, W) -> (B, C).

    Written with amax, whose CUDA backward is deterministic (AdaptiveMaxPool2d's is not, so it broke
    `torch.use_deterministic_algorithms(True)`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


def patch_whitening(images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """Weights (12, 3, 2, 2) of a 2x2 convolution whose outputs are the images' 2x2 patches, PCA-whitened."""
    patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, 3, H-1, W-1, 2, 2)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)  # (N*(H-1)*(W-1), 12)
    patches = patches - patches.mean(0)
    eigvals, eigvecs = torch.linalg.eigh(patches.T @ patches / len(patches))
    weight = eigvecs.T / (eigvals + eps).sqrt()[:, None]  # (12, 12): one output per component
    return weight.view(12, 3, 2, 2)


class ResNet9(nn.Module):
    """A fast small residual net (ResNet-9 style, after the fast CIFAR-10 recipes).

    A 2x2 "whitening" stem (set it from the data with `whiten`), three conv-pool
    stages, residual blocks after the first and last, and a scaled linear head.
    """

    def __init__(self, num_classes: int = 10,
                 widths: tuple[int, int, int] = (64, 128, 256),  # channels of the three stages
                 head_scale: float = 0.125):  # logits multiplier; keeps early softmax soft
        super().__init__()
        self.whitening = nn.Conv2d(3, 12, 2, padding=0, bias=True)  # (B, 12, 31, 31)
        w1, w2, w3 = widths
        self.net = nn.Sequential(
            *conv_bn(12, w1, True), nn.MaxPool2d(2),  # 15x15
            Residual(*conv_bn(w1, w1), *conv_bn(w1, w1)),
            *conv_bn(w1, w2), nn.MaxPool2d(2),  # 7x7
            *conv_bn(w2, w3), nn.MaxPool2d(2),  # 3x3
            Residual(*conv_bn(w3, w3), *conv_bn(w3, w3)),
            GlobalMaxPool(), nn.Flatten(), nn.Linear(w3, num_classes, bias=False))
        self.head_scale = head_scale

    @torch.no_grad()
    def whiten(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the 2x2 stem to the PCA whitening of the images' 2x2 patches (normalised float, (N, 3, H, W))."""
        self.whitening.weight.copy_(patch_whitening(images, eps))
        self.whitening.bias.zero_()
        self.whitening.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.whitening(x)) * self.head_scale


class ShiftOnlyBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose scale stays 1: only the shift (bias) learns."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12):
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    """conv, max-pool, BN, activation, conv, BN, activation: one of FastNet's three stages."""

    def __init__(self, c_in: int, c_out: int, frozen_scale: bool = True, activation: str = "gelu"):
        super().__init__()
        norm = ShiftOnlyBatchNorm if frozen_scale else nn.BatchNorm2d
        act = nn.GELU if activation == "gelu" else nn.ReLU
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                 norm(c_out), act(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), norm(c_out), act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FastNet(nn.Module):
    """The fast recipe's network (after airbench): a 2x2 whitening stem, three wide conv groups, a scaled head.

    `whiten(images)` freezes the stem's weights to the patches' whitening (its bias still learns);
    `dirac=True` starts each convolution as the identity on its first input channels, so a fresh net
    passes its input through.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                 frozen_scale: bool = True, activation: str = "gelu", dirac: bool = True,
                 head_scale: float = 1 / 9):  # logits multiplier: keeps early softmax soft
        super().__init__()
        check_value("activation", activation, str, choices=("gelu", "relu"))
        self.whitening = nn.Conv2d(3, 24, 2, padding=0, bias=True)  # (B, 24, 31, 31)
        act = nn.GELU if activation == "gelu" else nn.ReLU
        w1, w2, w3 = widths
        self.net = nn.Sequential(act(),
                                 ConvGroup(24, w1, frozen_scale, activation),  # (B, w1, 15, 15)
                                 ConvGroup(w1, w2, frozen_scale, activation),  # (B, w2, 7, 7)
                                 ConvGroup(w2, w3, frozen_scale, activation),  # (B, w3, 3, 3)
                                 GlobalMaxPool(), nn.Linear(w3, num_classes, bias=False))
        self.head_scale = head_scale
        if dirac:
            with torch.no_grad():
                for m in self.net.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.dirac_(m.weight[:m.in_channels])  # output i copies input i at first

    @torch.no_grad()
    def whiten(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Fix the stem to the whitening of the images' 2x2 patches and its negative (24 outputs); bias zero."""
        weight = patch_whitening(images, eps)
        self.whitening.weight.copy_(torch.cat([weight, -weight]))  # both signs survive the activation
        self.whitening.bias.zero_()
        self.whitening.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.whitening(x)) * self.head_scale


MODELS = {"mlp": MLP, "cnn": CNN, "resnet18": ResNet18, "resnet9": ResNet9, "fastnet": FastNet,
          "torchvision_resnet18": torchvision_resnet18,
          "plain20": plain20, "resnet20": resnet20, "plain56": plain56, "resnet56": resnet56}


def make_model(name: str, **kwargs) -> nn.Module:
    """Build a model of the course by name (see `MODELS`); keyword arguments go to its constructor."""
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}{did_you_mean(name, MODELS)}; valid names: {', '.join(MODELS)}")
    kwargs.update(check({k: v for k, v in kwargs.items() if k in MODEL}, MODEL))  # "64,128" -> (64, 128)
    if "num_classes" in kwargs:
        check_value("num_classes", kwargs["num_classes"], int, low=2)
    known = inspect.signature(MODELS[name.lower()]).parameters
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        raise ValueError(f"{name} has no option {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
                         f"its options: {', '.join(known)}")
    try:
        model = MODELS[name.lower()](**kwargs)
    except TypeError as e:
        raise ValueError(f"{name}: an option has a value of the wrong type ({', '.join(kwargs)}): {e}") from None
    model.config = {"name": name.lower(), **kwargs}  # lets checkpoints say which model they hold
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Forward multiply-adds x2 of the convolutions and linear layers for one image."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * k * output[0].numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    _one_image(model, image_size, count, lambda m: isinstance(m, (nn.Conv2d, nn.Linear)))
    return total


def layers(model: nn.Module, image_size: int = 32) -> list[dict]:
    """One row per layer (module without children) for one image: its name, type, output shape, parameters."""
    names, rows = {m: n for n, m in model.named_modules()}, []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor):
            rows.append({"layer": names[module], "type": type(module).__name__, "output shape": tuple(output.shape[1:]),
                         "parameters": sum(p.numel() for p in module.parameters(recurse=False))})

    _one_image(model, image_size, record, lambda m: not any(m.children()))
    return rows


def _one_image(model: nn.Module, image_size: int, hook, which) -> None:
    """One blank image through the model in eval mode, with `hook` on the modules `which` picks."""
    hooks = [m.register_forward_hook(hook) for m in model.modules() if which(m)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
