"""Statistics of stored predictions: accuracy with its interval and p-value, bootstrap intervals, McNemar.

Pure functions over prediction frames (patch_id, image_id, label, prob_<class>..., predicted); no I/O.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from pathcnn.metrics import classification_metrics, finite_or_none, image_level, roc_auc
from pathcnn.stats import binomial_p_value, bootstrap_interval, mcnemar_test, wilson_interval


def accuracy_summary(correct: np.ndarray, null_rate: float, confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy, its Wilson interval and the one-sided binomial p-value against null_rate (e.g. the majority rate)."""
    correct = np.asarray(correct, dtype=bool)
    successes, total = int(correct.sum()), int(correct.size)
    low, high = wilson_interval(successes, total, confidence)
    return {
        "accuracy": successes / total if total else None,
        "correct": successes,
        "n": total,
        "ci_low": low,
        "ci_high": high,
        "null_rate": float(null_rate),
        "p_value": binomial_p_value(successes, total, min(max(float(null_rate), 0.0), 1.0)),
    }


def _label_indices(predictions: pd.DataFrame, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    lookup = {name: index for index, name in enumerate(class_names)}
    labels = predictions["label"].map(lookup).to_numpy(dtype=np.int64)
    probabilities = predictions[[f"prob_{name}" for name in class_names]].to_numpy(dtype=float)
    return labels, probabilities


def fast_balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in labels (sklearn's balanced accuracy); nan for one class.

    A plain NumPy version, because bootstrap intervals call it thousands of times.
    """
    classes = np.unique(labels)
    if len(classes) < 2:
        return math.nan  # one class only: it would equal plain accuracy and not be comparable
    return float(np.mean([np.mean(predicted[labels == name] == name) for name in classes]))


def fast_binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of scores for label 1 by the rank-sum (Mann-Whitney) formula, ties counted half; nan for one class."""
    positives = labels == 1
    count_positive, count_negative = int(positives.sum()), int((~positives).sum())
    if count_positive == 0 or count_negative == 0:
        return math.nan
    ranks = rankdata(scores)
    return float(
        (ranks[positives].sum() - count_positive * (count_positive + 1) / 2) / (count_positive * count_negative)
    )


def bootstrap_scores(
    predictions: pd.DataFrame, class_names: tuple[str, ...], resamples: int, seed: int
) -> dict[str, float | None]:
    """Percentile-bootstrap 95% intervals of balanced accuracy and ROC AUC over the test patches."""
    labels, probabilities = _label_indices(predictions, class_names)
    if len(labels) == 0:
        return {key: None for key in ("balanced_accuracy_low", "balanced_accuracy_high", "auc_low", "auc_high")}
    rows = np.arange(len(labels))

    predicted = probabilities.argmax(axis=1)

    def balanced(y: np.ndarray, picked: np.ndarray) -> float:
        return fast_balanced_accuracy(y, predicted[picked])

    def auc(y: np.ndarray, picked: np.ndarray) -> float:
        if probabilities.shape[1] == 2:
            return fast_binary_auc(y, probabilities[picked, 1])
        return roc_auc(y, probabilities[picked])

    balanced_low, balanced_high = bootstrap_interval(balanced, labels, rows, resamples, seed=seed)
    auc_low, auc_high = bootstrap_interval(auc, labels, rows, resamples, seed=seed)
    return {
        "balanced_accuracy_low": finite_or_none(balanced_low),
        "balanced_accuracy_high": finite_or_none(balanced_high),
        "auc_low": finite_or_none(auc_low),
        "auc_high": finite_or_none(auc_high),
    }


def prediction_statistics(
    predictions: pd.DataFrame, class_names: tuple[str, ...], null_rate: float, resamples: int, seed: int
) -> dict[str, Any]:
    """Everything the report states about one set of test predictions."""
    labels, probabilities = _label_indices(predictions, class_names)
    correct = (predictions["predicted"] == predictions["label"]).to_numpy()
    result = accuracy_summary(correct, null_rate)
    scores = classification_metrics(labels, probabilities) if len(labels) else {}
    result["balanced_accuracy"] = scores.get("balanced_accuracy")
    result["auc"] = finite_or_none(scores["roc_auc"]) if scores else None
    result.update(bootstrap_scores(predictions, class_names, resamples, seed))
    images = image_level(predictions, class_names) if len(predictions) else pd.DataFrame({"correct": []})
    result["image_correct"] = int(images["correct"].sum())
    result["image_n"] = int(len(images))
    result["image_accuracy"] = float(images["correct"].mean()) if len(images) else None
    return result


def over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """prediction_statistics of repeated fits on the same test patches (one entry per seed), as one record.

    Pooling the seeds' predictions would count each patch once per seed, as if the seeds had tested
    independent patches: the interval would shrink and the p-value fall with the number of seeds. Here
    n stays the number of test patches; the accuracy (and balanced accuracy, AUC) is the mean over seeds,
    the interval runs from the lowest seed's lower bound to the highest seed's upper bound, and the
    p-value is the largest over seeds: nothing is claimed that one seed's fits alone do not support.
    Image calls are summed over seeds (each fit calls each of its held-out images once).
    """
    if not per_seed:
        raise ValueError("over_seeds needs the statistics of at least one seed")

    def values(key: str) -> list[float]:
        return [float(stats[key]) for stats in per_seed if stats.get(key) is not None]

    def mean(key: str) -> float | None:
        found = values(key)
        return float(np.mean(found)) if found else None

    def lowest(key: str) -> float | None:
        found = values(key)
        return min(found) if found else None

    def highest(key: str) -> float | None:
        found = values(key)
        return max(found) if found else None

    image_n = sum(int(stats["image_n"]) for stats in per_seed)
    image_correct = sum(int(stats["image_correct"]) for stats in per_seed)
    return {
        "seeds": len(per_seed),
        "accuracy": mean("accuracy"),
        "n": per_seed[0]["n"],
        "ci_low": lowest("ci_low"),
        "ci_high": highest("ci_high"),
        "null_rate": per_seed[0]["null_rate"],
        "p_value": highest("p_value"),
        "balanced_accuracy": mean("balanced_accuracy"),
        "balanced_accuracy_low": lowest("balanced_accuracy_low"),
        "balanced_accuracy_high": highest("balanced_accuracy_high"),
        "auc": mean("auc"),
        "auc_low": lowest("auc_low"),
        "auc_high": highest("auc_high"),
        "image_correct": image_correct,
        "image_n": image_n,
        "image_accuracy": image_correct / image_n if image_n else None,
    }


def paired_comparison(first: pd.DataFrame, second: pd.DataFrame) -> dict[str, Any]:
    """McNemar's exact test of two models on the test patches they share (joined on patch_id)."""
    joined = first[["patch_id", "label", "predicted"]].merge(
        second[["patch_id", "predicted"]], on="patch_id", suffixes=("_first", "_second")
    )
    correct_first = (joined["predicted_first"] == joined["label"]).to_numpy()
    correct_second = (joined["predicted_second"] == joined["label"]).to_numpy()
    result = mcnemar_test(correct_first, correct_second)
    return {
        "n": int(len(joined)),
        "only_first_correct": result.only_a_correct,
        "only_second_correct": result.only_b_correct,
        "p_value": result.p_value,
    }


def best_possible_image_p_value(images: int, chance: float) -> float:
    """The smallest one-sided p-value that `images` image-level calls can reach (all correct)."""
    return binomial_p_value(images, images, chance) if images else 1.0


def model_statistics(
    metrics: dict[str, dict[str, Any]],
    predictions: dict[str, pd.DataFrame],
    class_names: tuple[str, ...],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The significance record of one model: statistics of every prediction set and McNemar's test.

    train, baseline and control against their majority rates; CNN against features on the same test patches;
    the crossval folds pooled (held-out CNN per seed, combined by over_seeds; features) when crossval ran.
    """
    stats: dict[str, dict[str, Any]] = {}
    for stage in ("train", "baseline", "control"):
        frame = predictions[stage]
        if "permutation" in frame:  # the control's models: each permutation calls each image once
            frame = frame.assign(image_id=frame["permutation"] + "/" + frame["image_id"])
        stats[stage] = prediction_statistics(frame, class_names, metrics[stage]["baseline_accuracy"], resamples, seed)
    record: dict[str, Any] = {
        "bootstrap_resamples": resamples,
        "seed": seed,
        "stats": stats,
        "comparison": paired_comparison(predictions["train"], predictions["baseline"]),
        "held_out_images": 0,
    }
    if metrics["crossval"].get("status") == "ok":
        folds = metrics["crossval"]["folds"]
        pooled = predictions["crossval"]
        # Pooled over folds (each patch tested once per fit); null rate: the folds' majority rates weighted by size.
        null = sum(f["baseline_accuracy"] * f["n_test"] for f in folds.values()) / sum(
            f["n_test"] for f in folds.values()
        )
        cnn = pooled[pooled["method"] == "cnn"]
        record["held_out_images"] = int(cnn["image_id"].nunique())
        # Each seed's fits test the same patches: one statistic per seed, combined without counting a patch twice.
        stats["crossval_cnn"] = over_seeds(
            [
                prediction_statistics(fits, class_names, null, resamples, seed)
                for _, fits in cnn.groupby("seed", sort=True)
            ]
        )
        features = pooled[pooled["method"] == "features"]
        stats["crossval_features"] = prediction_statistics(features, class_names, null, resamples, seed)
        record["calibration"] = calibration(cnn, predictions["train"], class_names)
    return record


# ---------------------------------------------------------------- calibration of the probabilities

CALIBRATION_BINS = 10
PROBABILITY_FLOOR = 1e-6  # the prediction files keep 6 decimals: a stored 0.0 means "below 1e-6"


def temperature_scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens over-confident probabilities, T < 1 sharpens them."""
    logits = np.log(np.clip(probabilities, PROBABILITY_FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes (searched on log T)."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(labels))

    def loss(log_temperature: float) -> float:
        scaled = temperature_scaled(probabilities, float(np.exp(log_temperature)))
        return float(-np.log(np.clip(scaled[rows, labels], 1e-12, 1.0)).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 5.0), method="bounded").x))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error (top-class confidence against accuracy, equal-width bins) and the curve."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    curve, error = [], 0.0
    for index in range(bins):
        members = which == index
        if not members.any():
            continue
        gap = abs(float(confidence[members].mean()) - float(correct[members].mean()))
        error += members.mean() * gap
        curve.append(
            {
                "low": float(edges[index]),
                "high": float(edges[index + 1]),
                "n": int(members.sum()),
                "confidence": float(confidence[members].mean()),
                "accuracy": float(correct[members].mean()),
            }
        )
    return {"ece": float(error), "n": int(len(labels)), "curve": curve}


def calibration(held_out: pd.DataFrame, patch_split: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, Any]:
    """How far the CNN's probabilities are from its accuracy, and what temperature scaling does to that.

    The temperature is fitted on the crossval held-out predictions (unseen images; the patch split's validation
    accuracy is 1.000, which leaves nothing to fit). On held-out images the before/after comparison is
    cross-fitted: each fold's probabilities are scaled by a temperature fitted on the other folds only. The
    temperature fitted on all folds is then applied to the patch-split test predictions.
    """
    labels, probabilities = _label_indices(held_out, class_names)
    folds = held_out["fold"].to_numpy()
    crossfitted = np.empty_like(probabilities)
    for fold in np.unique(folds):
        inside = folds == fold
        temperature = fit_temperature(probabilities[~inside], labels[~inside]) if (~inside).any() else 1.0
        crossfitted[inside] = temperature_scaled(probabilities[inside], temperature)
    temperature = fit_temperature(probabilities, labels)
    test_labels, test_probabilities = _label_indices(patch_split, class_names)
    before, after = reliability(probabilities, labels), reliability(crossfitted, labels)
    return {
        "temperature": temperature,
        "temperature_helps": after["ece"] < before["ece"],  # cross-fitted, on images no temperature saw
        "held_out": {"before": before, "after": after},
        "patch_split_test": {
            "before": reliability(test_probabilities, test_labels),
            "after": reliability(temperature_scaled(test_probabilities, temperature), test_labels),
        },
    }
