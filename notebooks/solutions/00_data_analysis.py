# Worked solutions of notebook 00's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# Always answering "cat" is right exactly on the cat images: their share of the validation split, close to
# 0.1 (chance for 10 balanced classes) but not exactly, since the split is a random 5,000 of the training images.
answer_1 = (data.val_labels == data.classes.index("cat")).float().mean().item()

# %% exercise 2
# Each image is 3 channels x 32 rows x 32 columns = 3,072 numbers; 128 of them.
answer_2 = 128 * 3 * 32 * 32

# %% exercise 3
# Channel 0 is red; averaging uint8 needs a float first. On CIFAR-10 it lands within a unit or so of the
# training split's red mean: the split is random, so both are samples of the same images.
answer_3 = data.val_images[:, 0].float().mean().item()

# %% exercise 4
# (c): statistics of the held-out images would be information about them used in training.
answer_4 = "c"

# %% exercise 5
# One image at a time, in Python: the DataLoader calls __getitem__ 128 times per batch, which is why it is
# many times slower than the kit's loader, which indexes, flips and normalises a whole batch in one go.
import torch


class CifarTrain(torch.utils.data.Dataset):
    def __init__(self, images, labels, mean, std):
        self.images, self.labels = images, labels
        self.mean, self.std = mean.view(3, 1, 1), std.view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = (self.images[i].float() / 255 - self.mean) / self.std  # (3, 32, 32)
        if torch.rand(()) < 0.5:
            image = image.flip(-1)  # mirror left-right: the last axis is the width
        return image, int(self.labels[i])


answer_5 = CifarTrain
