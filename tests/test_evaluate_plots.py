import matplotlib
import numpy as np
import pytest
import torch

from cifar_lab import History, evaluate, make_model
from cifar_lab import plots
from cifar_lab.evaluate import EvalResult

CLASSES = ["a", "b", "c"]


def known_result():
    # true: a a a b b c ; predicted: a a b b c c (confidences from the logits)
    logits = torch.tensor([[5., 0, 0], [3, 0, 0], [0, 4, 0], [0, 2, 0], [0, 0, 1], [0, 0, 6]])
    return EvalResult(logits, torch.tensor([0, 0, 0, 1, 1, 2]), CLASSES)


def test_metrics_of_known_predictions():
    r = known_result()
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.per_class_accuracy() == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    assert r.confusion_matrix().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert np.allclose(r.confusion_matrix(normalize=True).sum(1), 1)
    assert sorted(r.most_confused()) == [("a", "b", 1), ("b", "c", 1)]
    assert r.misclassified() == [2, 4]  # the more confident mistake first
    assert r.summary()["accuracy"] == pytest.approx(4 / 6)


def test_evaluate_with_flip_tta_on_fake_data(fake_data):
    model = make_model("cnn", widths=(4, 4, 4), fc_width=8)
    plain, tta = evaluate(model, fake_data), evaluate(model, fake_data, tta=True)
    assert plain.logits.shape == (200, 10) and torch.equal(plain.labels, fake_data.test_labels)
    assert not torch.allclose(plain.logits, tta.logits)


def test_every_figure_is_returned_and_saved_as_png(fake_data, tmp_path):
    r = known_result()
    h = History(epoch=[1, 2], train_loss=[2.0, 1.0], train_acc=[.3, .6], val_loss=[2.1, 1.2], val_acc=[.3, .5],
                lr=[.1, .01], seconds=[1, 1])
    images = fake_data.test_images[:6]
    figures = {
        "curves": plots.learning_curves(h),
        "curves_many": plots.learning_curves({"x": h, "y": h}),
        "cm": plots.confusion_matrix(r),
        "cm_counts": plots.confusion_matrix(r, normalize=False),
        "per_class": plots.per_class_accuracy({"m1": r, "m2": r}),
        "examples": plots.examples_per_class(fake_data.train_images, fake_data.train_labels, fake_data.classes),
        "dist": plots.class_distribution({"train": fake_data.train_labels, "test": fake_data.test_labels},
                                         fake_data.classes),
        "hist": plots.channel_histograms(fake_data.train_images),
        "normalised": plots.image_grid(next(iter(fake_data.loader("val", 8)))[0], mean=fake_data.mean,
                                       std=fake_data.std),
        "mistakes": plots.misclassified(images, r),
        "compare": plots.model_comparison([{"model": "mlp", "test_acc": .5}, {"model": "cnn", "test_acc": .8}]),
    }
    for name, fig in figures.items():
        assert isinstance(fig, matplotlib.figure.Figure)
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:4] == b"\x89PNG"
    saved = plots.channel_histograms(fake_data.train_images, save=tmp_path / "sub" / "h.png")
    assert (tmp_path / "sub" / "h.png").stat().st_size > 1000 and saved is not None


def test_plot_on_given_axes():
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2)
    assert plots.confusion_matrix(known_result(), ax=axes[1]) is fig


def test_class_distribution_legend_sits_beside_the_bars(fake_data):
    fig = plots.class_distribution({"train": fake_data.train_labels, "test": fake_data.test_labels}, fake_data.classes)
    fig.canvas.draw()
    assert fig.axes[0].get_legend().get_window_extent().x0 >= fig.axes[0].get_window_extent().x1


def test_per_class_legend_never_covers_a_bar():
    one = plots.per_class_accuracy({"cnn": known_result()})
    assert one.axes[0].get_legend() is None and "cnn, overall" in one.axes[0].get_title()
    two = plots.per_class_accuracy({"m1": known_result(), "m2": known_result()})
    legend = two.axes[0].get_legend()
    two.canvas.draw()
    inside = two.axes[0].get_window_extent()
    assert legend.get_window_extent().x0 >= inside.x1  # right of the axes, clear of every bar


def test_calibration_error_is_the_images_weighted_gap_between_confidence_and_accuracy():
    import torch
    from cifar_lab.evaluate import EvalResult
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])  # confident twice, unsure twice
    result = EvalResult(probs.log(), torch.tensor([0, 1, 0, 0]), ["a", "b"])  # right 1 of 2, then 2 of 2
    ece, bins = result.calibration(bins=10)
    assert [(round(c, 2), a, n) for c, a, n in bins] == [(0.6, 1.0, 2), (0.9, 0.5, 2)]
    assert abs(ece - (2 * 0.4 + 2 * 0.4) / 4) < 1e-6


def test_figures_go_into_the_run_folder_by_their_own_name_and_nowhere_without_one(tmp_path, monkeypatch):
    h = History(epoch=[1], train_loss=[2.0], train_acc=[.3], val_loss=[2.1], val_acc=[.3], lr=[.1], seconds=[1])
    r = known_result()
    monkeypatch.chdir(tmp_path)
    plots.save_figures_to("run")  # relative, as a notebook's default folder is
    monkeypatch.chdir("/")  # a later chdir does not move the folder
    for fig in (plots.learning_curves(h), plots.confusion_matrix(r), plots.confusion_matrix(r, normalize=False),
                plots.per_class_accuracy({"m": r}, save="mine.png")):
        plots.plt.close(fig)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "confusion_matrix.png", "confusion_matrix_counts.png", "learning_curves.png", "mine.png"]
    fig, ax = plots.plt.subplots()
    plots.per_class_accuracy({"m": r}, ax=ax)  # drawn into the caller's axes: the caller saves the figure
    plots.save_figures_to(None)
    plots.plt.close(plots.learning_curves(h))
    assert len(list((tmp_path / "run").iterdir())) == 4
