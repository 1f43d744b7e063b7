"""Reinhard stain normalisation: every image's colour statistics mapped onto one fixed H&E target.

Statistics are taken per image over all of its patches (no labels involved), so a new image at
prediction time is normalised exactly like a training image: by its own pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from pathcnn.params import StainNormalization
from pathcnn.patchsets import PatchSet

# CIELAB mean and standard deviation per channel (L, a, b) that every image is mapped to: the rounded
# pooled statistics of the eight seed images' kept patches, so normalised patches still look like H&E.
TARGET_MEANS = np.array([68.0, 19.0, -13.0])
TARGET_STDS = np.array([14.0, 8.0, 7.0])
MINIMUM_STD = 1e-3


def lab_statistics(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of L, a and b over every pixel of uint8 RGB patches (N, H, W, 3)."""
    if patches.ndim != 4 or patches.shape[-1] != 3 or len(patches) == 0:
        raise ValueError(f"patches must be a non-empty array of shape (N, H, W, 3), got shape {patches.shape}")
    lab = rgb2lab(patches).reshape(-1, 3)
    return lab.mean(axis=0), lab.std(axis=0)


def reinhard(
    patches: np.ndarray,
    source: tuple[np.ndarray, np.ndarray] | None = None,
    target: tuple[np.ndarray, np.ndarray] = (TARGET_MEANS, TARGET_STDS),
) -> np.ndarray:
    """Shift and scale each LAB channel from the source statistics (default: the patches' own) to the target."""
    if len(patches) == 0:
        return patches
    source_means, source_stds = source if source is not None else lab_statistics(patches)
    target_means, target_stds = target
    lab = rgb2lab(patches)
    lab = (lab - source_means) / np.maximum(source_stds, MINIMUM_STD) * target_stds + target_means
    rgb = lab2rgb(lab)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def normalize_by_image(patches: np.ndarray, image_ids: np.ndarray, method: StainNormalization) -> np.ndarray:
    """Normalise the patches of each image with that image's own statistics; unchanged when method is none."""
    if method is StainNormalization.none or len(patches) == 0:
        return patches
    image_ids = np.asarray(image_ids)
    result = np.empty(patches.shape, dtype=np.uint8)  # not empty_like: that would read a PatchArray whole
    for image_id in np.unique(image_ids):
        rows = image_ids == image_id
        result[rows] = reinhard(patches[rows])
    return result


def normalize_sets(sets: Mapping[str, PatchSet], method: StainNormalization) -> dict[str, PatchSet]:
    """Normalise train, val and test together, so each image's statistics come from all of its patches."""
    if method is StainNormalization.none:
        return dict(sets)
    parts = [part for part, patch_set in sets.items() if len(patch_set)]
    patches = np.concatenate([sets[part].patches for part in parts])
    image_ids = np.concatenate([sets[part].frame["image_id"].to_numpy() for part in parts])
    normalized = normalize_by_image(patches, image_ids, method)
    result = dict(sets)
    start = 0
    for part in parts:
        end = start + len(sets[part])
        result[part] = PatchSet(patches=normalized[start:end], labels=sets[part].labels, frame=sets[part].frame)
        start = end
    return result
