"""Statistics for small test sets: confidence intervals, chance baselines, paired comparison.

Pure functions only: no logging, no I/O.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


def _check_counts(successes: int, total: int) -> None:
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be between 0 and total ({total}), got {successes}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's binomtest); (0.0, 1.0) when total is 0."""
    _check_counts(successes, total)
    _check_confidence(confidence)
    if total == 0:
        return 0.0, 1.0
    interval = scipy_stats.binomtest(successes, total).proportion_ci(confidence, method="wilson")
    # Clamp rounding noise so that 0/n starts exactly at 0 and n/n ends exactly at 1.
    return max(0.0, float(interval.low)), min(1.0, float(interval.high))


def binomial_p_value(successes: int, total: int, null_rate: float) -> float:
    """One-sided exact binomial p-value P(X >= successes) for X ~ Binomial(total, null_rate)."""
    _check_counts(successes, total)
    if not 0.0 <= null_rate <= 1.0:
        raise ValueError(f"null_rate must be between 0 and 1, got {null_rate}")
    if total == 0 or null_rate >= 1.0:
        return 1.0
    return float(scipy_stats.binomtest(successes, total, null_rate, alternative="greater").pvalue)


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    y_other: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of metric(y_true, y_other) over paired resamples.

    Resamples on which the metric is undefined (raises ValueError or returns nan) are skipped;
    (nan, nan) is returned when fewer than half of the resamples are usable. Warnings raised by
    the metric are silenced.
    """
    y_true = np.asarray(y_true)
    y_other = np.asarray(y_other)
    if len(y_true) != len(y_other):
        raise ValueError(f"y_true and y_other must have the same length, got {len(y_true)} and {len(y_other)}")
    if len(y_true) == 0:
        raise ValueError("cannot bootstrap an empty sample: y_true has length 0")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    _check_confidence(confidence)

    generator = np.random.default_rng(seed)
    sample_size = len(y_true)
    values: list[float] = []
    with warnings.catch_warnings():
        # Undefined resamples are expected and skipped; sklearn would warn about each one.
        warnings.simplefilter("ignore")
        for _ in range(n_resamples):
            indices = generator.integers(0, sample_size, size=sample_size)
            try:
                value = float(metric(y_true[indices], y_other[indices]))
            except ValueError:
                continue
            if not math.isnan(value):
                values.append(value)
    if len(values) * 2 < n_resamples:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(np.asarray(values), [tail, 1.0 - tail])
    return float(lower), float(upper)


@dataclass(frozen=True)
class McNemarResult:
    """Discordant pair counts and the exact two-sided McNemar p-value."""

    only_a_correct: int
    only_b_correct: int
    p_value: float


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact (binomial) two-sided McNemar test on paired boolean correctness vectors."""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(
            "correct_a and correct_b must be 1-D and of the same length, "
            f"got shapes {correct_a.shape} and {correct_b.shape}"
        )
    only_a_correct = int(np.sum(correct_a & ~correct_b))
    only_b_correct = int(np.sum(~correct_a & correct_b))
    discordant = only_a_correct + only_b_correct
    if discordant == 0:
        return McNemarResult(only_a_correct, only_b_correct, 1.0)
    p_value = float(scipy_stats.binomtest(only_a_correct, discordant, 0.5).pvalue)
    return McNemarResult(only_a_correct, only_b_correct, p_value)


def majority_rate(train_labels: np.ndarray, test_labels: np.ndarray) -> tuple[int, float]:
    """Most frequent training label (ties -> smallest) and the majority baseline's accuracy on test_labels.

    With a tie the majority label is a coin flip among the tied labels, so the baseline is their mean test
    rate: picking the smallest one's rate would make the baseline depend on label order (a 162:162 nonsense
    split scored 0.325 or 0.675 by which class came first).
    """
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    if train_labels.size == 0:
        raise ValueError("train_labels is empty: cannot choose a majority label")
    values, counts = np.unique(train_labels, return_counts=True)
    tied = values[counts == counts.max()]
    majority_label = int(tied[0])  # np.unique sorts values: the smallest tied label
    if test_labels.size == 0:
        return majority_label, 0.0
    return majority_label, float(np.mean([np.mean(test_labels == label) for label in tied]))


def chance_rate(baseline_accuracy: float, class_count: int) -> float:
    """What a model without signal is expected to score: the majority rate or 1/K, whichever is higher."""
    return max(baseline_accuracy, 1.0 / class_count)
