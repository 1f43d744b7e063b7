"""Splits: stratified, disjoint, 90:10 within one patch, deterministic per seed; folds hold out whole images."""

from __future__ import annotations

import numpy as np
import pytest

from pathcnn.errors import PathcnnError
from pathcnn.splits import held_out_folds, image_folds, split_images, split_patches

LABELS = np.array(["A"] * 197 + ["B"] * 203)
IMAGES = np.array(["A1"] * 100 + ["A2"] * 97 + ["B1"] * 103 + ["B2"] * 100)


def test_patch_split_is_ninety_ten_within_one_patch_and_stratified() -> None:
    assignment = split_patches(LABELS, 0.1, 0.1, seed=7)
    test = assignment == "test"
    assert abs(test.sum() - 0.1 * len(LABELS)) <= 1
    for label in ("A", "B"):
        share = test[LABELS == label].mean()
        assert abs(share - 0.1) < 0.02
    assert set(np.unique(assignment)) == {"train", "val", "test"}
    train_like = (assignment == "train").sum() + (assignment == "val").sum()
    assert abs((assignment == "val").sum() - 0.1 * train_like) <= 1


def test_patch_split_is_deterministic_per_seed_and_changes_with_it() -> None:
    first = split_patches(LABELS, 0.1, 0.1, seed=3)
    np.testing.assert_array_equal(first, split_patches(LABELS, 0.1, 0.1, seed=3))
    assert (first != split_patches(LABELS, 0.1, 0.1, seed=4)).any()


def test_parts_are_disjoint_and_cover_every_patch() -> None:
    assignment = split_patches(LABELS, 0.1, 0.1, seed=0)
    assert len(assignment) == len(LABELS)
    indices = {part: set(np.flatnonzero(assignment == part)) for part in ("train", "val", "test")}
    assert not (indices["train"] & indices["test"]) and not (indices["val"] & indices["test"])
    assert sum(len(v) for v in indices.values()) == len(LABELS)


def test_image_split_keeps_each_image_on_one_side() -> None:
    assignment = split_images(LABELS, IMAGES, 0.1, 0.1, seed=1)
    for image in np.unique(IMAGES):
        in_test = assignment[IMAGES == image] == "test"
        assert in_test.all() or not in_test.any()
    held = {image for image in np.unique(IMAGES) if (assignment[IMAGES == image] == "test").all()}
    assert len(held) == 2 and {h[0] for h in held} == {"A", "B"}


def test_image_split_needs_two_images_per_class() -> None:
    with pytest.raises(PathcnnError, match="class A has 1 image"):
        split_images(np.array(["A", "A", "B", "B"]), np.array(["A1", "A1", "B1", "B2"]), 0.1, 0.1, 0)


def test_folds_hold_out_one_whole_image_per_class() -> None:
    folds = image_folds(LABELS, IMAGES)
    assert [fold.test_images for fold in folds] == [("A1", "B1"), ("A2", "B2")]


def test_folds_refuse_a_class_with_one_image() -> None:
    with pytest.raises(PathcnnError, match="fewer than 2 images"):
        image_folds(np.array(["A", "B", "B"]), np.array(["A1", "B1", "B2"]))


def test_too_few_patches_is_a_clear_error() -> None:
    with pytest.raises(PathcnnError, match="at least 3"):
        split_patches(np.array(["A", "B"]), 0.1, 0.1, 0)


def test_held_out_objective_folds_never_put_one_image_in_a_trials_training_and_its_score() -> None:
    """The tune objective's folds, built on the train split's patches: the test split's patches never enter."""
    split = split_patches(LABELS, 0.1, 0.1, seed=5)
    pool = split != "test"
    folds = held_out_folds(LABELS[pool], IMAGES[pool], 0.1, seed=5)
    assert [fold.test_images for fold, _ in folds] == [("A1", "B1"), ("A2", "B2")]
    for fold, assignment in folds:
        assert len(assignment) == pool.sum()  # only the pool's patches are assigned
        images = {part: set(IMAGES[pool][assignment == part]) for part in ("train", "val", "test")}
        assert images["test"] == set(fold.test_images)
        assert not (images["train"] | images["val"]) & images["test"]
        assert images["train"] == images["val"] == set(np.unique(IMAGES)) - set(fold.test_images)
