"""Peak memory and time of `pathcnn predict` on a large image (default 10,000 x 10,000 px).

The image is a mosaic of the seed images (mirrored tiles, so the tissue is real H&E). Predict runs as a
child process; its peak resident set size comes from getrusage(RUSAGE_CHILDREN).

    python benchmarks/predict_memory.py --model model1 [--side 10000] [--work /tmp/pathcnn-bench]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SEED_DIRS = (REPO / "data" / "raw", REPO.parent / "shared" / "data" / "he-seed")


def mosaic(side: int) -> np.ndarray:
    """A side x side RGB image tiled from the seed images, alternately mirrored so seams stay tissue-like."""
    folder = next(folder for folder in SEED_DIRS if len(list(folder.glob("*.jpg"))) >= 8)
    tiles = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            tiles.append(np.asarray(image.convert("RGB").crop((0, 0, 1100, 680))))
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    height, width = tiles[0].shape[:2]
    for row, top in enumerate(range(0, side, height)):
        for col, left in enumerate(range(0, side, width)):
            tile = tiles[(row * 3 + col) % len(tiles)]
            tile = tile[:, ::-1] if (row + col) % 2 else tile
            canvas[top : top + height, left : left + width] = tile[: side - top, : side - left]
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model1")
    parser.add_argument("--side", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pathcnn-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    image_path = args.work / f"mosaic_{args.side}.jpg"
    if not image_path.exists():
        Image.fromarray(mosaic(args.side)).save(image_path, quality=90)
    command = [sys.executable, "-m", "pathcnn.cli", "predict", str(image_path), "--model", args.model]
    command += ["--out", str(args.work / "predictions"), "--batch-size", str(args.batch_size)]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # ru_maxrss is KiB on Linux
    image_mib = args.side * args.side * 3 / 2**20
    print(
        f"predict {args.side}x{args.side} px ({image_path.stat().st_size / 2**20:.0f} MiB JPEG, "
        f"{image_mib:.0f} MiB decoded): peak RSS {peak_mib:.0f} MiB, {seconds:.0f} s, batch size {args.batch_size}"
    )


if __name__ == "__main__":
    main()
