"""Prediction heatmaps: the image with each classified patch tinted by its class, opacity by confidence.

The tint stays translucent so the tissue shows through; the strips the patch grid does not reach are
hatched (not analysed), and the legend sits in a panel beside the image, never over tissue.
"""

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
MIN_ALPHA, MAX_ALPHA = 0.10, 0.40  # at certainty, 60 % of each pixel is still the tissue
UNFAMILIAR_COLOUR, UNFAMILIAR_ALPHA = (170, 0, 170), 0.45  # patches unlike the training images
HATCH_COLOUR, HATCH_ALPHA, HATCH_SPACING = (90, 90, 90), 0.55, 8  # margins outside the patch grid
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
    unfamiliar: np.ndarray | None = None,
) -> None:
    """Blend each classified patch of `canvas` (the image shrunk by `scale`) with its class colour, in place.

    Patches marked unfamiliar get UNFAMILIAR_COLOUR instead (their class stays in the patch CSV).
    """
    alphas = confidence_alpha(confidence, class_count)
    strange = np.zeros(len(rows), bool) if unfamiliar is None else np.asarray(unfamiliar, bool)
    for row, col, index, alpha, odd in zip(rows, cols, predicted, alphas, strange, strict=True):
        top, left = row * stride // scale, col * stride // scale
        bottom, right = (row * stride + size) // scale, (col * stride + size) // scale
        region = canvas[top:bottom, left:right]
        colour = np.asarray(UNFAMILIAR_COLOUR if odd else class_colour(int(index)), dtype=np.float32)
        alpha = UNFAMILIAR_ALPHA if odd else alpha
        region[...] = np.rint(region * (1.0 - alpha) + colour * alpha).astype(np.uint8)


def grid_extent(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """(height, width) of the part of an image the patch grid covers: the rest is never analysed."""
    rows = (height - size) // stride + 1 if height >= size else 0
    cols = (width - size) // stride + 1 if width >= size else 0
    return (rows - 1) * stride + size if rows else 0, (cols - 1) * stride + size if cols else 0


def hatch_margins(canvas: np.ndarray, covered_height: int, covered_width: int) -> None:
    """Diagonal grey hatching, in place, over the canvas outside the top-left covered_height x covered_width."""
    height, width = canvas.shape[:2]
    spacing = max(4, HATCH_SPACING * max(height, width) // 2000)
    rows, cols = np.ogrid[:height, :width]
    stripes = ((rows + cols) // max(1, spacing // 2)) % 2 == 0
    outside = (rows >= covered_height) | (cols >= covered_width)
    mask = stripes & outside
    colour = np.asarray(HATCH_COLOUR, dtype=np.float32)
    canvas[mask] = np.rint(canvas[mask] * (1.0 - HATCH_ALPHA) + colour * HATCH_ALPHA).astype(np.uint8)


def with_legend(picture: Image.Image, class_names: Sequence[str], title: str, familiarity: bool = False) -> Image.Image:
    """The picture with a white legend panel on its right: one swatch per class, and how to read the tint."""
    font_size = max(12, min(picture.width, picture.height) // 45)
    font = ImageFont.load_default(size=font_size)
    lines = [(name, class_colour(index)) for index, name in enumerate(class_names)]
    if familiarity:
        lines.append(("unfamiliar: unlike the training images (class in the CSV)", UNFAMILIAR_COLOUR))
    notes = [
        f"class tint opacity = confidence ({MIN_ALPHA:.0%} at chance, {MAX_ALPHA:.0%} at certainty)",
        "untinted = patch without enough tissue, not classified",
        "hatched = outside the patch grid, not analysed",
        title,
    ]
    pad, swatch = font_size // 2, font_size
    line_height = font_size + pad
    measure = ImageDraw.Draw(picture)
    text_width = max(measure.textlength(text, font=font) for text in [name for name, _ in lines] + notes)
    panel_width = int(pad * 4 + swatch + text_width)
    panel_height = int(pad * 2 + line_height * (len(lines) + len(notes)))
    framed = Image.new("RGB", (picture.width + panel_width, max(picture.height, panel_height)), (255, 255, 255))
    framed.paste(picture, (0, 0))
    draw = ImageDraw.Draw(framed)
    x, y = picture.width + pad * 2, pad
    for name, colour in lines:
        draw.rectangle((x, y, x + swatch, y + swatch), fill=colour, outline=(0, 0, 0))
        draw.text((x + pad + swatch, y), name, fill=(0, 0, 0), font=font)
        y += line_height
    for note in notes:
        draw.text((x, y), note, fill=(60, 60, 60), font=font)
        y += line_height
    return framed
