"""Matplotlib figures shared by stages and the report (headless backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Estimate:
    """One accuracy on the overview, with an optional min-max range (over seeds) and a note (the fold)."""

    value: float
    low: float | None = None
    high: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Column:
    """One labelled column of a model's overview panel: a bar, or one point per fold when per_fold."""

    label: str
    colour: str
    estimates: tuple[Estimate, ...] = ()
    per_fold: bool = False


@dataclass(frozen=True)
class Panel:
    """A model's overview: its columns and the majority-class rate (drawn as a line)."""

    title: str
    columns: tuple[Column, ...]
    majority: float | None = None


def _draw_column(axes: plt.Axes, position: int, column: Column) -> None:
    if not column.estimates:
        axes.text(position, 0.03, "n/a", ha="center", fontsize=7)
        return
    offsets = np.linspace(-0.2, 0.2, len(column.estimates)) if column.per_fold and len(column.estimates) > 1 else [0.0]
    for offset, estimate in zip(offsets, column.estimates, strict=False):
        x = position + offset
        error = None
        if estimate.low is not None and estimate.high is not None:
            error = [[estimate.value - estimate.low], [estimate.high - estimate.value]]
        if column.per_fold:
            axes.errorbar(x, estimate.value, yerr=error, fmt="o", color=column.colour, capsize=3, markersize=4)
            axes.annotate(estimate.note, (x, estimate.value), xytext=(3, -8), textcoords="offset points", fontsize=6)
        else:
            axes.bar(x, estimate.value, width=0.6, color=column.colour, alpha=0.8)
            if error is not None:
                axes.errorbar(x, estimate.value, yerr=error, fmt="none", ecolor="black", capsize=3)
            top = max(estimate.value, estimate.high or estimate.value)
            axes.text(x, top + 0.02, f"{estimate.value:.2f}", ha="center", fontsize=6)


def overview_figure(panels: Sequence[Panel]) -> Figure:
    """Per model, every accuracy the report weighs in one panel: bars, per-fold points with seed ranges, majority."""
    figure, axes_row = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 3.9), dpi=110, squeeze=False, sharey=True
    )
    for axes, panel in zip(axes_row[0], panels, strict=True):
        for position, column in enumerate(panel.columns):
            _draw_column(axes, position, column)
        if panel.majority is not None:
            axes.axhline(panel.majority, color="black", linestyle="--", linewidth=1, label="majority class")
            axes.legend(fontsize=7, loc="lower right")
        axes.set_xticks(range(len(panel.columns)), [column.label for column in panel.columns], fontsize=7)
        axes.set_ylim(0.0, 1.08)
        axes.set_title(panel.title, fontsize=9)
        axes.grid(axis="y", alpha=0.3)
    axes_row[0][0].set_ylabel("test accuracy")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    """Save a figure as PNG atomically and free it."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
