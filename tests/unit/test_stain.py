"""Reinhard normalisation: each image's LAB statistics land on the target; none leaves patches untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pathcnn.params import StainNormalization
from pathcnn.patchsets import PatchSet
from pathcnn.stain import TARGET_MEANS, TARGET_STDS, lab_statistics, normalize_by_image, normalize_sets, reinhard


def tinted(count: int, tint: tuple[int, int, int], seed: int) -> np.ndarray:
    """Pinkish noise patches shifted by a colour tint."""
    generator = np.random.default_rng(seed)
    base = generator.integers(120, 220, (count, 20, 20, 3))
    return np.clip(base + np.array(tint), 0, 255).astype(np.uint8)


def test_reinhard_maps_statistics_onto_the_target() -> None:
    patches = tinted(4, (30, -20, 10), seed=1)
    means, stds = lab_statistics(reinhard(patches))
    assert means == pytest.approx(TARGET_MEANS, abs=1.5)
    assert stds == pytest.approx(TARGET_STDS, rel=0.15)


def test_normalize_by_image_uses_each_images_own_statistics() -> None:
    first, second = tinted(3, (40, -10, 0), seed=2), tinted(3, (-20, 0, 40), seed=3)
    patches = np.concatenate([first, second])
    ids = np.array(["X"] * 3 + ["Y"] * 3)
    normalized = normalize_by_image(patches, ids, StainNormalization.reinhard)
    np.testing.assert_array_equal(normalized[:3], reinhard(first))
    np.testing.assert_array_equal(normalized[3:], reinhard(second))
    # Differently tinted images end up with nearly the same colour statistics.
    assert lab_statistics(normalized[:3])[0] == pytest.approx(lab_statistics(normalized[3:])[0], abs=1.5)
    assert normalize_by_image(patches, ids, StainNormalization.none) is patches


def test_normalize_sets_pools_an_images_patches_across_parts_and_keeps_labels() -> None:
    patches = tinted(6, (20, 0, -10), seed=4)
    frame = pd.DataFrame({"patch_id": [f"p{i}" for i in range(6)], "image_id": ["X"] * 6, "label": ["A"] * 6})
    sets = {
        "train": PatchSet(patches[:4], np.zeros(4, np.int64), frame[:4]),
        "val": PatchSet(patches[4:5], np.zeros(1, np.int64), frame[4:5]),
        "test": PatchSet(patches[5:], np.zeros(1, np.int64), frame[5:]),
    }
    normalized = normalize_sets(sets, StainNormalization.reinhard)
    whole = reinhard(patches)
    np.testing.assert_array_equal(normalized["train"].patches, whole[:4])
    np.testing.assert_array_equal(normalized["test"].patches, whole[5:])
    assert normalized["val"].frame is sets["val"].frame
