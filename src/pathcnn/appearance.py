"""How tissue looks: colour statistics of patches and the range seen in training, to flag unfamiliar images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FEATURES: tuple[str, ...] = ("red_mean", "green_mean", "blue_mean", "red_std", "green_std", "blue_std")
COLOUR_TOLERANCE_STDS = 2.0  # an image mean this many patch-level standard deviations from training is unusual
FRACTION_MARGIN = 0.2  # tissue-patch fraction this far outside the training images' range is unusual
_CHUNK = 512


def patch_colour_stats(patches: np.ndarray) -> np.ndarray:
    """(N, 6) float32: mean and standard deviation of R, G and B over each uint8 patch."""
    stats = np.zeros((len(patches), len(FEATURES)), dtype=np.float32)
    for start in range(0, len(patches), _CHUNK):  # chunks keep the float copy small
        chunk = patches[start : start + _CHUNK].astype(np.float32)
        stats[start : start + _CHUNK, :3] = chunk.mean(axis=(1, 2))
        stats[start : start + _CHUNK, 3:] = chunk.std(axis=(1, 2))
    return stats


def training_appearance(patches: np.ndarray, tissue_patch_fractions: Sequence[float]) -> dict[str, Any]:
    """The reference an image is compared with: patch colour statistics and per-image tissue-patch fractions."""
    stats = patch_colour_stats(patches)
    fractions = np.asarray(tissue_patch_fractions, dtype=np.float64)
    return {
        "patches": len(patches),
        "images": len(fractions),
        "colour": {
            name: {"mean": float(stats[:, index].mean()), "std": float(stats[:, index].std())}
            for index, name in enumerate(FEATURES)
        }
        if len(patches)
        else {},
        "tissue_patch_fraction": {"min": float(fractions.min()), "max": float(fractions.max())}
        if len(fractions)
        else {},
    }


def image_appearance(patch_stats: np.ndarray, tissue_patch_fraction: float) -> dict[str, float]:
    """One image's summary: mean of each colour statistic over its tissue patches, and its tissue-patch fraction."""
    summary = {"tissue_patch_fraction": float(tissue_patch_fraction)}
    if len(patch_stats):
        summary.update({name: float(patch_stats[:, index].mean()) for index, name in enumerate(FEATURES)})
    return summary


def unfamiliar(image: Mapping[str, float], reference: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons why an image looks unlike the training data (empty when it looks familiar)."""
    reasons = []
    fraction_range = reference.get("tissue_patch_fraction") or {}
    if fraction_range:
        low = max(0.0, fraction_range["min"] - FRACTION_MARGIN)
        high = min(1.0, fraction_range["max"] + FRACTION_MARGIN)
        value = image["tissue_patch_fraction"]
        if not low <= value <= high:
            reasons.append(
                f"{value:.0%} of patches are tissue, training images had "
                f"{fraction_range['min']:.0%}-{fraction_range['max']:.0%} (different magnification or cropping?)"
            )
    for name, expected in (reference.get("colour") or {}).items():
        if name not in image:
            continue
        spread = COLOUR_TOLERANCE_STDS * max(expected["std"], 1.0)
        if abs(image[name] - expected["mean"]) > spread:
            label = name.replace("_", " ")
            reasons.append(
                f"{label} of tissue patches is {image[name]:.0f}, training {expected['mean']:.0f} +/- {spread:.0f} "
                "(different stain, scanner or lab?)"
            )
    return reasons


def training_reference(train_patches: np.ndarray, manifest: Any, image_ids: Sequence[str]) -> dict[str, Any]:
    """training_appearance of the train patches, with tissue-patch fractions of `image_ids` from the manifest."""
    cells = manifest[manifest["image_id"].isin(set(image_ids))]
    fractions = cells.groupby("image_id")["kept"].mean().tolist()
    return training_appearance(train_patches, fractions)
