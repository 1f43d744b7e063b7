"""Tiling: grid geometry, pixel fidelity, order, and the tissue filter."""

from __future__ import annotations

import numpy as np
import pytest

from pathcnn.tiling import grid_shape, tile_image, tissue_mask


def test_patch_count_is_whole_patches_per_axis() -> None:
    image = np.random.default_rng(0).integers(0, 256, (350, 520, 3), dtype=np.uint8)
    tiles = tile_image(image, 100, 100, 0.0, 0.0)
    assert len(tiles.kept) == (350 // 100) * (520 // 100) == 15
    assert tiles.patches.shape == (15, 100, 100, 3)


def test_patches_equal_source_pixels_in_row_major_order() -> None:
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    tiles = tile_image(image, 100, 100, 0.0, 0.0)
    for index, (row, col) in enumerate(zip(tiles.rows, tiles.cols, strict=True)):
        expected = image[row * 100 : (row + 1) * 100, col * 100 : (col + 1) * 100]
        np.testing.assert_array_equal(tiles.patches[index], expected)
    assert list(tiles.rows[:5]) == [0, 0, 0, 0, 1]
    assert list(tiles.cols[:5]) == [0, 1, 2, 3, 0]


def test_tiling_is_deterministic_and_strided() -> None:
    image = np.random.default_rng(2).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    first = tile_image(image, 100, 50, 0.0, 0.0)
    second = tile_image(image, 100, 50, 0.0, 0.0)
    assert grid_shape(250, 250, 100, 50) == (4, 4)
    np.testing.assert_array_equal(first.patches, second.patches)
    np.testing.assert_array_equal(first.patches[1], image[0:100, 50:150])


def test_image_smaller_than_a_patch_gives_no_cells() -> None:
    tiles = tile_image(np.zeros((99, 500, 3), np.uint8), 100, 100, 0.5, 0.07)
    assert len(tiles.kept) == 0 and tiles.kept_count == 0


def test_tissue_filter_drops_white_background_and_keeps_stain() -> None:
    image = np.full((100, 300, 3), 245, dtype=np.uint8)  # glass
    image[:, 100:200] = (200, 110, 180)  # eosin/haematoxylin-like pink-purple
    image[:, 200:250] = (120, 60, 140)  # half a patch of tissue
    tiles = tile_image(image, 100, 100, 0.6, 0.07)
    np.testing.assert_allclose(tiles.tissue_fraction, [0.0, 1.0, 0.5])
    assert list(tiles.kept) == [False, True, False]
    np.testing.assert_array_equal(tiles.patches[0], image[:, 100:200])


def test_tissue_mask_ignores_brightness_of_grey() -> None:
    pixels = np.array([[[0, 0, 0], [128, 128, 128], [255, 255, 255], [200, 100, 150]]], dtype=np.uint8)
    assert tissue_mask(pixels, 0.07).tolist() == [[False, False, False, True]]


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        tile_image(np.zeros((100, 100), np.uint8), 100, 100, 0.5, 0.07)
