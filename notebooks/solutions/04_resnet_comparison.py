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
# (b): the identity path makes "do nothing" easy to learn, and the gradient flows along it unchanged.
answer_3 = "b"
