# Worked solutions of notebook 01's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# A 64x64 image has 3 x 64 x 64 = 12,288 inputs: a 1024 x 12,288 weight matrix and 1024 biases, four times the
# 32x32 layer's weights. An MLP's first layer grows with the image; a convolution's does not.
answer_1 = 3 * 64 * 64 * 1024 + 1024

# %% exercise 2
# 1,708,810 parameters against 3,679,754 (2.15 times fewer) and, after 2 epochs, usually only a few points below
# the big MLP at 2 epochs: at this budget halving the width costs little.
set_seed(seed)
small = make_model("mlp", hidden="512,256", dropout=0.4)
fit(small, data, **{**run.training, "epochs": 2}, progress=False, verbose=False)
answer_2 = evaluate(small, data, "test").accuracy

# %% exercise 3
# The same seed for both runs, so only the crops differ.
crop_results = {}
for padding in (4, 0):
    set_seed(seed)
    mlp = make_model("mlp", hidden=hidden, dropout=dropout)
    fit(mlp, data, **{**run.training, "epochs": 2, "crop_padding": padding}, progress=False, verbose=False)
    crop_results[padding] = evaluate(mlp, data, "test").accuracy
print(f"test accuracy with crops {crop_results[4]:.1%}, without {crop_results[0]:.1%}")
answer_3 = bool(crop_results[4] > crop_results[0])

# %% exercise 4
# (a): the two losses are not measured the same way; the accuracies are the fairer comparison.
answer_4 = "a"

# %% exercise 5
# Three linear layers with ReLU between them; 1,707,274 parameters (weights and biases).
from torch import nn


class MyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(3072, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                    nn.Linear(256, 10))

    def forward(self, x):
        return self.layers(x)  # (B, 3, 32, 32) -> (B, 10)


answer_5 = MyMLP
