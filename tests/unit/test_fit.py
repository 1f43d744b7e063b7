"""The fit check and batch-norm statistics for inference (the report's did-not-fit rule: test_findings.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.stats import binom

from pathcnn.metrics import chance_upper_bound, fit_status
from pathcnn.models import make_model
from pathcnn.params import TrainParams
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


def test_learning_rate_warms_up_linearly_from_a_tenth_then_stays() -> None:
    from pathcnn.params import TrainParams
    from pathcnn.training import learning_rate_schedule

    params = TrainParams(learning_rate=1e-3, warmup_epochs=2, batch_size=10)
    schedule = learning_rate_schedule(params, train_count=45)  # 5 steps per epoch: 10 warm-up steps
    rates = [float(schedule(step)) for step in (0, 5, 10, 11, 1000)]
    assert rates == pytest.approx([1e-4, 5.5e-4, 1e-3, 1e-3, 1e-3], rel=1e-5)
    assert learning_rate_schedule(params.model_copy(update={"warmup_epochs": 0}), 45) == 1e-3
