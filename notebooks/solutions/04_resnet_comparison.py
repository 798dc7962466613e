# Worked solutions of notebook 04's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# Forward FLOPs per image: ResNet-18 (CIFAR form) keeps 64 channels at full 32x32 resolution in its
# first stage, which alone costs more than the whole CNN.
gflops = {s["model"]: s["GFLOPs/image"] for s in sizes}
answer_1 = gflops["resnet18"] / gflops["cnn"]

# %% exercise 2
# Accuracy divided by parameters, per model.
answer_2 = (table.test_acc / table.parameters).idxmax()

# %% exercise 3
# (c): the identity path makes "do nothing" easy to learn, and the gradient flows along it unchanged.
answer_3 = "c"

# %% exercise 4
# F's layers first, then the shortcut: a 1x1 conv only where the shape changes, so the sum is defined.
import torch
from torch import nn


class MyBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


answer_4 = MyBlock
