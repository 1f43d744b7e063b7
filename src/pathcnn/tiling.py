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
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # Element-wise over three planes: much faster than a reduction over the short last axis.
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    # saturation = (max - min) / max, compared without dividing: (max - min) > s * max
    spread = high.astype(np.float32) - low
    return spread > min_saturation * np.maximum(high, 1).astype(np.float32)


def greyscale_with_content(image: np.ndarray, min_spread: int = 8, share: float = 0.001) -> bool:
    """An image without colour that is not blank: almost no pixel has channels apart by more than min_spread,
    but some are darker than glass (a greyscale scan of tissue, stored as RGB or as a JPEG of one).

    The saturation-based tissue filter sees no tissue in such an image, and lowering its thresholds cannot help.
    """
    pixels = image[:: max(1, image.shape[0] // 512), :: max(1, image.shape[1] // 512)].astype(np.int16)
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    dark = pixels.mean(axis=-1) < 200
    return bool(np.mean(spread > min_spread) <= share and np.mean(dark) > share)


def tissue_fractions(image: np.ndarray, size: int, stride: int, min_saturation: float) -> np.ndarray:
    """Tissue fraction of every grid cell, shape (rows, cols), computed one band of patch rows at a time."""
    grid_rows, grid_cols = grid_shape(image.shape[0], image.shape[1], size, stride)
    fractions = np.zeros((grid_rows, grid_cols), dtype=np.float32)
    starts = np.arange(grid_cols) * stride
    for row in range(grid_rows):
        band = tissue_mask(image[row * stride : row * stride + size], min_saturation)
        # Window sums along columns from a cumulative sum: works for any stride, overlapping or not.
        cumulative = np.concatenate([[0], np.cumsum(band.sum(axis=0, dtype=np.int64))])
        fractions[row] = (cumulative[starts + size] - cumulative[starts]) / float(size * size)
    return fractions


def tile_image(image: np.ndarray, size: int, stride: int, min_tissue_fraction: float, min_saturation: float) -> Tiles:
    """Cut an RGB uint8 image into size x size patches every `stride` pixels, in row-major order."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    grid_rows, grid_cols = grid_shape(image.shape[0], image.shape[1], size, stride)
    rows, cols = np.meshgrid(np.arange(grid_rows), np.arange(grid_cols), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    tissue = tissue_fractions(image, size, stride, min_saturation).ravel()
    kept = tissue >= min_tissue_fraction
    patches = np.empty((int(kept.sum()), size, size, 3), dtype=np.uint8)
    for index, (row, col) in enumerate(zip(rows[kept], cols[kept], strict=True)):
        top, left = row * stride, col * stride
        patches[index] = image[top : top + size, left : left + size]
    return Tiles(patches=patches, rows=rows, cols=cols, tissue_fraction=tissue, kept=kept)
