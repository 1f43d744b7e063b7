"""Stage `patches`: cut every image in data/raw into patches, drop background, write arrays and a manifest."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from pathcnn.artifacts import atomic_directory, atomic_path, save_array, write_csv, write_json
from pathcnn.console import progress, say
from pathcnn.errors import ImageError, PathcnnError
from pathcnn.images import ImageEntry, list_images, load_rgb
from pathcnn.params import PatchesParams, check_models_have_images, load_params
from pathcnn.stages.arguments import add_params_argument
from pathcnn.tiling import Tiles, greyscale_with_content, tile_image

MANIFEST = "manifest.csv"
SKIPPED = "skipped.json"
GRID_MAX_SIDE = 1200
KEPT_COLOUR, DROPPED_COLOUR = (0, 200, 0), (230, 0, 0)


@dataclass(frozen=True)
class ImageTiles:
    """The tiles of one image with where they came from."""

    entry: ImageEntry
    tiles: Tiles


def tile_entry(entry: ImageEntry, params: PatchesParams) -> tuple[ImageTiles, np.ndarray]:
    """Load and tile one image; raise ImageError if it yields no patch."""
    image = load_rgb(entry.path, max_pixels=params.max_image_pixels)
    tiles = tile_image(
        image, params.patch_size, params.stride, params.min_tissue_fraction, params.tissue_min_saturation
    )
    if len(tiles.kept) == 0:
        raise ImageError(
            f"{entry.path}: image is {image.shape[1]}x{image.shape[0]} px, smaller than one "
            f"{params.patch_size}px patch; remove it or lower patches.patch_size"
        )
    if tiles.kept_count == 0 and greyscale_with_content(image):
        raise ImageError(
            f"{entry.path}: the image has no colour (greyscale); tissue is found by the colour of the H&E stain, "
            "so give the colour scan of the slide, or remove the image"
        )
    if tiles.kept_count == 0:
        raise ImageError(
            f"{entry.path}: all {len(tiles.kept)} patches are background (tissue fraction below "
            f"{params.min_tissue_fraction}); remove the image or lower patches.min_tissue_fraction"
        )
    return ImageTiles(entry, tiles), image


def manifest_rows(item: ImageTiles) -> pd.DataFrame:
    """One manifest row per grid cell: kept cells carry their index in the image's array, dropped ones -1."""
    tiles = item.tiles
    index = np.full(len(tiles.kept), -1, dtype=np.int64)
    index[tiles.kept] = np.arange(tiles.kept_count)
    image_id = item.entry.image_id
    return pd.DataFrame(
        {
            "patch_id": [f"{image_id}_r{row:03d}_c{col:03d}" for row, col in zip(tiles.rows, tiles.cols, strict=True)],
            "image_id": image_id,
            "label": item.entry.label,
            "row": tiles.rows,
            "col": tiles.cols,
            "tissue_fraction": np.round(tiles.tissue_fraction, 4),
            "kept": tiles.kept,
            "index": index,
        }
    )


def draw_grid(image: np.ndarray, tiles: Tiles, size: int, stride: int) -> Image.Image:
    """The image, scaled down, with every grid cell outlined: green kept, red dropped."""
    scale = min(1.0, GRID_MAX_SIDE / max(image.shape[:2]))
    # A strided view first, so a whole-slide-sized image is never copied whole for a 1200 px preview.
    step = max(1, int(1 / scale) // 2)
    picture = Image.fromarray(np.ascontiguousarray(image[::step, ::step]))
    if scale < 1.0:
        picture = picture.resize((round(image.shape[1] * scale), round(image.shape[0] * scale)))
    draw = ImageDraw.Draw(picture)
    for row, col, kept in zip(tiles.rows, tiles.cols, tiles.kept, strict=True):
        top, left = row * stride * scale, col * stride * scale
        box = (left, top, left + size * scale - 1, top + size * scale - 1)
        draw.rectangle(box, outline=KEPT_COLOUR if kept else DROPPED_COLOUR, width=2)
    return picture


def run(raw_dir: Path, out_dir: Path, grids_dir: Path, params_path: Path) -> pd.DataFrame:
    """Tile every image; write <image>.npy, manifest.csv and skipped.json into out_dir, grids into grids_dir."""
    params = load_params(params_path)
    entries = list_images(raw_dir)
    check_models_have_images(params, {entry.label for entry in entries})
    settings = params.patches
    frames: list[pd.DataFrame] = []
    skipped: list[dict[str, str]] = []
    with atomic_directory(out_dir) as staging, atomic_directory(grids_dir) as grid_staging:
        for entry in progress(entries, "tiling", total=len(entries)):
            try:
                item, image = tile_entry(entry, settings)
            except ImageError as error:
                if not settings.skip_bad_images:
                    raise
                skipped.append({"file": entry.path.name, "reason": str(error)})
                say(f"skipped {error}")
                continue
            save_array(staging / f"{entry.image_id}.npy", item.tiles.patches)
            with atomic_path(grid_staging / f"{entry.image_id}.png") as grid_file:
                draw_grid(image, item.tiles, settings.patch_size, settings.stride).save(grid_file, format="PNG")
            frames.append(manifest_rows(item))
        if not frames:
            raise PathcnnError(f"{raw_dir}: no usable image (all {len(entries)} skipped); see messages above")
        manifest = pd.concat(frames, ignore_index=True)
        if settings.skip_bad_images:
            check_models_have_images(params, set(manifest["label"]))
        write_csv(staging / MANIFEST, manifest)
        write_json(staging / SKIPPED, skipped)
    kept = manifest[manifest["kept"]]
    say(
        f"patches: {len(kept)} kept of {len(manifest)} from {manifest['image_id'].nunique()} images"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--raw", type=Path, required=True, help="folder of input images (data/raw)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for arrays and manifest (data/patches)")
    parser.add_argument("--grids", type=Path, required=True, help="tiling previews (reports/figures/tiling)")
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.raw, args.out, args.grids, args.params)
