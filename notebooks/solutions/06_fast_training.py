# Worked solutions of notebook 06's exercises. Each "# %% exercise N" section replaces the line
# `answer_N = None` of that exercise's cell (the tests run the notebook that way, so these never rot).

# %% exercise 1
# 24 output channels at 31 x 31 positions (a 2x2 kernel without padding), each 3 x 2 x 2 multiply-adds.
answer_1 = 2 * 24 * 31 * 31 * 3 * 2 * 2

# %% exercise 2
# Flatten the (500, 12, 31, 31) outputs to one row per patch, then the 12 x 12 covariance. It is close to
# the identity except where eps = 5e-4 shrinks the faint components' variance (lambda / (lambda + eps)).
images = next(iter(data.loader("train", 500, train=False)))[0]
with torch.no_grad():
    patches = model.whitening(images.float())[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # (patches, 12)
answer_2 = torch.cov(patches.T)

# %% exercise 3
# f**3 = 0.5 / 0.95**5, so f = (0.5 / 0.7738) ** (1/3), about 0.865: the averaging bites only in the last
# seventh of the run, once the learning rate has come down.
answer_3 = (0.5 / 0.95 ** 5) ** (1 / 3)
