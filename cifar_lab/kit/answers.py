"""The answer key of the notebooks' exercises, kept out of the students' notebooks.

An exercise cell holds only the student's answer and `print(run.check(N, answer_N))`; the expected value is
computed here from the notebook's own variables (its run), so that it is never printed or shown above the
question. Coding tasks run the student's code here. Not a secret: the key ships with the kit, as the worked
solutions do; a course that needs secrecy keeps its own copy of both (docs/teachers.md).
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Callable

from . import exercises
from .exercises import check

Check = Callable[[dict, Any], str]  # (the notebook's globals, the answer) -> "right" / "not quite: ..." / ...


def _value(expected: Callable[[dict], Any], hint: str, tolerance: float = 0.0) -> Check:
    """An answer compared with a value the run gives (`expected(globals)`)."""
    return lambda g, answer: check(answer, expected(g), hint, tolerance)


def _fixed(expected: Any, hint: str) -> Check:
    """An answer compared with a value that does not depend on the run (a multiple choice)."""
    return lambda g, answer: check(answer, expected, hint)


def _coding_task(hint: str) -> Callable[[Callable[[dict, Any], tuple[str, bool]]], Check]:
    """A check that runs the student's code: `run(globals, answer)` gives (what it measured, passed)."""
    def wrap(run: Callable[[dict, Any], tuple[str, bool]]) -> Check:
        def checked(g: dict, answer: Any) -> str:
            if answer is None:
                return check(None, True, hint)
            if not (inspect.isclass(answer) or inspect.isfunction(answer)):  # a number, or an instance
                made = f"an instance of {type(answer).__name__}" if callable(answer) else \
                    f"the {type(answer).__name__} {answer!r:.40}"
                return f"not quite: give your class or function itself (its name, not called), not {made}"
            measured, passed = run(g, answer)
            return f"{measured}\n{check(bool(passed), True, hint)}"
        checked.__doc__ = run.__doc__
        return checked
    return wrap


# ---------------------------------------------------------------- 00: the data


@_coding_task("return (normalised float image, int label); the image must equal the normalised original or its "
              "mirror (flip the last axis)")
def _dataset_class(g: dict, answer: Any) -> tuple[str, bool]:
    """00.5: a torchvision-style Dataset over the training split, then timed against the kit's loader."""
    import torch

    data = g["data"]
    mean, std = g["channel_stats"](data.train_images)
    dataset = answer(data.train_images, data.train_labels, mean, std)
    image, label = dataset[0]
    plain = (data.train_images[0].float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)  # (3, 32, 32)
    ok = (len(dataset) == len(data.train_labels) and isinstance(label, int) and label == int(data.train_labels[0])
          and image.dtype == torch.float32 and (torch.allclose(image, plain, atol=1e-4) or
                                                torch.allclose(image, plain.flip(-1), atol=1e-4)))
    speed = {}
    for name, loader in (("your DataLoader", torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True)),
                         ("the kit's loader", data.loader("train", batch_size=128))):
        started, seen = time.perf_counter(), 0
        for _, (x, y) in zip(range(20), loader):
            seen += len(y)
        speed[name] = seen / (time.perf_counter() - started)
    return ", ".join(f"{k}: {v:,.0f} images/s" for k, v in speed.items()), ok


# ---------------------------------------------------------------- 01: the MLP


def _small_mlp(g: dict, answer: Any) -> str:
    """01.2: the 512/256 MLP with dropout 0.4, trained by the student; its test accuracy."""
    import torch

    if "small" not in g:
        return "first build and train `small` (see the exercise)"
    small, count = g["small"], g["count_parameters"]
    if count(small) != 1_708_810 or any(m.p != 0.4 for m in small.modules() if isinstance(m, torch.nn.Dropout)):
        return f"not quite: `small` has {count(small):,} parameters; the 512/256 MLP with dropout 0.4 has 1,708,810"
    return check(answer, g["evaluate"](small, g["data"], "test").accuracy,
                 "evaluate your `small` on the test split and give its .accuracy", tolerance=1e-4)


def _crops(g: dict, answer: Any) -> str:
    """01.3: did random crops raise the MLP's test accuracy in the student's pair of runs?"""
    if "crop_results" not in g:
        return "first train both and keep their test accuracies in crop_results = {4: acc_with, 0: acc_without}"
    results = g["crop_results"]
    return check(answer, bool(results[4] > results[0]), "compare crop_results[4] with crop_results[0]")


@_coding_task("nn.Flatten(), then three nn.Linear layers with nn.ReLU between them; forward returns the logits")
def _mlp_class(g: dict, answer: Any) -> tuple[str, bool]:
    """01.5: the MLP as the student's own nn.Module, counted, run and trained one epoch with fit."""
    import torch

    mine = answer()
    shape_ok = tuple(mine(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)
    count_ok = g["count_parameters"](mine) == 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    g["fit"](mine, g["data"], **{**g["run"].training, "epochs": 1}, progress=False, verbose=False)  # 01's recipe
    accuracy = g["evaluate"](mine, g["data"], "test").accuracy
    learnt = g["run"].quick or accuracy > 0.2  # synthetic data in quick mode: nothing to learn
    return f"your MLP after one epoch: {accuracy:.1%} test accuracy (chance: 10%)", shape_ok and count_ok and learnt


# ---------------------------------------------------------------- 02: the CNN


def _most_confused(g: dict, answer: Any) -> str:
    """02.2: the (true, predicted) pair with the most test mistakes; any of a tie counts."""
    result, data = g["result"], g["data"]
    top = result.most_confused(1)[0][2]
    ties = {(t, p) for t, p, n in result.most_confused(len(data.classes) ** 2) if n == top}  # the largest count
    given = tuple(str(a).strip().lower() for a in answer) if answer else None
    return check(None if given is None else given in ties, True,
                 "find the largest off-diagonal count in the confusion matrix (rows: true class)")


def _shape_64(g: dict, answer: Any) -> str:
    """02.3: the feature map of a 64x64 image."""
    import torch

    fresh = g["make_model"]("cnn", fc_dropout=g["fc_dropout"])  # a fresh one: a forward pass in training mode
    shape = tuple(fresh.features(torch.zeros(1, 3, 64, 64)).shape[1:])  # would move the trained model's statistics
    return check(tuple(answer) if answer else None, shape,
                 "each max-pool halves height and width; the channels do not depend on the image size")


def _mirrored(g: dict, answer: Any) -> str:
    """02.4: does flip TTA raise this model's test accuracy? (Printed after the answer is given.)"""
    if answer is None:
        return check(None, True, "")
    mirrored = g["evaluate"](g["model"], g["data"], "test", tta=True)
    raised = bool(mirrored.accuracy > g["result"].accuracy)
    return (f"without: {g['result'].accuracy:.2%}, with mirrored images: {mirrored.accuracy:.2%}\n" +
            check(answer, raised, "compare the two accuracies printed above (and whether this model trained on "
                                  "mirrored images: the flip parameter)"))


@_coding_task("nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), twice (the second "
              "conv from c_out to c_out), then nn.MaxPool2d(2)")
def _conv_block(g: dict, answer: Any) -> tuple[str, bool]:
    """02.5: the student's conv block against the CNN's first block, and three of them stacked."""
    import torch

    count, first = g["count_parameters"], answer(3, 32)
    same = count(first) == count(g["model"].features[:7])  # the CNN's first block: 7 layers
    shape = tuple(torch.nn.Sequential(first, answer(32, 64), answer(64, 128))(torch.zeros(2, 3, 32, 32)).shape)
    return f"your three blocks: (2, 3, 32, 32) -> {shape}", same and shape == (2, 128, 4, 4)


# ---------------------------------------------------------------- 03: regularisation


def _label_smoothing_reliable(g: dict, answer: Any) -> str:
    """03.2: the two-standard-deviation rule, label smoothing against the baseline."""
    table = g["table"]
    if "label smoothing" not in table.index:
        return f"settings={g['settings']!r} left label smoothing out: rerun with settings='all'"
    if table.loc["none", "n"] < 2:
        return "one seed per setting has no spread to compare with: rerun with seeds=2 or more"
    difference = table.loc["label smoothing", "test acc"] - table.loc["none", "test acc"]
    spread = max(table.loc["label smoothing", "test acc std"], table.loc["none", "test acc std"])
    return check(answer, bool(abs(difference) > 2 * spread),
                 "difference of the two 'test acc' means against 2 x the larger 'test acc std'")


def _combined(g: dict, answer: Any) -> str:
    """03.4: does dropout + augmentation beat both alone?"""
    import numpy as np

    table, results, combined = g["table"], g["results"], "dropout + augmentation"
    if not {"dropout", "augmentation"} <= set(table.index):
        return f"settings={g['settings']!r} left dropout or augmentation out: rerun with settings='all'"
    if combined not in results:
        return (f"first train {combined!r} with setting(...): dropout's model options with the augmentation's "
                "training options")
    mean = np.mean([r.accuracy for r in results[combined]])
    beats = bool(mean > max(table.loc["dropout", "test acc"], table.loc["augmentation", "test acc"]))
    return check(answer, beats, f"its mean is {mean:.1%}; compare it with both rows of the table")


@_coding_task("keep = torch.rand_like(x) >= p; return x * keep / (1 - p) in training, x otherwise")
def _dropout(g: dict, answer: Any) -> tuple[str, bool]:
    """03.5: the student's dropout against torch.nn.functional.dropout on a million ones."""
    import torch

    ones = torch.ones(1_000_000)
    mine, torchs = answer(ones, 0.3, True), torch.nn.functional.dropout(ones, 0.3, True)
    same = bool(abs((mine == 0).float().mean() - 0.3) < 0.005 and torch.allclose(mine[mine != 0], torch.tensor(1 / 0.7))
                and torch.equal(answer(ones, 0.3, False), ones))
    return (f"zeroed: yours {(mine == 0).float().mean():.4f}, PyTorch's {(torchs == 0).float().mean():.4f}; mean: "
            f"yours {mine.mean():.4f}, PyTorch's {torchs.mean():.4f}"), same


# ---------------------------------------------------------------- 04: ResNets


def _flops_ratio(g: dict, answer: Any) -> str:
    """04.1: ResNet-18's FLOPs per image over the CNN's, within 10%."""
    flops = {s["model"]: s["GFLOPs/image"] for s in g["sizes"]}
    ratio = flops["resnet18"] / flops["cnn"]
    return check(answer, ratio, "divide the two GFLOPs/image values", tolerance=0.1 * ratio)


@_coding_task("register F's layers in order (conv1, bn1, conv2, bn2) and the shortcut after them; forward: "
              "torch.relu(bn2(conv2(torch.relu(bn1(conv1(x))))) + shortcut(x))")
def _residual_block(g: dict, answer: Any) -> tuple[str, bool]:
    """04.4: the student's residual block against ResNet-18's, and its identity path with F = 0."""
    import torch
    from ..resnets import BasicBlock

    count = g["count_parameters"]
    sizes_ok = all(count(answer(*a)) == count(BasicBlock(*a)) and
                   answer(*a)(torch.zeros(2, a[0], 16, 16)).shape == BasicBlock(*a)(torch.zeros(2, a[0], 16, 16)).shape
                   for a in ((16, 16, 1), (16, 32, 2)))
    block = answer(16, 16).eval()
    last_bn = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)][1]  # F's second BatchNorm
    torch.nn.init.zeros_(last_bn.weight), torch.nn.init.zeros_(last_bn.bias)  # F(x) = 0 now
    x = torch.randn(2, 16, 8, 8)
    passes = torch.allclose(block(x), torch.relu(x), atol=1e-6)
    return f"sizes as ResNet-18's block: {sizes_ok}; with F = 0 the input passes through: {passes}", sizes_ok and passes


# ---------------------------------------------------------------- 05: the reference reports


def _net004_padded(g: dict, answer: Any) -> str:
    """05.3: the student's padded Net004, run on a batch; its parameter count."""
    import torch

    if "Net004Padded" not in g:
        return "first write the class Net004Padded (see the exercise)"
    cls = g["Net004Padded"]
    out = cls()(torch.zeros(2, 3, 32, 32))  # a shape mistake stops here, naming the layers
    convs = [m for m in cls().modules() if isinstance(m, torch.nn.Conv2d)]
    padded = all(m.padding[0] == m.kernel_size[0] // 2 for m in convs) and tuple(out.shape) == (2, 10)
    return check(answer if padded else -1, 5_365_642,
                 "pad each convolution by half its kernel (1 for 3x3, 2 for 5x5): 32x32 stays 32x32, two pools "
                 "leave 128 x 8 x 8 = 8192 inputs to the linear layer")


# ---------------------------------------------------------------- 06: fast training


def _alone(layer: "torch.nn.Module") -> "torch.nn.Module":
    """One layer as a model of its own (flops_per_image runs a model on an image)."""
    import torch

    return torch.nn.Sequential(layer)


def _whitening_covariance(g: dict, answer: Any) -> str:
    """06.2: the covariance of the whitening stem's first 12 outputs over the patches of 500 images."""
    import torch

    model, data = g["model"], g["data"]
    images = next(iter(data.loader("train", 500, train=False)))[0]
    with torch.no_grad():
        out = model.whitening(images.float())[:, :12] - model.whitening.bias[:12].view(1, 12, 1, 1)  # (500, 12, 31, 31)
    reference = torch.cov(out.permute(0, 2, 3, 1).reshape(-1, 12).T)  # one row per patch: (patches, 12)
    close = None if answer is None else bool(torch.allclose(torch.as_tensor(answer).float(), reference, atol=1e-2))
    return check(close, True, "flatten to (patches, 12) and use torch.cov on its transpose (the bias does not "
                              "change a covariance)")


def _lookahead(g: dict, answer: Any) -> str:
    """06.3: the fraction of training where 0.95**5 * f**3 first exceeds 0.5."""
    import torch

    fractions = torch.linspace(0, 1, 100_001)
    first = fractions[(0.95 ** 5 * fractions ** 3 > 0.5).nonzero()[0]].item()
    return check(answer, first, "solve 0.95**5 * f**3 = 0.5 for f", tolerance=0.005)


KEY: dict[str, dict[int, Check]] = {
    "00_data_analysis": {
        1: _value(lambda g: (g["data"].val_labels == g["data"].classes.index("cat")).float().mean().item(),
                  "the share of cat images among the validation labels (data.val_labels, data.classes)",
                  tolerance=0.0005),
        2: _value(lambda g: 128 * g["data"].train_images[0].numel(), "images x channels x rows x columns"),
        3: _value(lambda g: g["data"].val_images[:, 0].float().mean().item(),
                  "select channel 0 with data.val_images[:, 0], convert to float, take .mean()", tolerance=0.05),
        4: _fixed("c", "think about what the validation and test accuracies are meant to estimate"),
        5: _dataset_class,
    },
    "01_mlp": {
        1: _fixed(3 * 64 * 64 * 1024 + 1024,
                  "inputs (channels x rows x columns) x units weights, plus one bias per unit"),
        2: _small_mlp,
        3: _crops,
        4: _fixed("a", "which choice names something that differs between the two measurements?"),
        5: _mlp_class,
    },
    "02_cnn": {
        1: _value(lambda g: g["model"].features[0].weight.shape[0] * g["model"].features[0].weight.shape[1] * 5 * 5,
                  "out_channels x in_channels x kernel height x kernel width"),
        2: _most_confused,
        3: _shape_64,
        4: _mirrored,
        5: _conv_block,
    },
    "03_regularization": {
        1: _value(lambda g: g["table"].gap.idxmax(), "the 'gap' column is train acc minus val acc; take its largest"),
        2: _label_smoothing_reliable,
        3: _fixed("b", "what differs between how the two accuracies are measured, image by image and over the epoch?"),
        4: _combined,
        5: _dropout,
    },
    "04_resnet_comparison": {
        1: _flops_ratio,
        2: _value(lambda g: (g["table"].test_acc / g["table"].parameters).idxmax(),
                  "divide the test_acc column by the parameters column and take the largest"),
        3: _fixed("c", "think about what a freshly initialised deep network computes, with and without shortcuts"),
        4: _residual_block,
    },
    "05_reference_recipes": {
        1: _value(lambda g: g["count_parameters"](g["Net004"]().features[0]),
                  "weights are out_channels x in_channels x 3 x 3, plus one bias per output channel"),
        2: _fixed(abs(75.36 - 75.91) > 2 * 0.34,
                  "compare the difference of the two accuracies with two standard deviations"),
        3: _net004_padded,
    },
    "06_fast_training": {
        1: _value(lambda g: g["flops_per_image"](_alone(g["model"].whitening)),
                  "outputs per image = 24 channels x 31 x 31 positions; each is 3 x 2 x 2 multiply-adds"),
        2: _whitening_covariance,
        3: _lookahead,
    },
}


def check_answer(notebook: str, number: int, answer: Any, namespace: dict) -> str:
    """Exercise `number` of `notebook`: 'right', 'not answered yet', 'not quite: HINT' or what to do first."""
    exercises = KEY.get(notebook, {})
    if number not in exercises:
        raise ValueError(f"{notebook} has no exercise {number}: it has {', '.join(map(str, exercises)) or 'none'}")
    return exercises[number](namespace, answer)


def passed(notebook: str, number: int, answer: Any, namespace: dict) -> bool:
    """Whether the check says right (its last line): what a graded notebook's hidden test asserts."""
    return check_answer(notebook, number, answer, namespace).splitlines()[-1] == exercises.RIGHT
