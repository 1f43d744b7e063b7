"""Train/validation/test splits of patches: random patches, whole images, and image-held-out folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from pathcnn.errors import PathcnnError

TRAIN, VAL, TEST = "train", "val", "test"


@dataclass(frozen=True)
class Fold:
    """One leave-one-image-out fold: the images held out for testing."""

    name: str
    test_images: tuple[str, ...]


def _stratified_pick(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over `indices` choosing about `fraction` of them, stratified by label."""
    counts = np.unique(labels, return_counts=True)[1]
    stratify = labels if len(counts) > 1 and counts.min() >= 2 else None
    _, picked = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    return np.isin(indices, picked)


def split_patches(labels: np.ndarray, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """Random stratified split of patches: an array of 'train' / 'val' / 'test' per patch."""
    labels = np.asarray(labels)
    if len(labels) < 3:
        raise PathcnnError(f"only {len(labels)} patches: a train/validation/test split needs at least 3")
    assignment = np.full(len(labels), TRAIN, dtype=object)
    indices = np.arange(len(labels))
    is_test = _stratified_pick(indices, labels, test_fraction, seed)
    assignment[is_test] = TEST
    _carve_validation(assignment, labels, val_fraction, seed)
    return assignment.astype(str)


def split_images(
    labels: np.ndarray, image_ids: np.ndarray, test_fraction: float, val_fraction: float, seed: int
) -> np.ndarray:
    """Hold out whole images per class (at least one per class) for test; validation from train patches."""
    labels, image_ids = np.asarray(labels), np.asarray(image_ids)
    rng = np.random.default_rng(seed)
    held_out: list[str] = []
    for label in sorted(set(labels.tolist())):
        images = sorted(set(image_ids[labels == label].tolist()))
        if len(images) < 2:
            raise PathcnnError(
                f"split.strategy=image: class {label} has {len(images)} image(s); holding one out needs "
                "at least 2 (add images or use split.strategy=patch)"
            )
        count = min(len(images) - 1, max(1, round(test_fraction * len(images))))
        held_out.extend(rng.choice(images, size=count, replace=False).tolist())
    assignment = np.where(np.isin(image_ids, held_out), TEST, TRAIN).astype(object)
    _carve_validation(assignment, labels, val_fraction, seed)
    return assignment.astype(str)


def fold_split(labels: np.ndarray, image_ids: np.ndarray, fold: Fold, val_fraction: float, seed: int) -> np.ndarray:
    """'test' for every patch of the fold's held-out images; validation carved from the other images' patches."""
    labels, image_ids = np.asarray(labels), np.asarray(image_ids)
    assignment = np.where(np.isin(image_ids, fold.test_images), TEST, TRAIN).astype(object)
    _carve_validation(assignment, labels, val_fraction, seed)
    return assignment.astype(str)


def _carve_validation(assignment: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int) -> None:
    """Move a stratified `val_fraction` of the training patches to validation, in place."""
    train_indices = np.flatnonzero(assignment == TRAIN)
    is_val = _stratified_pick(train_indices, labels[train_indices], val_fraction, seed + 1)
    assignment[train_indices[is_val]] = VAL


def image_folds(labels: np.ndarray, image_ids: np.ndarray) -> list[Fold]:
    """Leave-one-image-out folds: fold k holds out the k-th image (sorted) of every class.

    With two images per class this gives the two swaps (train A1+B1 / test A2+B2, and back).
    Classes with fewer images than the number of folds cycle through theirs.
    """
    labels, image_ids = np.asarray(labels), np.asarray(image_ids)
    per_class = {label: sorted(set(image_ids[labels == label].tolist())) for label in sorted(set(labels.tolist()))}
    short = [f"{label} ({len(images)})" for label, images in per_class.items() if len(images) < 2]
    if short:
        raise PathcnnError(
            f"cannot cross-validate by image: class {', '.join(short)} has fewer than 2 images; "
            "add images of that class to data/raw"
        )
    fold_count = max(len(images) for images in per_class.values())
    folds = []
    for index in range(fold_count):
        held = tuple(images[index % len(images)] for images in per_class.values())
        folds.append(Fold(name=f"fold{index + 1}", test_images=held))
    return folds


def held_out_folds(
    labels: np.ndarray, image_ids: np.ndarray, val_fraction: float, seed: int
) -> list[tuple[Fold, np.ndarray]]:
    """The folds of a held-out tuning objective over the patches it is given (the train split's, never test).

    image_folds on those patches, each with its fold_split assignment: 'test' for the held-out images'
    patches (what the trial is scored on), 'train' and 'val' (early stopping) from the other images.
    """
    return [(fold, fold_split(labels, image_ids, fold, val_fraction, seed)) for fold in image_folds(labels, image_ids)]


def nonsense_classes(labels: np.ndarray, image_ids: np.ndarray) -> dict[str, str]:
    """Each image's nonsense class: class k holds the k-th image (sorted) of every real class.

    With A1, A2, B1, B2 the classes are A1+B1 and A2+B2: each has one image of each tissue, so its label
    follows image identity and not tissue. A real class with more images than the smallest one cycles
    through the nonsense classes. Raises when a class has fewer than 2 images.
    """
    labels, image_ids = np.asarray(labels), np.asarray(image_ids)
    per_class = {label: sorted(set(image_ids[labels == label].tolist())) for label in sorted(set(labels.tolist()))}
    count = min((len(images) for images in per_class.values()), default=0)
    if count < 2 or len(per_class) < 2:
        raise PathcnnError(
            "cannot build nonsense-label classes: every class needs at least 2 images and there must be 2 classes "
            f"(found {', '.join(f'{label} ({len(images)})' for label, images in per_class.items()) or 'none'})"
        )
    members: dict[int, list[str]] = {index: [] for index in range(count)}
    for images in per_class.values():
        for rank, image in enumerate(images):
            members[rank % count].append(image)
    names = {index: "+".join(images) for index, images in members.items()}
    return {image: names[rank % count] for images in per_class.values() for rank, image in enumerate(images)}
