# Worked solutions of notebook 03's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# The gap is train acc - val acc at the last epoch, averaged over the seeds: the largest one belongs to the
# setting that memorised its training images most (usually "none", or one that regularises little).
answer_1 = table.gap.idxmax()

# %% exercise 2
# The two-standard-deviation rule: the difference of the means must exceed twice the larger spread.
difference = table.loc["label smoothing", "test acc"] - table.loc["none", "test acc"]
spread = max(table.loc["label smoothing", "test acc std"], table.loc["none", "test acc std"])
answer_2 = bool(abs(difference) > 2 * spread)

# %% exercise 3
# (b): the training accuracy of an epoch is measured on that epoch's augmented batches, which are harder
# than the plain images, and while the weights are still changing; validation images are shown plain,
# to the weights at the end of the epoch.
answer_3 = "b"

# %% exercise 4
# Dropout's model options with the augmentation's training options, over the same seeds.
setting("dropout + augmentation", dict(fc_dropout=fc_dropout, conv_dropout=conv_dropout), **AUGMENT)
combined_mean = np.mean([r.accuracy for r in results["dropout + augmentation"]])
answer_4 = bool(combined_mean > max(table.loc["dropout", "test acc"], table.loc["augmentation", "test acc"]))

# %% exercise 5
# A random mask keeps each element with probability 1 - p; dividing by 1 - p keeps the expected value.
import torch


def my_dropout(x, p, training):
    if not training or p == 0:
        return x
    keep = torch.rand_like(x) >= p
    return x * keep / (1 - p)


answer_5 = my_dropout
