"""Tests for the handcrafted-feature baseline on small synthetic patches."""

import numpy as np
import pytest
from skimage.color import rgb2hsv

from pathcnn.errors import PathcnnError
from pathcnn.features import (
    FEATURE_NAMES,
    fit_feature_classifier,
    patch_features,
    predict_feature_classifier,
)

FEATURE_COUNT = len(FEATURE_NAMES)


def _random_patches(count: int, height: int = 100, width: int = 100, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return generator.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def _pink_and_purple_patches(count_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pink, fine-noise patches (label 0) and purple patches with coarse dark blobs (label 1)."""
    generator = np.random.default_rng(seed)
    size = 64
    pink = np.array([225.0, 150.0, 195.0]) + generator.normal(0.0, 18.0, size=(count_per_class, size, size, 3))
    # Coarse texture: 8x8 blocks of random darkness, upsampled, on a purple base.
    blocks = generator.uniform(0.4, 1.0, size=(count_per_class, size // 8, size // 8, 1))
    darkness = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)
    purple = np.array([150.0, 90.0, 190.0]) * darkness + generator.normal(
        0.0, 10.0, size=(count_per_class, size, size, 3)
    )
    patches = np.clip(np.concatenate([pink, purple]), 0, 255).astype(np.uint8)
    labels = np.repeat(np.array([0, 1]), count_per_class)
    order = generator.permutation(len(labels))
    return patches[order], labels[order]


def test_feature_names_are_unique_and_match_feature_count() -> None:
    assert len(set(FEATURE_NAMES)) == FEATURE_COUNT
    assert patch_features(_random_patches(2)).shape == (2, FEATURE_COUNT)


def test_patch_features_shape_dtype_and_finite() -> None:
    features = patch_features(_random_patches(5))
    assert features.shape == (5, FEATURE_COUNT)
    assert features.dtype == np.float32
    assert np.all(np.isfinite(features))


@pytest.mark.parametrize(("count", "height", "width"), [(1, 16, 16), (3, 37, 53), (20, 100, 100)])
def test_feature_count_independent_of_batch_and_patch_size(count: int, height: int, width: int) -> None:
    assert patch_features(_random_patches(count, height, width)).shape == (count, FEATURE_COUNT)


def test_empty_batch_gives_empty_feature_matrix() -> None:
    features = patch_features(np.zeros((0, 100, 100, 3), dtype=np.uint8))
    assert features.shape == (0, FEATURE_COUNT)


def test_histograms_sum_to_one_per_channel() -> None:
    features = patch_features(_random_patches(3, 40, 40))
    for channel in ("red", "green", "blue"):
        columns = [i for i, name in enumerate(FEATURE_NAMES) if name.startswith(f"histogram_{channel}")]
        assert len(columns) == 16
        np.testing.assert_allclose(features[:, columns].sum(axis=1), 1.0, rtol=1e-5)
    lbp_columns = [i for i, name in enumerate(FEATURE_NAMES) if name.startswith("lbp_uniform")]
    np.testing.assert_allclose(features[:, lbp_columns].sum(axis=1), 1.0, rtol=1e-5)


def test_hsv_moments_match_skimage() -> None:
    patches = _random_patches(4, 30, 30, seed=5)
    patches[0] = 90  # a grey patch: zero saturation, hue defined as 0
    features = patch_features(patches)
    hsv = rgb2hsv(patches).reshape(4, -1, 3)
    for channel_index, channel in enumerate(("hue", "saturation", "value")):
        mean = features[:, FEATURE_NAMES.index(f"{channel}_mean")]
        std = features[:, FEATURE_NAMES.index(f"{channel}_std")]
        np.testing.assert_allclose(mean, hsv[:, :, channel_index].mean(axis=1), atol=1e-5)
        np.testing.assert_allclose(std, hsv[:, :, channel_index].std(axis=1), atol=1e-5)


def test_flat_patch_gives_finite_features() -> None:
    features = patch_features(np.full((2, 32, 32, 3), 128, dtype=np.uint8))
    assert np.all(np.isfinite(features))


def test_patch_features_deterministic_and_independent_of_batch_neighbours() -> None:
    patches = _random_patches(40, 24, 24, seed=1)
    features = patch_features(patches)
    np.testing.assert_array_equal(features, patch_features(patches.copy()))
    # Patch 33 falls in a later processing chunk than when it is computed alone.
    np.testing.assert_array_equal(features[33], patch_features(patches[33:34])[0])


@pytest.mark.parametrize(
    "patches",
    [
        np.zeros((2, 100, 100, 3), dtype=np.float32),
        np.zeros((2, 100, 100), dtype=np.uint8),
        np.zeros((2, 100, 100, 4), dtype=np.uint8),
        np.zeros((2, 15, 100, 3), dtype=np.uint8),
    ],
)
def test_patch_features_rejects_bad_input(patches: np.ndarray) -> None:
    with pytest.raises(ValueError):
        patch_features(patches)


def test_classifier_separates_pink_noise_from_purple_texture() -> None:
    patches, labels = _pink_and_purple_patches(count_per_class=40, seed=7)
    features = patch_features(patches)
    train, test = slice(0, 50), slice(50, 80)
    model = fit_feature_classifier(features[train], labels[train], seed=0)
    probabilities = predict_feature_classifier(model, features[test])
    assert probabilities.shape == (30, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    accuracy = np.mean(probabilities.argmax(axis=1) == labels[test])
    assert accuracy >= 0.9


def test_classifier_rejects_a_single_class() -> None:
    features = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(PathcnnError, match="at least two classes"):
        fit_feature_classifier(features, np.zeros(10, dtype=int), seed=0)


def test_classifier_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="one entry per feature row"):
        fit_feature_classifier(np.zeros((10, 4)), np.zeros(9, dtype=int), seed=0)


def test_predicted_columns_follow_label_values() -> None:
    generator = np.random.default_rng(0)
    labels = np.array([0, 2] * 10)
    features = generator.normal(size=(20, 3)) + labels[:, None] * 3.0
    model = fit_feature_classifier(features, labels, seed=0)
    probabilities = predict_feature_classifier(model, features, n_classes=4)
    assert probabilities.shape == (20, 4)
    np.testing.assert_array_equal(probabilities[:, [1, 3]], 0.0)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), labels)
