"""Pictures of what a model learned: curves, galleries, confusion matrix, per-class bars.

These functions only draw numbers computed elsewhere (digitlab.evaluate). They build
``matplotlib.figure.Figure`` objects directly (Agg rendering, no pyplot state, nothing ever
shown), import matplotlib on first use, and return the figure; those with a single panel take
``ax=`` to draw into an existing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["COLORS", "plot_confusion", "plot_curves", "plot_errors", "plot_per_class",
           "plot_prediction", "plot_predictions", "save_run_plots"]

COLORS = {"train": "#1f6fb4", "val": "#e4760e", "right": "#1b7a3a", "wrong": "#c62828",
          "bar": "#5b8fd0", "highlight": "#e4760e"}
_DIGIT_CMAP = "gray_r"  # ink dark on light paper, however the model stores it
_TILE_INCHES = 1.15


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _axes(ax, width: float, height: float):
    if ax is not None:
        return ax.figure, ax
    fig = _figure(width, height)
    return fig, fig.add_subplot()


def _digit(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap=_DIGIT_CMAP, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _mark(ax, color: str, width: float = 3.0) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def plot_curves(history: Sequence, val_label: str = "validation") -> object:
    """Accuracy and loss per epoch, training against validation, in two panels. ``history``
    holds rows with epoch, loss, accuracy, val_loss, val_accuracy (val may be None)."""
    fig = _figure(11, 4.2)
    epochs = [h.epoch for h in history]
    for ax, key, title in zip(fig.subplots(1, 2), ("accuracy", "loss"),
                              ("Accuracy", "Loss (cross-entropy)"), strict=True):
        ax.plot(epochs, [getattr(h, key) for h in history], "o-", color=COLORS["train"],
                label=f"training {key}")
        val = [getattr(h, f"val_{key}") for h in history]
        if any(v is not None for v in val):
            ax.plot(epochs, val, "s-", color=COLORS["val"], label=f"{val_label} {key}")
        ax.set_title(title, fontsize=13)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return fig


def plot_predictions(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                     columns: int = 10, what: str = "") -> object:
    """A grid of digits (N, H, W) titled "predicted (true)"; mistakes in red with a red frame.
    ``what`` names the digits shown in the title."""
    n = len(images)
    rows = -(-n // columns)
    fig = _figure(columns * _TILE_INCHES, rows * _TILE_INCHES * 1.2 + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        _digit(ax, images[i])
        right = y_pred[i] == y_true[i]
        color = COLORS["right"] if right else COLORS["wrong"]
        ax.set_title(f"{y_pred[i]}" if right else f"{y_pred[i]} (true {y_true[i]})",
                     color=color, fontsize=12, fontweight="normal" if right else "bold")
        if not right:
            _mark(ax, COLORS["wrong"])
    mistakes = int(np.sum(np.asarray(y_pred[:n]) != np.asarray(y_true[:n])))
    fig.suptitle(f"Predicted digit for {what or f'{n} digits'}: {mistakes} wrong "
                 "(green: right; red: wrong, with the true digit)", fontsize=13)
    return fig


def plot_confusion(confusion: Sequence[Sequence[int]], ax=None) -> object:
    """The confusion matrix as a heat map with the count in each cell; rows are the true
    digit, columns the predicted one. The diagonal is muted so mistakes stand out."""
    cm = np.asarray(confusion)
    fig, ax = _axes(ax, 7.5, 6.5)
    off = cm.astype(float)
    np.fill_diagonal(off, np.nan)  # colour mistakes only: the diagonal would drown them
    image = ax.imshow(off, cmap="Reds", vmin=0)
    n = len(cm)
    ax.imshow(np.where(np.eye(n, dtype=bool), 1.0, np.nan), cmap="Greens", vmin=0, vmax=2.5)
    peak = np.nanmax(off) if np.isfinite(off).any() else 0
    for t in range(n):
        for p in range(n):
            dark = t != p and peak and cm[t, p] > 0.6 * peak
            ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=9,
                    color="white" if dark else "black",
                    fontweight="bold" if t == p else "normal")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("Confusion matrix (counts; mistakes in red)", fontsize=13)
    fig.colorbar(image, ax=ax, shrink=0.8, label="mistakes")
    return fig


def plot_errors(images: np.ndarray, y_true: np.ndarray, proba: np.ndarray,
                indices: Sequence[int], columns: int = 8) -> object:
    """The given mistakes (most confident first), each with its top-2 probabilities."""
    n = len(indices)
    if n == 0:
        fig = _figure(6, 1.5)
        fig.text(0.5, 0.5, "No mistakes on the test set", ha="center", va="center",
                 fontsize=14, color=COLORS["right"])
        return fig
    columns = min(columns, n)
    rows = -(-n // columns)
    fig = _figure(columns * 1.45, rows * 2.25 + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    for ax, i in zip(axes, indices, strict=False):
        first, second = np.argsort(-proba[i], kind="stable")[:2]
        _digit(ax, images[i])
        _mark(ax, COLORS["wrong"], 2.0)
        ax.set_title(f"true {y_true[i]}", fontsize=11)
        ax.set_xlabel(f"said {first}: {proba[i, first]:.2f}\n2nd {second}: "
                      f"{proba[i, second]:.2f}", fontsize=10, color=COLORS["wrong"])
    fig.suptitle("Most confident mistakes (top-2 probabilities below each digit)", fontsize=13)
    return fig


def plot_per_class(precision: Sequence[float], recall: Sequence[float], ax=None) -> object:
    """Per-class precision and recall as paired bars."""
    fig, ax = _axes(ax, 9, 4.2)
    x = np.arange(len(precision))
    width = 0.38
    ax.bar(x - width / 2, precision, width, label="precision", color=COLORS["train"])
    ax.bar(x + width / 2, recall, width, label="recall", color=COLORS["val"])
    low = min(min(precision), min(recall))
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_xticks(x)
    ax.set_xlabel("digit")
    ax.set_ylabel("score")
    ax.set_title("Per-class precision and recall", fontsize=13)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_prediction(image: np.ndarray, seen: np.ndarray, proba: Sequence[float],
                    title: str = "") -> object:
    """The input image, the 28x28 the model saw, and its 10 softmax probabilities as bars."""
    fig = _figure(11, 3.6)
    ax_in, ax_seen, ax_bars = fig.subplots(1, 3, width_ratios=[1, 1, 2.2])
    ax_in.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    ax_in.set_title("input", fontsize=12)
    ax_in.set_axis_off()
    _digit(ax_seen, seen)
    ax_seen.set_title(f"what the model saw ({seen.shape[0]}x{seen.shape[1]})", fontsize=12)
    best = int(np.argmax(proba))
    colors = [COLORS["highlight"] if d == best else COLORS["bar"] for d in range(len(proba))]
    ax_bars.bar(range(len(proba)), proba, color=colors)
    ax_bars.set_xticks(range(len(proba)))
    ax_bars.set_ylim(0, 1)
    ax_bars.set_xlabel("digit")
    ax_bars.set_ylabel("probability")
    ax_bars.set_title(f"softmax: {best} with {proba[best]:.1%}", fontsize=12)
    ax_bars.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


PLOT_FILES = ("curves.png", "predictions.png", "confusion.png", "errors.png", "per_class.png")
GALLERY_SIZE = 40  # test digits in predictions.png
ERRORS_SHOWN = 24  # mistakes in errors.png


def save_run_plots(folder: str | Path, history: Sequence, metrics, images: np.ndarray,
                   labels: np.ndarray, proba: np.ndarray, error_indices: Sequence[int],
                   val_label: str = "validation") -> list[Path]:
    """Draw the five run plots into ``folder`` (created if needed) and return their paths.
    ``images``/``labels``/``proba`` are the test set and the model's probabilities on it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Evenly spaced over the test set, so a set sorted by class (digits20) shows every class.
    pick = np.linspace(0, len(images) - 1, min(GALLERY_SIZE, len(images))).astype(int)
    what = f"{len(pick)} test digits, evenly spaced over the {len(images):,}"
    figures = {
        "curves.png": plot_curves(history, val_label),
        "predictions.png": plot_predictions(images[pick], labels[pick],
                                            proba[pick].argmax(1), what=what),
        "confusion.png": plot_confusion(metrics.confusion),
        "errors.png": plot_errors(images, labels, proba, error_indices),
        "per_class.png": plot_per_class(metrics.precision, metrics.recall),
    }
    paths = []
    for name, fig in figures.items():
        fig.savefig(folder / name)
        paths.append(folder / name)
    return paths
