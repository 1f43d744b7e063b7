"""Prediction heatmaps: the image with each classified patch tinted by its class, opacity by confidence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe (Okabe-Ito) class colours, in the order of the model's classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (86, 180, 233),
    (240, 228, 66),
    (0, 0, 0),
)
MIN_ALPHA, MAX_ALPHA = 0.15, 0.65
FULL_SIZE_MAX_PIXELS = 30_000_000  # larger images get a heatmap shrunk by a whole factor


def heatmap_scale(height: int, width: int, max_pixels: int = FULL_SIZE_MAX_PIXELS) -> int:
    """Whole factor the heatmap is shrunk by: 1 (same size as the image) unless the image exceeds max_pixels."""
    scale = 1
    while (height // scale) * (width // scale) > max_pixels:
        scale += 1
    return scale


def class_colour(index: int) -> tuple[int, int, int]:
    """The colour of the class at `index` of the model's outputs."""
    return PALETTE[index % len(PALETTE)]


def confidence_alpha(confidence: np.ndarray, class_count: int) -> np.ndarray:
    """Tint opacity: MIN_ALPHA at chance (1/classes), MAX_ALPHA at certainty."""
    chance = 1.0 / class_count
    level = np.clip((np.asarray(confidence, dtype=np.float32) - chance) / (1.0 - chance), 0.0, 1.0)
    return MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * level


def tint_patches(
    canvas: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    class_count: int,
    size: int,
    stride: int,
    scale: int = 1,
) -> None:
    """Blend each classified patch of `canvas` (the image shrunk by `scale`) with its class colour, in place."""
    alphas = confidence_alpha(confidence, class_count)
    for row, col, index, alpha in zip(rows, cols, predicted, alphas, strict=True):
        top, left = row * stride // scale, col * stride // scale
        bottom, right = (row * stride + size) // scale, (col * stride + size) // scale
        region = canvas[top:bottom, left:right]
        colour = np.asarray(class_colour(int(index)), dtype=np.float32)
        region[...] = np.rint(region * (1.0 - alpha) + colour * alpha).astype(np.uint8)


def draw_legend(picture: Image.Image, class_names: Sequence[str], title: str) -> None:
    """A legend box in the top-left corner: one swatch per class, and how to read the tint."""
    font_size = max(10, min(picture.width, picture.height) // 40)
    font = ImageFont.load_default(size=font_size)
    lines = [(name, class_colour(index)) for index, name in enumerate(class_names)]
    notes = ["opacity = confidence", "untinted = not classified", title]
    pad, swatch = font_size // 2, font_size
    line_height = font_size + pad
    draw = ImageDraw.Draw(picture, "RGBA")
    text_width = max(draw.textlength(text, font=font) for text in [name for name, _ in lines] + notes)
    width = int(pad * 3 + swatch + text_width)
    height = int(pad + line_height * (len(lines) + len(notes)))
    draw.rectangle((0, 0, width, height), fill=(255, 255, 255, 215), outline=(0, 0, 0, 255))
    y = pad
    for name, colour in lines:
        draw.rectangle((pad, y, pad + swatch, y + swatch), fill=(*colour, 255), outline=(0, 0, 0, 255))
        draw.text((pad * 2 + swatch, y), name, fill=(0, 0, 0, 255), font=font)
        y += line_height
    for note in notes:
        draw.text((pad, y), note, fill=(60, 60, 60, 255), font=font)
        y += line_height
