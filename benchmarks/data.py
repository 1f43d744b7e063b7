"""Benchmark inputs made from the eight seed images: a large mosaic and distinct copies at 1x, 4x, 16x."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pathcnn.images import ImageEntry, load_rgb, parse_image_name

JPEG_QUALITY = 95  # the seed images are high-quality JPEGs too


def seed_images(seed_dir: Path, crop: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(image_id, pixels) of every seed image, optionally centre-cropped to crop x crop."""
    images = []
    # Only the JPEGs: ../shared/data/he-seed also holds README.md and SHA256SUMS, which list_images rejects.
    for path in sorted(seed_dir.glob("*.jpg")):
        entry = ImageEntry(path, *parse_image_name(path))
        pixels = load_rgb(entry.path)
        if crop is not None:
            top, left = (pixels.shape[0] - crop) // 2, (pixels.shape[1] - crop) // 2
            pixels = pixels[top : top + crop, left : left + crop]
        images.append((entry.image_id, pixels))
    return images


def variant(pixels: np.ndarray, number: int) -> np.ndarray:
    """The number-th distinct copy of an image: the 8 flips/rotations, then the same on a half-patch shift."""
    turned = np.rot90(pixels, number % 4)
    if number % 8 >= 4:
        turned = turned[:, ::-1]
    if number % 16 >= 8:
        turned = turned[50:, 50:]
    return np.ascontiguousarray(turned)


def write_scaled_copies(seed_dir: Path, target: Path, factor: int, crop: int | None = None) -> Path:
    """factor distinct copies of every seed image as JPEGs named <id>-x<n>.jpg (class letters kept)."""
    target.mkdir(parents=True, exist_ok=True)
    for image_id, pixels in seed_images(seed_dir, crop):
        for number in range(factor):
            Image.fromarray(variant(pixels, number)).save(target / f"{image_id}-x{number}.jpg", quality=JPEG_QUALITY)
    return target


def write_mosaic(seed_dir: Path, path: Path, side: int) -> tuple[int, int]:
    """A side x side JPEG tiled from flipped/rotated cells of the seed images; returns (height, width)."""
    images = [pixels for _, pixels in seed_images(seed_dir)]
    cell = min(min(pixels.shape[:2]) for pixels in images)  # square cells survive rotation
    count = -(-side // cell)
    rows = []
    for row in range(count):
        cells = []
        for column in range(count):
            source = images[(row * count + column) % len(images)]
            top, left = (source.shape[0] - cell) // 2, (source.shape[1] - cell) // 2
            cells.append(variant(source[top : top + cell, left : left + cell], (row + column) % 8))
        rows.append(np.concatenate(cells, axis=1)[:, :side])
    mosaic = np.concatenate(rows, axis=0)[:side]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mosaic).save(path, quality=JPEG_QUALITY)
    return mosaic.shape[0], mosaic.shape[1]
