# Worked solutions of notebook 02's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# 32 filters, each 3 channels x 5 x 5; no bias since BatchNorm follows (2,400 against the 3x3 layer's 864).
answer_1 = 32 * 3 * 5 * 5

# %% exercise 2
# The largest off-diagonal cell of the counts matrix. On CIFAR-10 it is nearly always cat -> dog or
# dog -> cat: small furry animals at 32x32 pixels differ in details the network barely resolves.
answer_2 = tuple(result.most_confused(1)[0][:2])

# %% exercise 3
# 64x64 -> 32x32 -> 16x16 -> 8x8 through three max-pools; the last block has 128 channels whatever the size.
answer_3 = (128, 8, 8)

# %% exercise 4
# Usually True by a few tenths of a point (the model learnt flipped images); run it to see.
answer_4 = bool(evaluate(model, data, "test", tta=True).accuracy > result.accuracy)

# %% exercise 5
# The second convolution maps c_out to c_out; the pool halves height and width.
from torch import nn


def conv_block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(2))


answer_5 = conv_block
