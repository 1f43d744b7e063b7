"""Statistics of stored predictions: against scipy/sklearn and hand-checked small cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from pathcnn.significance import (
    accuracy_summary,
    best_possible_image_p_value,
    fast_balanced_accuracy,
    fast_binary_auc,
    over_seeds,
    paired_comparison,
    prediction_statistics,
)

CLASSES = ("A", "B")


def frame(labels: list[str], predicted: list[str], prob_b: list[float], images: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patch_id": [f"p{i}" for i in range(len(labels))],
            "image_id": images,
            "label": labels,
            "prob_A": [1 - p for p in prob_b],
            "prob_B": prob_b,
            "predicted": predicted,
        }
    )


def test_accuracy_summary_matches_scipy_binomtest() -> None:
    correct = np.array([True] * 31 + [False] * 9)
    summary = accuracy_summary(correct, null_rate=0.55)
    test = scipy_stats.binomtest(31, 40, 0.55, alternative="greater")
    interval = scipy_stats.binomtest(31, 40).proportion_ci(confidence_level=0.95, method="wilson")
    assert summary["accuracy"] == pytest.approx(31 / 40)
    assert summary["p_value"] == pytest.approx(test.pvalue, rel=1e-9)
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((interval.low, interval.high), abs=1e-12)
    assert summary["n"] == 40 and summary["correct"] == 31


def test_fast_metrics_equal_sklearn_with_ties() -> None:
    generator = np.random.default_rng(3)
    labels = generator.integers(0, 2, 60)
    scores = np.round(generator.random(60), 1)  # rounding makes ties
    predicted = (scores > 0.5).astype(int)
    assert fast_binary_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert fast_balanced_accuracy(labels, predicted) == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert np.isnan(fast_binary_auc(np.zeros(5, int), scores[:5]))
    assert np.isnan(fast_balanced_accuracy(np.ones(5, int), predicted[:5]))


def test_prediction_statistics_image_level_uses_mean_probability() -> None:
    # Image X (A): patches 0.4, 0.4, 0.9 -> mean 0.567 -> B although two of three patches say A.
    predictions = frame(
        ["A", "A", "A", "B", "B"], ["A", "A", "B", "B", "B"], [0.4, 0.4, 0.9, 0.8, 0.7], ["X", "X", "X", "Y", "Y"]
    )
    stats = prediction_statistics(predictions, CLASSES, null_rate=0.6, resamples=200, seed=0)
    assert stats["accuracy"] == pytest.approx(4 / 5)
    assert (stats["image_correct"], stats["image_n"]) == (1, 2)
    assert stats["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert stats["balanced_accuracy_low"] <= stats["balanced_accuracy"] <= stats["balanced_accuracy_high"]


def test_paired_comparison_joins_on_patch_id_not_row_order() -> None:
    first = frame(["A", "A", "B", "B"], ["A", "B", "B", "A"], [0.1, 0.9, 0.8, 0.2], ["X", "X", "Y", "Y"])
    second = first.iloc[::-1].assign(predicted=["A", "B", "A", "A"][::-1]).reset_index(drop=True)
    # By patch id the second model predicts p0 A, p1 B, p2 A, p3 A: p0 both right, p1 and p3 both wrong,
    # p2 only the first right. Joined by row order instead, the counts would differ.
    result = paired_comparison(first, second)
    assert result["n"] == 4
    assert (result["only_first_correct"], result["only_second_correct"]) == (1, 0)
    assert result["p_value"] == pytest.approx(1.0)


def test_best_possible_image_p_value_with_four_images() -> None:
    assert best_possible_image_p_value(4, 0.5) == pytest.approx(0.0625)
    assert best_possible_image_p_value(0, 0.5) == 1.0


def test_repeated_seeds_do_not_narrow_the_interval_or_the_p_value() -> None:
    """Three seeds on the same 40 patches: n stays 40, the interval spans the seeds' intervals, p is the largest.

    Pooling the 120 predictions as independent (the earlier report) gives a narrower interval and a smaller p.
    """
    rng = np.random.default_rng(0)
    labels = ["A"] * 20 + ["B"] * 20
    images = ["a1"] * 20 + ["b1"] * 20
    per_seed, frames = [], []
    for seed, hits in ((42, 26), (43, 30), (44, 28)):
        right = np.zeros(40, dtype=bool)
        right[rng.choice(40, hits, replace=False)] = True
        predicted = [label if ok else ("B" if label == "A" else "A") for label, ok in zip(labels, right, strict=True)]
        prob_b = [0.8 if p == "B" else 0.2 for p in predicted]
        one = frame(labels, predicted, prob_b, images).assign(seed=seed)
        frames.append(one)
        per_seed.append(prediction_statistics(one, CLASSES, null_rate=0.5, resamples=200, seed=0))
    combined = over_seeds(per_seed)
    assert combined["n"] == 40 and combined["seeds"] == 3
    assert combined["accuracy"] == pytest.approx((26 + 30 + 28) / 120)
    assert combined["ci_low"] == pytest.approx(accuracy_summary(np.arange(40) < 26, 0.5)["ci_low"])
    assert combined["ci_high"] == pytest.approx(accuracy_summary(np.arange(40) < 30, 0.5)["ci_high"])
    assert combined["p_value"] == pytest.approx(scipy_stats.binomtest(26, 40, 0.5, alternative="greater").pvalue)
    assert combined["image_n"] == 6 and combined["image_correct"] == sum(s["image_correct"] for s in per_seed)
    pooled = prediction_statistics(pd.concat(frames), CLASSES, null_rate=0.5, resamples=200, seed=0)
    assert pooled["n"] == 120
    assert combined["ci_high"] - combined["ci_low"] > pooled["ci_high"] - pooled["ci_low"]
    assert combined["p_value"] > pooled["p_value"]


def test_temperature_scaling_softens_an_over_confident_model() -> None:
    from pathcnn.significance import fit_temperature, reliability, temperature_scaled

    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 2000)
    correct = generator.random(2000) < 0.7  # right 70 % of the time, always 99 % sure
    predicted = np.where(correct, labels, 1 - labels)
    probabilities = np.where(predicted[:, None] == np.arange(2), 0.99, 0.01)
    assert np.allclose(temperature_scaled(probabilities, 1.0), probabilities, atol=1e-9)
    before = reliability(probabilities, labels)
    assert before["ece"] == pytest.approx(0.99 - correct.mean(), abs=1e-9)  # one bin: confidence minus accuracy
    temperature = fit_temperature(probabilities, labels)
    assert temperature > 1.0
    after = reliability(temperature_scaled(probabilities, temperature), labels)
    assert after["ece"] < 0.02 and after["curve"][0]["n"] == 2000


def test_calibration_cross_fits_the_temperature_over_folds() -> None:
    from pathcnn.significance import calibration

    generator = np.random.default_rng(1)
    rows = []
    for fold, accuracy in (("fold1", 0.55), ("fold2", 0.95)):  # folds as unlike as model 1's
        for index in range(300):
            label = "AB"[index % 2]
            right = generator.random() < accuracy
            predicted = label if right else "AB"[(index + 1) % 2]
            rows.append(
                {"fold": fold, "label": label, "predicted": predicted, "prob_A": 0.97 if predicted == "A" else 0.03}
            )
    frame = pd.DataFrame(rows).assign(prob_B=lambda f: 1 - f["prob_A"])
    record = calibration(frame, frame[frame["fold"] == "fold2"], ("A", "B"))
    held = record["held_out"]
    assert held["before"]["n"] == held["after"]["n"] == 600
    # Fitted on the other fold only, each fold's temperature is wrong for it (model 1's case): scaling makes
    # the held-out probabilities worse, and the record says it does not help.
    assert held["after"]["ece"] > held["before"]["ece"] + 0.1
    assert record["temperature_helps"] is False
    assert record["temperature"] > 1.0  # over-confident overall
    assert sum(b["n"] for b in held["before"]["curve"]) == 600
