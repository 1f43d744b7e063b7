"""Classification metrics of one model on one set of patches, as plain numbers for JSON and MLflow."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC (one-vs-rest macro for more than two classes); nan when only one class is present."""
    if len(np.unique(labels)) < 2:
        return math.nan
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=np.arange(probabilities.shape[1])))


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Share of correct predictions (nan for an empty set)."""
    return float(np.mean(labels == predictions)) if len(labels) else math.nan


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and ROC AUC of class probabilities against integer labels."""
    predictions = probabilities.argmax(axis=1)
    return {
        "accuracy": accuracy(labels, predictions),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)) if len(labels) else math.nan,
        "roc_auc": roc_auc(labels, probabilities),
    }


def confusion(labels: np.ndarray, probabilities: np.ndarray, num_classes: int) -> list[list[int]]:
    """Confusion matrix, rows = actual class, columns = predicted class."""
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), labels=np.arange(num_classes))
    return matrix.astype(int).tolist()


def prediction_frame(frame: pd.DataFrame, probabilities: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Per-patch predictions: ids, actual and predicted class, probability per class."""
    result = frame[["patch_id", "image_id", "label"]].reset_index(drop=True).copy()
    for index, name in enumerate(class_names):
        result[f"prob_{name}"] = np.round(probabilities[:, index], 6)
    result["predicted"] = [class_names[index] for index in probabilities.argmax(axis=1)]
    return result


def image_level(predictions: pd.DataFrame, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Image-level calls: mean patch probability per class, the argmax, and whether it is right."""
    columns = [f"prob_{name}" for name in class_names]
    grouped = predictions.groupby("image_id").agg(
        {**{c: "mean" for c in columns}, "label": "first", "patch_id": "count"}
    )
    grouped = grouped.rename(columns={"patch_id": "patches"}).reset_index()
    grouped["predicted"] = [class_names[i] for i in grouped[columns].to_numpy().argmax(axis=1)]
    grouped["correct"] = grouped["predicted"] == grouped["label"]
    return grouped


FIT_CONFIDENCE = 0.95


def chance_upper_bound(labels: np.ndarray, confidence: float = FIT_CONFIDENCE) -> float:
    """The highest accuracy on these labels that a model without signal reaches by luck.

    The upper end of the central `confidence` range of the binomial around the majority share: a model that
    always answers the majority class, or guesses in those proportions, stays at or below it.
    """
    from scipy.stats import binom

    labels = np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    majority = np.bincount(labels).max() / len(labels)
    return float(binom.ppf(1.0 - (1.0 - confidence) / 2.0, len(labels), majority) / len(labels))


def fit_status(train_accuracy: float, train_labels: np.ndarray) -> str:
    """'failed' when inference-mode accuracy on the model's own training patches lies within chance, else 'ok'.

    A model that did not fit its training data tells nothing about memorisation or generalisation.
    """
    bound = chance_upper_bound(train_labels)
    return "failed" if math.isfinite(bound) and train_accuracy <= bound else "ok"


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: undefined metrics are written as null."""
    return None if value is None or not math.isfinite(value) else value
