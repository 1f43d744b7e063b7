"""Cutting an image into a grid of square patches and measuring how much of each is tissue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tiles:
    """The patch grid of one image: kept patches and the record of every grid cell."""

    patches: np.ndarray  # (K, size, size, 3) uint8, the kept patches in row-major grid order
    rows: np.ndarray  # (N,) grid row of every cell
    cols: np.ndarray  # (N,) grid column of every cell
    tissue_fraction: np.ndarray  # (N,) float32
    kept: np.ndarray  # (N,) bool

    @property
    def kept_count(self) -> int:
        """How many patches passed the tissue filter."""
        return int(self.kept.sum())


def grid_shape(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of whole patches that fit in an image."""
    if height < size or width < size:
        return 0, 0
    return (height - size) // stride + 1, (width - size) // stride + 1


def tissue_mask(pixels: np.ndarray, min_saturation: float) -> np.ndarray:
    """True where a pixel is stained tissue: HSV saturation above a threshold.

    White background and glass have near-zero saturation whatever their brightness;
    haematoxylin and eosin are both saturated.
    """
    channels = pixels.astype(np.int16)
    high = channels.max(axis=-1)
    low = channels.min(axis=-1)
    # saturation = (max - min) / max, compared without dividing: (max - min) > s * max
    return (high - low).astype(np.float32) > min_saturation * np.maximum(high, 1).astype(np.float32)


def tile_image(image: np.ndarray, size: int, stride: int, min_tissue_fraction: float, min_saturation: float) -> Tiles:
    """Cut an RGB uint8 image into size x size patches every `stride` pixels, in row-major order."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    grid_rows, grid_cols = grid_shape(image.shape[0], image.shape[1], size, stride)
    rows, cols = np.meshgrid(np.arange(grid_rows), np.arange(grid_cols), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    if stride == size:
        # Non-overlapping grid: a reshape is a view, so no patch is copied until it is kept.
        cropped = image[: grid_rows * size, : grid_cols * size]
        grid = cropped.reshape(grid_rows, size, grid_cols, size, 3).swapaxes(1, 2).reshape(-1, size, size, 3)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size, 3))[::stride, ::stride, 0]
        grid = windows[:grid_rows, :grid_cols].reshape(-1, size, size, 3)
    tissue = np.empty(len(rows), dtype=np.float32)
    for index in range(len(rows)):
        tissue[index] = tissue_mask(grid[index], min_saturation).mean()
    kept = tissue >= min_tissue_fraction
    patches = np.ascontiguousarray(grid[kept]) if len(rows) else np.zeros((0, size, size, 3), np.uint8)
    return Tiles(patches=patches, rows=rows, cols=cols, tissue_fraction=tissue, kept=kept)
