"""Benchmark 3: the patches and split stages and one train epoch per model, on a given copy of the seed data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.process import current_rss_mb, stopwatch


def run(raw_dir: str, work_dir: str, params_path: str) -> dict[str, Any]:
    """Wall time per step and, through the process's peak RSS, the memory of the whole run."""
    from pathcnn.params import load_params
    from pathcnn.patchsets import read_split, split_sets
    from pathcnn.seeding import seed_everything
    from pathcnn.stages import patches, split
    from pathcnn.training import fit_model

    params = load_params(Path(params_path))
    work = Path(work_dir)
    baseline = current_rss_mb()
    times: dict[str, float] = {}
    with stopwatch(times, "total"):
        with stopwatch(times, "patches"):
            manifest = patches.run(Path(raw_dir), work / "patches", work / "grids", Path(params_path))
        with stopwatch(times, "split"):
            split.run(work / "patches", work / "splits", Path(params_path))
        trained = 0
        with stopwatch(times, "train"):
            for name, spec in params.models.items():
                seed_everything(params.base.seed)
                sets = split_sets(work / "patches", read_split(work / "splits" / f"{name}.csv"), spec.classes)
                fit_model(sets["train"], sets["val"], len(spec.classes), params.train, params.base.seed, max_epochs=1)
                trained += len(sets["train"])
    return {
        "images": int(manifest["image_id"].nunique()),
        "patches": int(manifest["kept"].sum()),
        "trained_patches": trained,
        "seconds": times["total"],
        "patches_seconds": times["patches"],
        "split_seconds": times["split"],
        "train_seconds": times["train"],
        "import_rss_mb": baseline,
    }
