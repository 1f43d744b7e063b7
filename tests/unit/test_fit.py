"""The fit check, batch-norm statistics for inference, and the report's did-not-fit rule."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from pathcnn.metrics import chance_upper_bound, fit_status
from pathcnn.models import make_model
from pathcnn.params import TrainParams
from pathcnn.stages.report import ModelResults, findings, unfitted_folds
from pathcnn.training import batch_norm_layers, recompute_batch_norm_statistics


def test_chance_upper_bound_is_the_binomial_range_around_the_majority_share():
    labels = np.array([0] * 60 + [1] * 40)
    assert chance_upper_bound(labels) == pytest.approx(binom.ppf(0.975, 100, 0.6) / 100)
    assert 0.6 < chance_upper_bound(labels) < 0.75


def test_a_fit_at_chance_failed_and_a_fit_above_it_did_not():
    labels = np.array([0, 1] * 162)  # 324 balanced training patches, as model 1's fold had
    assert fit_status(0.488, labels) == "failed"  # the fold the issue reports
    assert fit_status(0.5, labels) == "failed"
    assert fit_status(0.93, labels) == "ok"
    assert fit_status(chance_upper_bound(labels), labels) == "failed"
    assert fit_status(chance_upper_bound(labels) + 0.01, labels) == "ok"


def test_batch_norm_statistics_are_those_of_the_layer_inputs_at_inference():
    model = make_model((16, 16, 3), 2, TrainParams(conv_blocks=2, filters=4, dense_units=4, batch_norm=True))
    patches = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3)).astype(np.uint8)
    first = batch_norm_layers(model)[0]
    before = np.array(first.moving_mean)
    recompute_batch_norm_statistics(model, patches, batch_size=7)
    inputs = np.asarray(keras.Model(model.inputs, first.input)(patches.astype(np.float32), training=False))
    flat = inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)
    assert np.allclose(first.moving_mean, flat.mean(axis=0), atol=1e-5)
    assert np.allclose(first.moving_variance, flat.var(axis=0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(before, first.moving_mean)  # Keras starts at 0: the test can fail
    # The second layer sees inputs normalised with the first layer's new statistics.
    second = batch_norm_layers(model)[1]
    inputs = np.asarray(keras.Model(model.inputs, second.input)(patches.astype(np.float32), training=False))
    assert np.allclose(second.moving_mean, inputs.reshape(-1, inputs.shape[-1]).mean(axis=0), atol=1e-5)


def results_with_folds(folds: dict[str, dict], train_fit: str = "ok") -> ModelResults:
    train = {
        "train_accuracy": 0.99 if train_fit == "ok" else 0.5,
        "val_accuracy": 0.97,
        "test_accuracy": 1.0,
        "baseline_accuracy": 0.5,
        "fit": train_fit,
        "fit_chance_upper": 0.55,
    }
    crossval = {"status": "ok", "cnn_mean_accuracy": float(np.mean([f["cnn_accuracy"] for f in folds.values()]))}
    crossval["folds"] = folds
    metrics = {"train": train, "baseline": {}, "control": {}, "crossval": crossval}
    results = ModelResults("model1", ("A", "B"), metrics, {stage: pd.DataFrame() for stage in metrics})
    results.stats["train"] = {"accuracy": 1.0}
    results.stats["crossval_cnn"] = {
        "accuracy": crossval["cnn_mean_accuracy"],
        "ci_low": 0.55,
        "ci_high": 0.8,
        "null_rate": 0.5,
        "image_correct": 2,
        "image_n": 4,
    }
    return results


def fold(accuracy: float, fit: str, train_accuracy: float) -> dict:
    return {
        "cnn_accuracy": accuracy,
        "cnn_fit": fit,
        "cnn_train_accuracy": train_accuracy,
        "cnn_fit_chance_upper": 0.55,
    }


def test_a_fold_that_did_not_fit_is_reported_as_such_never_as_memorisation():
    folds = {"fold1": fold(0.766, "ok", 0.98), "fold2": fold(0.5, "failed", 0.488)}
    assert unfitted_folds({"folds": folds}) == ["fold2"]
    text = " ".join(findings(results_with_folds(folds), None))
    assert "The CNN of fold fold2 did not fit" in text and "0.488" in text
    assert "memorisation." not in text and "reflects within-image memorisation" not in text
    fitted = {"fold1": fold(0.766, "ok", 0.98), "fold2": fold(0.5, "ok", 0.93)}
    text = " ".join(findings(results_with_folds(fitted), None))
    assert "did not fit" not in text and "memorisation" in text  # the same numbers, fitted: the old rule speaks


def test_a_final_model_that_did_not_fit_says_so():
    folds = {"fold1": fold(0.9, "ok", 0.98)}
    text = " ".join(findings(results_with_folds(folds, train_fit="failed"), None))
    assert "The final CNN did not fit" in text and "underfits" not in text
