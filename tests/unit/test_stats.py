"""Tests for pathcnn.stats against scipy and published worked examples."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import accuracy_score, roc_auc_score

from pathcnn.stats import (
    McNemarResult,
    binomial_p_value,
    bootstrap_interval,
    majority_rate,
    mcnemar_test,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "total", "confidence"),
    [(0, 10, 0.95), (1, 10, 0.95), (5, 10, 0.95), (10, 10, 0.95), (81, 263, 0.9), (37, 50, 0.99)],
)
def test_wilson_interval_matches_scipy(successes: int, total: int, confidence: float) -> None:
    expected = scipy_stats.binomtest(successes, total).proportion_ci(confidence_level=confidence, method="wilson")
    lower, upper = wilson_interval(successes, total, confidence)
    assert lower == pytest.approx(expected.low, abs=1e-12)
    assert upper == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize(
    ("successes", "total", "expected_lower", "expected_upper"),
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score).
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe_table(
    successes: int, total: int, expected_lower: float, expected_upper: float
) -> None:
    lower, upper = wilson_interval(successes, total)
    assert round(lower, 4) == expected_lower
    assert round(upper, 4) == expected_upper


def test_wilson_interval_without_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("successes", "total", "confidence"), [(-1, 10, 0.95), (11, 10, 0.95), (5, 10, 1.0)])
def test_wilson_interval_rejects_bad_input(successes: int, total: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, total, confidence)


@pytest.mark.parametrize(
    ("successes", "total", "null_rate"),
    [(7, 10, 0.5), (0, 10, 0.3), (10, 10, 0.9), (60, 100, 0.55), (3, 40, 0.2)],
)
def test_binomial_p_value_matches_scipy(successes: int, total: int, null_rate: float) -> None:
    expected = scipy_stats.binomtest(successes, total, null_rate, alternative="greater").pvalue
    assert binomial_p_value(successes, total, null_rate) == pytest.approx(expected, rel=1e-9)


def test_binomial_p_value_hand_computed() -> None:
    # P(X >= 9 | n=10, p=0.5) = (10 + 1) / 1024.
    assert binomial_p_value(9, 10, 0.5) == pytest.approx(11 / 1024, rel=1e-12)


def test_binomial_p_value_degenerate_cases() -> None:
    assert binomial_p_value(0, 0, 0.5) == 1.0
    assert binomial_p_value(10, 10, 1.0) == 1.0
    assert binomial_p_value(4, 10, 1.0) == 1.0
    with pytest.raises(ValueError):
        binomial_p_value(3, 10, 1.5)


def test_mcnemar_hand_computed_example() -> None:
    # b = 1 pair only A gets right, c = 9 pairs only B gets right, 5 both right, 3 both wrong.
    correct_a = np.array([True] * 1 + [False] * 9 + [True] * 5 + [False] * 3)
    correct_b = np.array([False] * 1 + [True] * 9 + [True] * 5 + [False] * 3)
    result = mcnemar_test(correct_a, correct_b)
    # Exact two-sided p = 2 * P(X <= 1 | n=10, 0.5) = 2 * 11 / 1024.
    assert result == McNemarResult(only_a_correct=1, only_b_correct=9, p_value=0.021484375)
    swapped = mcnemar_test(correct_b, correct_a)
    assert (swapped.only_a_correct, swapped.only_b_correct) == (9, 1)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_mcnemar_balanced_and_concordant_cases() -> None:
    assert mcnemar_test(np.array([True, False]), np.array([False, True])).p_value == 1.0
    concordant = mcnemar_test(np.array([True, False, True]), np.array([True, False, True]))
    assert concordant == McNemarResult(0, 0, 1.0)


def test_mcnemar_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        mcnemar_test(np.array([True, False]), np.array([True]))


def test_bootstrap_interval_contains_accuracy_and_is_deterministic() -> None:
    y_true = np.array([0, 1] * 20)
    y_predicted = y_true.copy()
    y_predicted[:8] = 1 - y_predicted[:8]  # 32 / 40 correct
    point = accuracy_score(y_true, y_predicted)
    lower, upper = bootstrap_interval(accuracy_score, y_true, y_predicted, n_resamples=300, seed=3)
    assert lower < point < upper
    assert 0.6 < lower and upper <= 1.0
    assert bootstrap_interval(accuracy_score, y_true, y_predicted, n_resamples=300, seed=3) == (
        lower,
        upper,
    )
    assert bootstrap_interval(accuracy_score, y_true, y_predicted, n_resamples=300, seed=4) != (
        lower,
        upper,
    )


def test_bootstrap_interval_skips_resamples_where_metric_is_undefined() -> None:
    # With 2 positives in 40, about 13% of resamples hold no positive and AUC is undefined
    # (sklearn returns nan with a warning); the positives score highest, so AUC is 1 elsewhere.
    y_true = np.array([1, 1] + [0] * 38)
    scores = np.linspace(1.0, 0.0, 40)
    lower, upper = bootstrap_interval(roc_auc_score, y_true, scores, n_resamples=200)
    assert lower == pytest.approx(1.0) and upper == pytest.approx(1.0)


def test_bootstrap_interval_skips_resamples_where_metric_raises() -> None:
    y_true = np.array([1, 1] + [0] * 38)

    def positive_rate_or_raise(truth: np.ndarray, other: np.ndarray) -> float:
        if truth.sum() == 0:
            raise ValueError("no positive in this resample")
        return float(truth.mean())

    lower, upper = bootstrap_interval(positive_rate_or_raise, y_true, y_true, n_resamples=200)
    # Only resamples with at least one positive count, so the lower bound is at least 1/40.
    assert 1 / 40 <= lower < upper


def test_bootstrap_interval_gives_nan_when_metric_mostly_undefined() -> None:
    y_true = np.array([1] + [0] * 39)  # a positive is missing from about 37% of resamples
    scores = np.linspace(1.0, 0.0, 40)

    def nan_unless_many_positives(truth: np.ndarray, other: np.ndarray) -> float:
        return float(roc_auc_score(truth, other)) if truth.sum() >= 2 else math.nan

    lower, upper = bootstrap_interval(nan_unless_many_positives, y_true, scores, n_resamples=200)
    assert math.isnan(lower) and math.isnan(upper)


def test_bootstrap_interval_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        bootstrap_interval(accuracy_score, np.array([0, 1]), np.array([0]))


def test_majority_rate() -> None:
    assert majority_rate(np.array([2, 2, 1, 0]), np.array([2, 1, 2, 2])) == (2, 0.75)


def test_majority_rate_of_a_tie_is_the_tied_labels_mean_test_rate() -> None:
    # 1 and 3 tie in training: label 1 is named, the baseline is (0.5 + 0.25) / 2, whichever label comes first.
    assert majority_rate(np.array([3, 1, 3, 1, 0]), np.array([1, 1, 0, 3])) == (1, 0.375)
    assert majority_rate(np.array([0, 1, 0, 1]), np.array([1, 1, 1, 0]))[1] == 0.5
    assert majority_rate(np.array([1, 0, 1, 0]), np.array([0, 0, 0, 1]))[1] == 0.5


def test_majority_rate_on_empty_test_set() -> None:
    assert majority_rate(np.array([0, 1, 1]), np.array([], dtype=int)) == (1, 0.0)
