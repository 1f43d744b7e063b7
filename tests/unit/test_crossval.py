"""Leave-one-image-out cross-validation, nonsense-label classes and the permutation control, CNN stubbed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pathcnn.crossvalidation import crossvalidate, folds_or_reason, summarise
from pathcnn.evaluation import evaluate_probabilities
from pathcnn.patchsets import PatchSet
from pathcnn.splits import nonsense_classes
from pathcnn.stages.control import leak_suspected, permuted_sets

CLASSES = ("A", "B")


def synthetic(images: dict[str, int], size: int = 16) -> PatchSet:
    """Random patches: `count` per image id, labelled by the image id's first letter."""
    rows = [(f"{image}_{i}", image, image[0]) for image, count in images.items() for i in range(count)]
    frame = pd.DataFrame(rows, columns=["patch_id", "image_id", "label"])
    patches = np.random.default_rng(0).integers(0, 256, (len(frame), size, size, 3), dtype=np.uint8)
    return PatchSet(patches, frame["label"].map({"A": 0, "B": 1}).to_numpy(np.int64), frame)


def test_every_fold_holds_out_whole_images_and_each_patch_is_tested_once() -> None:
    full = synthetic({"A1": 6, "A2": 5, "B1": 6, "B2": 7})
    folds, reason = folds_or_reason(full.frame, CLASSES)
    assert reason is None and len(folds) == 2
    seen: dict[str, dict[str, set[str]]] = {}

    def stub_cnn(fold, masks, seed):  # noqa: ANN001, ANN202 - the FoldTrainer signature
        sets = {part: full.subset(mask) for part, mask in masks.items()}
        seen[fold.name] = {part: set(s.frame["image_id"]) for part, s in sets.items()}
        probabilities = {part: np.tile([0.5, 0.5], (len(s), 1)) for part, s in sets.items()}
        return evaluate_probabilities(probabilities, sets, CLASSES), {}

    metrics, predictions = crossvalidate(full, CLASSES, folds, 0.2, 1, [1], stub_cnn)
    for fold in folds:
        parts = seen[fold.name]
        assert parts["test"] == set(fold.test_images)
        assert not parts["test"] & (parts["train"] | parts["val"])
        assert {image[0] for image in parts["test"]} == {"A", "B"}
    cnn = predictions[predictions["method"] == "cnn"]
    assert sorted(cnn["patch_id"]) == sorted(full.frame["patch_id"])
    assert set(metrics["folds"]) == {"fold1", "fold2"}
    assert metrics["cnn_mean_accuracy"] == pytest.approx(
        np.mean([f["cnn_accuracy"] for f in metrics["folds"].values()])
    )


def test_each_fold_reports_the_mean_and_range_of_its_seeds_and_names_unfitted_fits() -> None:
    """Seed 7 calls every test patch right, seed 8 every one wrong and fails to fit: mean 0.5, range 1.0."""
    full = synthetic({"A1": 6, "A2": 6, "B1": 6, "B2": 6})
    folds, _ = folds_or_reason(full.frame, CLASSES)

    def stub_cnn(fold, masks, seed):  # noqa: ANN001, ANN202 - the FoldTrainer signature
        sets = {part: full.subset(mask) for part, mask in masks.items()}
        right = seed == 7
        probabilities = {part: np.eye(2)[s.labels if right else 1 - s.labels] for part, s in sets.items()}
        return evaluate_probabilities(probabilities, sets, CLASSES), {"epochs": seed}

    metrics, predictions = crossvalidate(full, CLASSES, folds, 0.2, 1, [7, 8], stub_cnn, features=False)
    for fold in metrics["folds"].values():
        assert (fold["cnn_accuracy"], fold["cnn_accuracy_min"], fold["cnn_accuracy_max"]) == (0.5, 0.0, 1.0)
        assert fold["cnn_accuracy_range"] == 1.0
        assert fold["seeds"]["seed7"]["cnn_accuracy"] == 1.0 and fold["seeds"]["seed8"]["cnn_accuracy"] == 0.0
        assert (fold["seeds"]["seed7"]["cnn_fit"], fold["seeds"]["seed8"]["cnn_fit"]) == ("ok", "failed")
        assert fold["cnn_fit"] == "failed" and fold["cnn_fits_failed"] == 1
        assert fold["cnn_epochs"] == 7.5
        assert "features_accuracy" not in fold
    assert metrics["cnn_folds_not_fitted"] == ["fold1/seed8", "fold2/seed8"]
    assert metrics["cnn_max_seed_range"] == 1.0 and metrics["seeds"] == [7, 8]
    assert metrics["features_mean_accuracy"] is None
    assert set(predictions["seed"]) == {7, 8} and set(predictions["method"]) == {"cnn"}


def test_nonsense_classes_hold_one_image_of_each_real_class() -> None:
    labels = np.array(["A", "A", "B", "B", "A", "B"])
    images = np.array(["A2", "A1", "B1", "B2", "A1", "B2"])
    assert nonsense_classes(labels, images) == {"A1": "A1+B1", "B1": "A1+B1", "A2": "A2+B2", "B2": "A2+B2"}
    # The folds of the nonsense classes never train and test on one image.
    frame = pd.DataFrame({"label": pd.Series(images).map(nonsense_classes(labels, images)), "image_id": images})
    folds, reason = folds_or_reason(frame, ("A1+B1", "A2+B2"))
    assert reason is None and [fold.test_images for fold in folds] == [("A1", "A2"), ("B1", "B2")]


def test_nonsense_classes_need_two_images_per_class() -> None:
    from pathcnn.errors import PathcnnError

    with pytest.raises(PathcnnError, match=r"at least 2 images .*A \(1\), B \(2\)"):
        nonsense_classes(np.array(["A", "B", "B"]), np.array(["A1", "B1", "B2"]))


def test_a_class_with_one_image_cannot_be_cross_validated() -> None:
    folds, reason = folds_or_reason(synthetic({"A1": 3, "B1": 3, "B2": 3}).frame, CLASSES)
    assert folds == [] and "class A (1)" in reason
    folds, reason = folds_or_reason(synthetic({"A1": 3, "A2": 3}).frame, CLASSES)
    assert folds == [] and "class B has no kept patches" in reason


def test_permutation_shuffles_train_and_validation_labels_only() -> None:
    full = synthetic({"A1": 20, "B1": 20})
    mixed = np.arange(40) % 4 == 0  # both classes
    sets = {"train": full, "val": full.subset(mixed), "test": full.subset(~mixed)}
    permuted = permuted_sets(sets, seed=5)
    assert np.bincount(permuted["train"].labels).tolist() == np.bincount(full.labels).tolist()
    assert (permuted["train"].labels != full.labels).any()
    assert (permuted["val"].labels != sets["val"].labels).any()
    np.testing.assert_array_equal(permuted["test"].labels, sets["test"].labels)


def test_leak_is_suspected_only_above_chance_plus_margin() -> None:
    assert not leak_suspected(0.64, baseline_accuracy=0.5, class_count=2, margin=0.15)
    assert leak_suspected(0.66, baseline_accuracy=0.5, class_count=2, margin=0.15)
    assert not leak_suspected(0.70, baseline_accuracy=0.6, class_count=2, margin=0.15)
    # Far above chance but on few images (a coin flip per image): not evidence of a leak.
    assert not leak_suspected(0.80, baseline_accuracy=0.5, class_count=2, margin=0.15, image_p_value=0.2)


def test_control_metrics_pool_image_calls_over_permutations() -> None:
    from pathcnn.stages.control import control_metrics

    rows = []
    for permutation, flipped in (("permutation1", {"A1"}), ("permutation2", {"A1", "B1"}), ("permutation3", set())):
        for image in ("A1", "B1"):
            wrong = image in flipped
            truth = image[0]
            predicted = ("B" if truth == "A" else "A") if wrong else truth
            rows.append(
                {"patch_id": f"{image}_0", "image_id": image, "label": truth, "permutation": permutation}
                | {"prob_A": float(predicted == "A"), "prob_B": float(predicted == "B"), "predicted": predicted}
            )
    runs = [
        {"test_accuracy": value, "train_accuracy": 0.5, "val_accuracy": 0.5, "baseline_accuracy": 0.5, "n_test": 2}
        for value in (0.5, 0.0, 1.0)
    ]
    metrics = control_metrics(runs, pd.DataFrame(rows), CLASSES, margin=0.15)
    assert (metrics["image_calls_correct"], metrics["image_calls"]) == (3, 6)
    assert metrics["test_accuracy"] == pytest.approx(0.5)
    assert metrics["permutation_accuracies"] == {"permutation1": 0.5, "permutation2": 0.0, "permutation3": 1.0}
    assert not metrics["leak_suspected"]


def test_the_spread_of_a_mean_over_folds_is_how_far_each_seeds_mean_moves() -> None:
    """Model 1 of 2026-11-28: per-seed means 0.7255, 0.7305, 0.6335; not the largest single-fold range 0.178."""
    fold1, fold2 = (0.542, 0.552, 0.536), (0.909, 0.909, 0.731)

    def fold(values: tuple[float, ...]) -> dict:
        return {
            "baseline_accuracy": 0.5,
            "cnn_accuracy": sum(values) / 3,
            "cnn_accuracy_range": max(values) - min(values),
            "seeds": {f"seed{42 + k}": {"cnn_accuracy": value, "cnn_fit": "ok"} for k, value in enumerate(values)},
        }

    summary = summarise({"fold1": fold(fold1), "fold2": fold(fold2)}, [42, 43, 44])
    assert summary["cnn_seed_mean_accuracy"] == pytest.approx({"seed42": 0.7255, "seed43": 0.7305, "seed44": 0.6335})
    assert summary["cnn_mean_seed_range"] == pytest.approx(0.7305 - 0.6335)
    assert summary["cnn_max_seed_range"] == pytest.approx(0.178)
    equal = summarise({"fold1": fold((0.5, 0.5, 0.5))}, [42, 43, 44])
    assert equal["cnn_mean_seed_range"] == 0.0
