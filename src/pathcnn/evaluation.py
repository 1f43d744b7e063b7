"""Scoring a fitted model on its train, validation and test patches beside the majority-class baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.metrics import (
    chance_upper_bound,
    classification_metrics,
    confusion,
    finite_or_none,
    fit_status,
    image_level,
    prediction_frame,
)
from pathcnn.patchsets import PatchSet
from pathcnn.stats import majority_rate


@dataclass(frozen=True)
class Evaluation:
    """Metrics (flat, JSON-ready) and the per-patch test predictions behind them."""

    metrics: dict[str, Any]
    test_predictions: pd.DataFrame


def evaluate_probabilities(
    probabilities: Mapping[str, np.ndarray], sets: Mapping[str, PatchSet], class_names: tuple[str, ...]
) -> Evaluation:
    """Accuracy on every part; with a test part also its balanced accuracy, AUC, confusion and the baseline.

    Without a test part (a tune trial scores train and val only) the metrics stop at the accuracies and the fit.
    """
    metrics: dict[str, Any] = {}
    for part, patch_set in sets.items():
        if len(patch_set) == 0:
            continue
        scores = classification_metrics(patch_set.labels, probabilities[part])
        metrics[f"{part}_accuracy"] = scores["accuracy"]
        if part == "test":
            metrics["test_balanced_accuracy"] = scores["balanced_accuracy"]
            metrics["test_roc_auc"] = finite_or_none(scores["roc_auc"])
    if "train_accuracy" in metrics:
        # Inference-mode accuracy on the training patches within chance: the model did not fit.
        metrics["fit"] = fit_status(metrics["train_accuracy"], sets["train"].labels)
        metrics["fit_chance_upper"] = chance_upper_bound(sets["train"].labels)
    if "train_accuracy" in metrics and "val_accuracy" in metrics:
        metrics["train_val_gap"] = metrics["train_accuracy"] - metrics["val_accuracy"]
    if "test" not in sets:
        return Evaluation(metrics=metrics, test_predictions=pd.DataFrame())
    test = sets["test"]
    majority_index, baseline = majority_rate(sets["train"].labels, test.labels)
    metrics["baseline_accuracy"] = baseline
    metrics["majority_class"] = class_names[majority_index]
    matrix = confusion(test.labels, probabilities["test"], len(class_names))
    metrics["confusion"] = {
        actual: {predicted: matrix[i][j] for j, predicted in enumerate(class_names)}
        for i, actual in enumerate(class_names)
    }
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = (len(sets[p]) for p in ("train", "val", "test"))
    predictions = prediction_frame(test.frame, probabilities["test"], class_names)
    images = image_level(predictions, class_names)
    metrics["test_image_accuracy"] = float(images["correct"].mean()) if len(images) else None
    metrics["test_images"] = int(len(images))
    return Evaluation(metrics=metrics, test_predictions=predictions)


def confusion_matrix_of(metrics: Mapping[str, Any], class_names: tuple[str, ...]) -> list[list[int]]:
    """The confusion matrix back as rows from the metrics mapping."""
    table = metrics["confusion"]
    return [[int(table[actual][predicted]) for predicted in class_names] for actual in class_names]
