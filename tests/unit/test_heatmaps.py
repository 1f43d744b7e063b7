"""Heatmap drawing, banded tiling, the champion rule and the unfamiliar-image check, on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pathcnn.appearance import image_appearance, patch_colour_stats, training_appearance, unfamiliar
from pathcnn.heatmaps import (
    MAX_ALPHA,
    class_colour,
    confidence_alpha,
    grid_extent,
    hatch_margins,
    heatmap_scale,
    tint_patches,
    with_legend,
)
from pathcnn.params import PatchesParams
from pathcnn.predict import band_height, tile_bands
from pathcnn.registry import should_promote
from pathcnn.tiling import tile_image


def tissue_image(height: int, width: int, seed: int = 0, holes: int = 6) -> np.ndarray:
    """Pink 'tissue' with white holes, so some patches are dropped."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = (200, 120, 180)
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    for _ in range(holes):
        top, left = rng.integers(0, height - 40), rng.integers(0, width - 40)
        image[top : top + 60, left : left + 70] = 250
    return image


@pytest.mark.parametrize(("stride", "rows_per_band"), [(20, 1), (20, 3), (10, 2), (20, 100)])
def test_bands_tile_exactly_like_the_whole_image(stride: int, rows_per_band: int) -> None:
    image = tissue_image(137, 161)
    settings = PatchesParams(patch_size=20, stride=stride, min_tissue_fraction=0.5, tissue_min_saturation=0.07)
    whole = tile_image(image, 20, stride, 0.5, 0.07)
    bands = list(tile_bands(image, settings, rows_per_band))
    assert np.array_equal(np.concatenate([tiles.rows + first for first, tiles in bands]), whole.rows)
    assert np.array_equal(np.concatenate([tiles.cols for _, tiles in bands]), whole.cols)
    assert np.array_equal(np.concatenate([tiles.kept for _, tiles in bands]), whole.kept)
    assert np.array_equal(np.concatenate([tiles.patches for _, tiles in bands]), whole.patches)
    assert 0 < whole.kept_count < len(whole.kept)


def test_band_height_covers_a_few_batches() -> None:
    assert band_height(100, 256) == 10
    assert band_height(10_000, 8) == 1
    assert band_height(0, 8) == 32


def test_heatmap_scale_keeps_normal_images_full_size() -> None:
    assert heatmap_scale(898, 1292) == 1
    assert heatmap_scale(10_000, 10_000) == 2
    assert heatmap_scale(100, 100, max_pixels=2_500) == 2


def test_tint_blends_class_colour_by_confidence() -> None:
    canvas = np.full((40, 60, 3), 255, dtype=np.uint8)
    tint_patches(canvas, np.array([0, 1]), np.array([0, 2]), np.array([0, 1]), np.array([1.0, 0.5]), 2, 20, 20)
    certain = np.rint(255 * 0.60 + np.array(class_colour(0)) * 0.40)
    assert np.array_equal(canvas[5, 5], certain)
    assert np.array_equal(canvas[25, 45], np.rint(255 * 0.90 + np.array(class_colour(1)) * 0.10))
    assert np.array_equal(canvas[5, 25], [255, 255, 255])  # not classified: untouched
    assert confidence_alpha(np.array([0.2]), 2)[0] == pytest.approx(0.10)  # below chance stays at the minimum
    assert MAX_ALPHA <= 0.4  # even a certain patch keeps most of the tissue visible


def test_tint_on_a_shrunk_canvas_lands_on_the_same_place() -> None:
    canvas = np.full((20, 30, 3), 255, dtype=np.uint8)
    tint_patches(canvas, np.array([1]), np.array([2]), np.array([1]), np.array([1.0]), 2, 20, 20, scale=2)
    changed = np.argwhere((canvas != 255).any(axis=-1))
    assert changed.min(axis=0).tolist() == [10, 20] and changed.max(axis=0).tolist() == [19, 29]


def test_legend_sits_beside_the_image_not_on_it() -> None:
    picture = Image.new("RGB", (300, 200), (200, 120, 180))
    framed = with_legend(picture, ("A", "B"), "model test")
    pixels = np.asarray(framed)
    assert framed.width > 300 and framed.height >= 200
    assert (pixels[:200, :300] == (200, 120, 180)).all()  # the image itself is untouched
    assert (pixels[:, 300:] != 255).any()  # the legend is drawn in the panel


def test_grid_extent_and_hatching_mark_only_what_the_grid_misses() -> None:
    assert grid_extent(250, 330, 100, 100) == (200, 300)
    assert grid_extent(250, 330, 100, 50) == (250, 300)
    assert grid_extent(80, 330, 100, 100) == (0, 300)
    canvas = np.full((250, 330, 3), 255, dtype=np.uint8)
    hatch_margins(canvas, 200, 300)
    changed = (canvas != 255).any(axis=-1)
    assert not changed[:200, :300].any()  # the analysed part is untouched
    assert changed[200:, :].mean() > 0.3 and changed[:, 300:].mean() > 0.3  # both margins are hatched
    assert not changed[200:, :].all()  # stripes, so the tissue under them still shows


@pytest.mark.parametrize(
    ("test", "baseline", "champion", "promoted"),
    [
        (0.9, 0.6, None, True),
        (0.6, 0.6, None, False),  # equal to the majority baseline is not better
        (0.5, 0.6, None, False),
        (0.9, 0.6, 0.8, True),
        (0.8, 0.6, 0.8, False),  # a tie keeps the champion
        (0.7, 0.6, 0.8, False),
        (0.95, 0.97, 0.8, False),  # beats the champion, not its own baseline
    ],
)
def test_champion_rule(test: float, baseline: float, champion: float | None, promoted: bool) -> None:
    decided, reason = should_promote(test, baseline, champion)
    assert decided is promoted and f"{test:.3f}" in reason


def test_unfamiliar_colours_and_tissue_fraction_are_flagged() -> None:
    patches = np.stack([tissue_image(20, 20, seed, holes=0) for seed in range(12)])
    reference = training_appearance(patches, [0.6, 0.7, 0.8])
    familiar = image_appearance(patch_colour_stats(patches[:4]), 0.75)
    assert unfamiliar(familiar, reference) == []
    blue = patches[:4].copy()
    blue[..., 2] = 40
    reasons = unfamiliar(image_appearance(patch_colour_stats(blue), 0.1), reference)
    assert any("blue mean" in reason for reason in reasons)
    assert any("10% of patches are tissue" in reason for reason in reasons)
