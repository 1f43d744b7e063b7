"""Matplotlib figures shared by stages and the report (headless backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pathcnn.artifacts import atomic_path  # noqa: E402


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Figure:
    """A labelled confusion-matrix heatmap (rows actual, columns predicted)."""
    values = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(3.4, 3.0), dpi=110)
    axes.imshow(values, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title, fontsize=9)
    threshold = values.max() / 2 if values.size else 0
    for (row, col), count in np.ndenumerate(values):
        axes.text(col, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    figure.tight_layout()
    return figure


def history_figure(history: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Training and validation accuracy and loss per epoch."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8), dpi=110)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, axes in (("accuracy", left), ("loss", right)):
        if key in history:
            axes.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            axes.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        axes.set_xlabel("epoch")
        axes.set_title(f"{title}: {key}", fontsize=9)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    """Save a figure as PNG atomically and free it."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
