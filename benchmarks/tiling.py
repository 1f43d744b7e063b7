"""Benchmark 1: one large image to kept patches (decode, tile, tissue filter, write) against decode alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.process import current_rss_mb, stopwatch


def decode(image: str, max_pixels: int) -> dict[str, Any]:
    """Decode the image only (the project's loader), nothing else."""
    from pathcnn.images import load_rgb
    from pathcnn.stages import patches  # noqa: F401  same imports as tile(), so baselines match

    baseline = current_rss_mb()
    times: dict[str, float] = {}
    with stopwatch(times, "decode"):
        pixels = load_rgb(Path(image), max_pixels=max_pixels)
    return {
        "seconds": times["decode"],
        "height": pixels.shape[0],
        "width": pixels.shape[1],
        "decoded_mb": pixels.nbytes / 2**20,
        "import_rss_mb": baseline,
    }


def tile(image: str, out_dir: str, params_path: str) -> dict[str, Any]:
    """What the patches stage does to one image: decode + tile + filter, write the .npy, manifest and grid PNG."""
    from pathcnn.artifacts import atomic_path, save_array, write_csv
    from pathcnn.images import list_images
    from pathcnn.params import load_params
    from pathcnn.stages.patches import draw_grid, manifest_rows, tile_entry

    settings = load_params(Path(params_path)).patches
    (entry,) = list_images(Path(image).parent)
    out = Path(out_dir)
    baseline = current_rss_mb()
    times: dict[str, float] = {}
    with stopwatch(times, "total"):
        with stopwatch(times, "decode_and_tile"):
            item, pixels = tile_entry(entry, settings)
        with stopwatch(times, "write"):
            save_array(out / f"{entry.image_id}.npy", item.tiles.patches)
            write_csv(out / "manifest.csv", manifest_rows(item))
        with stopwatch(times, "grid"):
            with atomic_path(out / f"{entry.image_id}.png") as grid_file:
                draw_grid(pixels, item.tiles, settings.patch_size, settings.stride).save(grid_file, format="PNG")
    return {
        "seconds": times["total"],
        "decode_and_tile_seconds": times["decode_and_tile"],
        "write_seconds": times["write"],
        "grid_seconds": times["grid"],
        "cells": len(item.tiles.kept),
        "kept": item.tiles.kept_count,
        "kept_mb": item.tiles.patches.nbytes / 2**20,
        "import_rss_mb": baseline,
    }


def pillow_decode(image: str, max_pixels: int) -> dict[str, Any]:
    """Pillow's JPEG decode alone (open, load, one numpy view): the floor under the project's loader."""
    import numpy as np
    from PIL import Image

    from pathcnn.stages import patches  # noqa: F401  same imports as tile(), so baselines match

    Image.MAX_IMAGE_PIXELS = max_pixels
    times: dict[str, float] = {}
    with stopwatch(times, "decode"):
        with Image.open(image) as opened:
            opened.load()
            pixels = np.asarray(opened)
    return {"seconds": times["decode"], "decoded_mb": pixels.nbytes / 2**20}


def bare_write(out_dir: str, megabytes: float) -> dict[str, Any]:
    """Write that many MiB of bytes to one new file in out_dir with a single call: the disk's floor for the .npy."""
    import numpy as np

    payload = np.ones(int(megabytes * 2**20), dtype=np.uint8)
    target = Path(out_dir) / "bare-write.bin"
    times: dict[str, float] = {}
    with stopwatch(times, "write"):
        with open(target, "wb") as handle:
            handle.write(memoryview(payload))
    target.unlink()
    return {"seconds": times["write"]}
