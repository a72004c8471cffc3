"""Each plot built from a small hand-made result, checking what was drawn."""

import numpy as np
import pytest
from matplotlib.colors import to_hex

from digitlab.evaluate import classification_metrics, most_confident_errors, top_k
from digitlab.plots import (
    COLORS,
    plot_confusion,
    plot_curves,
    plot_errors,
    plot_per_class,
    plot_prediction,
    plot_predictions,
    save_run_plots,
)
from digitlab.train import EpochStats

HISTORY = [EpochStats(1, 0.9, 0.70, 0.8, 0.75, 1.0), EpochStats(2, 0.5, 0.85, 0.6, 0.80, 1.0),
           EpochStats(3, 0.3, 0.90, 0.55, 0.82, 1.0)]


def images(n, size=8):
    rng = np.random.default_rng(n)
    return rng.random((n, size, size), dtype=np.float32)


def digit_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_curves_two_panels_train_against_validation():
    fig = plot_curves(HISTORY, val_label="validation (test set)")
    acc, loss = fig.axes
    assert acc.get_title() == "Accuracy" and loss.get_title().startswith("Loss")
    assert acc.get_xlabel() == loss.get_xlabel() == "epoch"
    (train, val) = acc.get_lines()
    assert list(train.get_ydata()) == [0.70, 0.85, 0.90]
    assert list(val.get_ydata()) == [0.75, 0.80, 0.82]
    assert [t.get_text() for t in acc.get_legend().get_texts()] == [
        "training accuracy", "validation (test set) accuracy"]
    assert list(loss.get_lines()[1].get_ydata()) == [0.8, 0.6, 0.55]


def test_curves_without_validation_draw_training_only():
    rows = [EpochStats(e, 1 / e, 0.5 + e / 10, None, None, 0.1) for e in (1, 2)]
    assert all(len(ax.get_lines()) == 1 for ax in plot_curves(rows).axes)


def test_predictions_mark_the_mistakes():
    y_true = np.array([1, 2, 3, 4, 5, 6, 7])
    y_pred = np.array([1, 9, 3, 4, 0, 6, 7])
    fig = plot_predictions(images(7), y_true, y_pred, columns=4)
    tiles = digit_axes(fig)
    assert len(tiles) == 7
    wrong = [i for i, ax in enumerate(tiles) if to_hex(ax.title.get_color()) == COLORS["wrong"]]
    assert wrong == [1, 4]
    assert tiles[1].get_title() == "9 (true 2)" and tiles[0].get_title() == "1"
    assert to_hex(tiles[4].spines["top"].get_edgecolor()) == COLORS["wrong"]
    assert to_hex(tiles[0].spines["top"].get_edgecolor()) != COLORS["wrong"]
    assert "2 wrong" in fig._suptitle.get_text()


def test_confusion_counts_in_cells():
    cm = [[5, 1, 0], [2, 7, 0], [0, 3, 9]]
    fig = plot_confusion(cm)
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert cells == {(r, c): str(cm[r][c]) for r in range(3) for c in range(3)}
    assert ax.get_xlabel() == "predicted digit" and ax.get_ylabel() == "true digit"


def test_confusion_into_a_given_axes():
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_confusion([[1, 0], [0, 1]], ax=ax) is fig


def test_errors_show_the_most_confident_mistakes_with_top_two():
    proba = np.full((5, 10), 0.01)
    proba[np.arange(5), [3, 3, 1, 7, 2]] = [0.91, 0.5, 0.6, 0.7, 0.8]
    proba[1, 4] = 0.41
    y_true = np.array([3, 4, 5, 1, 2])  # rows 1, 2, 3 are wrong
    order = most_confident_errors(y_true, proba, k=10)
    assert order.tolist() == [3, 2, 1]
    fig = plot_errors(images(5), y_true, proba, order)
    tiles = digit_axes(fig)
    assert [ax.get_title() for ax in tiles] == ["true 1", "true 5", "true 4"]
    assert tiles[2].get_xlabel() == "said 3: 0.50\n2nd 4: 0.41"
    assert most_confident_errors(y_true, proba, k=2).tolist() == [3, 2]


def test_errors_when_there_are_none():
    fig = plot_errors(images(2), np.array([0, 1]), np.eye(10)[:2], [])
    assert "No mistakes" in fig.texts[0].get_text()


def test_per_class_bars():
    precision, recall = [0.9, 0.8, 1.0], [0.7, 1.0, 0.95]
    ax = plot_per_class(precision, recall).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(precision + recall)
    assert ax.get_xlabel() == "digit" and ax.get_ylabel() == "score"


def test_prediction_picture():
    proba = np.full(10, 0.02)
    proba[6] = 0.82
    fig = plot_prediction(images(1, 40)[0], images(1, 28)[0], proba)
    ax_in, ax_seen, ax_bars = fig.axes
    assert ax_seen.images[0].get_array().shape == (28, 28)
    bars = ax_bars.patches
    assert len(bars) == 10 and bars[6].get_height() == pytest.approx(0.82)
    assert to_hex(bars[6].get_facecolor()) == COLORS["highlight"]
    assert "6 with 82.0%" in ax_bars.get_title()


def test_top_k():
    order, p = top_k(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]), 2)
    assert order.tolist() == [[1, 2], [0, 2]] and p.tolist() == [[0.6, 0.3], [0.5, 0.3]]


def test_save_run_plots_writes_five_pngs(tmp_path):
    y = np.arange(10) % 10
    proba = np.eye(10)[(y + (y == 3)) % 10] * 0.9 + 0.01
    metrics = classification_metrics(y, proba.argmax(1))
    paths = save_run_plots(tmp_path / "plots", HISTORY, metrics, images(10), y, proba, [3])
    assert sorted(p.name for p in paths) == ["confusion.png", "curves.png", "errors.png",
                                             "per_class.png", "predictions.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
