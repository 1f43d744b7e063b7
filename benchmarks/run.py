"""Run the benchmarks of issue 7, print a table and write every figure to results/bench.json.

Each measurement runs in a fresh Python process (benchmarks/process.py), so its peak RSS is its own.
`--quick` shrinks every input so the whole run takes a minute or two (tests/integration/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from benchmarks.data import write_mosaic, write_scaled_copies  # noqa: E402
from benchmarks.process import measure  # noqa: E402

BENCHMARKS = ("tiling", "input", "compute", "scale", "e2e")
MOSAIC_MAX_PIXELS = 200_000_000


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run."""

    mosaic_side: int  # the tiling image is mosaic_side x mosaic_side px
    repeats: int  # tiling runs per measurement; the fastest counts (least disturbed by other work)
    input_crop: int | None  # centre crop of the seed images for the input benchmark (None: whole images)
    input_epochs: int
    scale_factors: tuple[int, ...]
    scale_crop: int | None
    repro_crop: int | None  # None: the real seed images and params; else crops and shrunk params
    compute_steps: int  # training steps per timed model-only epoch
    predict_patches: int


FULL = Settings(10_000, 3, None, 3, (1, 4, 16), None, None, 40, 4096)
QUICK = Settings(2_000, 1, 500, 2, (1, 2), 300, 300, 4, 256)


@dataclass(frozen=True)
class Figure:
    """One reported number."""

    key: str
    value: float | int
    unit: str
    target: str = ""
    met: bool | None = None


def tiling_figures(settings: Settings, work: Path, seed_dir: Path, params_path: Path) -> list[Figure]:
    """Benchmark 1: decode only vs the patches stage's whole path on one mosaic image."""
    image = work / "mosaic" / "M1.jpg"
    height, width = write_mosaic(seed_dir, image, settings.mosaic_side)
    megapixels = height * width / 1e6

    def fastest(task: str, config: dict[str, Any]) -> dict[str, Any]:
        runs = [measure(task, config) for _ in range(settings.repeats)]
        best = min(runs, key=lambda run: run["seconds"])
        return {**best, "peak_rss_mb": max(run["peak_rss_mb"] for run in runs)}

    limits = {"image": str(image), "max_pixels": MOSAIC_MAX_PIXELS}
    decode = fastest("tiling.decode", limits)
    pillow = fastest("tiling.pillow_decode", limits)
    full = fastest(
        "tiling.tile", {"image": str(image), "out_dir": str(work / "tiles"), "params_path": str(params_path)}
    )
    ratio = full["seconds"] / decode["seconds"]
    # The kept patches are about as many bytes as the decoded image; writing them costs what this disk costs.
    write = fastest("tiling.bare_write", {"out_dir": str(work / "tiles"), "megabytes": full["kept_mb"]})
    floor = decode["seconds"] + write["seconds"]
    memory = full["peak_rss_mb"] / decode["decoded_mb"]
    return [
        Figure("tiling.image_megapixels", megapixels, "MP", f"{width}x{height} px JPEG"),
        Figure("tiling.decoded_mb", decode["decoded_mb"], "MiB"),
        Figure("tiling.pillow_decode_seconds", pillow["seconds"], "s"),
        Figure("tiling.decode_seconds", decode["seconds"], "s"),
        Figure("tiling.decode_megapixels_per_second", megapixels / decode["seconds"], "MP/s"),
        Figure("tiling.total_seconds", full["seconds"], "s"),
        Figure("tiling.decode_and_tile_seconds", full["decode_and_tile_seconds"], "s"),
        Figure("tiling.write_seconds", full["write_seconds"], "s"),
        Figure("tiling.grid_seconds", full["grid_seconds"], "s"),
        Figure("tiling.megapixels_per_second", megapixels / full["seconds"], "MP/s"),
        Figure("tiling.kept_patches", full["kept"], "patches"),
        Figure("tiling.ratio_to_decode", ratio, "x", "<= 1.5", ratio <= 1.5),
        Figure("tiling.kept_mb", full["kept_mb"], "MiB", "bytes of the .npy"),
        Figure("tiling.bare_write_seconds", write["seconds"], "s", "one write() of as many bytes"),
        Figure("tiling.ratio_to_decode_and_bare_write", full["seconds"] / floor, "x", "the tiler's own overhead"),
        Figure("tiling.import_rss_mb", full["import_rss_mb"], "MiB"),
        Figure("tiling.decode_peak_rss_mb", decode["peak_rss_mb"], "MiB"),
        Figure("tiling.peak_rss_mb", full["peak_rss_mb"], "MiB"),
        Figure("tiling.peak_rss_to_decoded", memory, "x", "< 3", memory < 3),
    ]


def input_figures(settings: Settings, work: Path, seed_dir: Path, params_path: Path) -> list[Figure]:
    """Benchmark 2: one epoch from the stored arrays vs from JPEG files the notebook's way."""
    from pathcnn.stages import patches

    raw = write_scaled_copies(seed_dir, work / "input" / "raw", 1, settings.input_crop)
    patches.run(raw, work / "input" / "patches", work / "input" / "grids", params_path)
    config = {
        "patches_dir": str(work / "input" / "patches"),
        "work_dir": str(work / "input"),
        "epochs": settings.input_epochs,
        "seed": 42,
    }
    result = measure("input_pipeline.run", config)
    speedup = result["files_epoch_seconds"] / result["arrays_epoch_seconds"]
    ceiling = result["files_epoch_seconds"] / result["compute_epoch_seconds"]
    overhead = result["step_with_input_ms"] / result["step_without_input_ms"]
    input_speedup = result["arrays_flips_input_only_patches_per_second"] / result["files_input_only_patches_per_second"]
    return [
        Figure("input.patches", result["patches"], "patches", f"{result['steps_per_epoch']} steps of 32"),
        Figure("input.arrays_epoch_seconds", result["arrays_epoch_seconds"], "s", "stored arrays, augmented"),
        Figure("input.files_epoch_seconds", result["files_epoch_seconds"], "s", "notebook: flow_from_dataframe"),
        Figure("input.compute_epoch_seconds", result["compute_epoch_seconds"], "s", "one cached batch: no input"),
        Figure("input.arrays_patches_per_second", result["arrays_patches_per_second"], "patches/s"),
        Figure("input.files_patches_per_second", result["files_patches_per_second"], "patches/s"),
        Figure("input.epoch_speedup", speedup, "x", ">= 3", speedup >= 3),
        Figure("input.epoch_speedup_ceiling", ceiling, "x", "notebook epoch / model-only epoch"),
        Figure("input.step_with_input_ms", result["step_with_input_ms"], "ms"),
        Figure("input.step_without_input_ms", result["step_without_input_ms"], "ms"),
        Figure("input.files_step_ms", result["files_step_ms"], "ms"),
        Figure("input.step_overhead", overhead, "x", "<= 1.2: input not the bottleneck", overhead <= 1.2),
        Figure(
            "input.arrays_input_only_patches_per_second",
            result["arrays_input_only_patches_per_second"],
            "patches/s",
            "turns, mirror and stain jitter",
        ),
        Figure(
            "input.arrays_flips_input_only_patches_per_second",
            result["arrays_flips_input_only_patches_per_second"],
            "patches/s",
            "turns and mirror: the notebook's work",
        ),
        Figure("input.files_input_only_patches_per_second", result["files_input_only_patches_per_second"], "patches/s"),
        Figure("input.input_only_speedup", input_speedup, "x", "same augmentation, no model"),
        Figure("input.peak_rss_mb", result["peak_rss_mb"], "MiB"),
    ]


def compute_figures(settings: Settings, work: Path, seed_dir: Path, params_path: Path) -> list[Figure]:
    """Benchmark 5: FLOPs per training step, achieved FLOP/s and its fraction of the CPU's peak, predict rate."""
    from pathcnn.stages import patches

    raw = write_scaled_copies(seed_dir, work / "compute" / "raw", 1, settings.input_crop)
    patches.run(raw, work / "compute" / "patches", work / "compute" / "grids", params_path)
    config = {
        "patches_dir": str(work / "compute" / "patches"),
        "steps": settings.compute_steps,
        "epochs": settings.input_epochs,
        "predict_patches": settings.predict_patches,
        "seed": 42,
    }
    result = measure("compute.run", config)
    peak = f"{result['cores']} cores x {result['clock_ghz']:.2f} GHz x {result['fp32_flops_per_cycle']} FLOP/cycle"
    return [
        Figure("compute.forward_mflops_per_patch", result["forward_mflops_per_patch"], "MFLOP", "per layer, FMA = 2"),
        Figure("compute.train_step_gflops", result["train_step_gflops"], "GFLOP", f"batch {result['batch_size']}"),
        Figure("compute.train_step_ms", result["train_step_ms"], "ms", "model only, one cached batch"),
        Figure("compute.train_achieved_gflops_per_second", result["train_achieved_gflops_per_second"], "GFLOP/s"),
        Figure("compute.peak_fp32_gflops_per_second", result["peak_fp32_gflops_per_second"], "GFLOP/s", peak),
        Figure("compute.peak_bf16_gflops_per_second", result["peak_bf16_gflops_per_second"], "GFLOP/s", "2x FP32"),
        Figure("compute.train_fraction_of_fp32_peak", result["train_fraction_of_fp32_peak"], "x", "float32"),
        Figure("compute.predict_patches_per_second", result["predict_patches_per_second"], "patches/s"),
        Figure("compute.predict_achieved_gflops_per_second", result["predict_achieved_gflops_per_second"], "GFLOP/s"),
        Figure("compute.predict_fraction_of_fp32_peak", result["predict_fraction_of_fp32_peak"], "x"),
        Figure("compute.peak_rss_mb", result["peak_rss_mb"], "MiB"),
    ]


def scale_figures(settings: Settings, work: Path, seed_dir: Path, params_path: Path) -> list[Figure]:
    """Benchmark 3: patches + split + one train epoch per model at growing copies of the seed data."""
    figures: list[Figure] = []
    results = {}
    for factor in settings.scale_factors:
        folder = work / f"scale{factor}"
        raw = write_scaled_copies(seed_dir, folder / "raw", factor, settings.scale_crop)
        result = measure("scale.run", {"raw_dir": str(raw), "work_dir": str(folder), "params_path": str(params_path)})
        shutil.rmtree(folder, ignore_errors=True)
        results[factor] = result
        prefix = f"scale.x{factor}"
        figures += [
            Figure(f"{prefix}.patches", result["patches"], "patches", f"{result['images']} images"),
            Figure(f"{prefix}.seconds", result["seconds"], "s"),
            Figure(f"{prefix}.patches_seconds", result["patches_seconds"], "s"),
            Figure(f"{prefix}.split_seconds", result["split_seconds"], "s"),
            Figure(f"{prefix}.train_seconds", result["train_seconds"], "s", "1 epoch per model"),
            Figure(f"{prefix}.peak_rss_mb", result["peak_rss_mb"], "MiB"),
        ]
    small, large = results[settings.scale_factors[0]], results[settings.scale_factors[-1]]
    data_growth = large["patches"] / small["patches"]
    time_growth = large["seconds"] / small["seconds"]
    memory_growth = large["peak_rss_mb"] / small["peak_rss_mb"]
    per_patch = 1024 * (large["peak_rss_mb"] - small["peak_rss_mb"]) / (large["patches"] - small["patches"])
    return figures + [
        Figure("scale.data_growth", data_growth, "x"),
        Figure(
            "scale.time_growth", time_growth, "x", f"<= data growth ({data_growth:.1f}x)", time_growth <= data_growth
        ),
        Figure("scale.memory_growth", memory_growth, "x", "flat (~1x)", memory_growth <= 1.2),
        Figure("scale.memory_per_patch_kb", per_patch, "KiB", "~0 (a patch is 29 KiB)"),
    ]


def e2e_figures(settings: Settings, work: Path, seed_dir: Path, params_path: Path) -> list[Figure]:
    """Benchmark 4: dvc repro in a temporary copy of the repo, from clean and again fully cached."""
    from tests.conftest import copy_repo, run_command, shrink_params, write_small_images

    root = copy_repo(work / "repo")
    if settings.repro_crop is None:
        (root / "data" / "raw").mkdir(parents=True)
        for image in sorted(seed_dir.glob("*.jpg")):  # the same eight files data/raw.dvc records
            shutil.copy2(image, root / "data" / "raw" / image.name)
    else:
        write_small_images(root / "data" / "raw", settings.repro_crop)
        params_file = root / "params.yaml"
        params = shrink_params(yaml.safe_load(params_file.read_text()))
        first = next(iter(params["models"]))
        params["models"] = {first: params["models"][first]}  # one model: the check takes half the time
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        run_command(["dvc", "add", "-q", "data/raw"], root)
    result = measure("end_to_end.run", {"repo": str(root)}, timeout=7200)
    clean, noop = result["clean_seconds"], result["noop_seconds"]
    return [
        Figure("e2e.stages", result["stages"], "stages"),
        Figure("e2e.clean_seconds", clean, "s", "<= 600", clean <= 600),
        Figure("e2e.noop_seconds", noop, "s", "< 10", noop < 10),
        Figure("e2e.children_peak_rss_mb", result["children_peak_rss_mb"], "MiB"),
    ]


RUNNERS: dict[str, Callable[[Settings, Path, Path, Path], list[Figure]]] = {
    "tiling": tiling_figures,
    "input": input_figures,
    "compute": compute_figures,
    "scale": scale_figures,
    "e2e": e2e_figures,
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return "not installed"

    return {
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "tensorflow": installed("tensorflow-cpu", "tensorflow"),
        "keras": installed("keras"),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def format_value(value: float | int) -> str:
    """Three significant figures for floats, integers as they are."""
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The figures as an aligned text table."""
    rows = [("figure", "value", "unit", "target", "met")]
    for figure in figures:
        met = "" if figure.met is None else ("yes" if figure.met else "NO")
        rows.append((figure.key, format_value(figure.value), figure.unit, figure.target, met))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def seed_dir_with_images() -> Path:
    """The folder of the eight seed JPEGs (data/raw, or ../shared/data/he-seed)."""
    from tests.conftest import seed_image_dir

    return seed_image_dir()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the chosen benchmarks, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs, 1 epoch: checks the script, not speed")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench.json", help="where to write figures")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="run a subset")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--merge", action="store_true", help="update --out with these figures, keep the others")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    seed_dir = seed_dir_with_images()
    work = Path(tempfile.mkdtemp(prefix="pathcnn-bench-"))
    params_path = work / "params.yaml"
    shutil.copy2(REPO / "params.yaml", params_path)
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    try:
        for name in args.only:  # in BENCHMARKS order when not chosen: dvc repro last, it takes longest
            print(f"running {name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            try:
                figures += RUNNERS[name](settings, work, seed_dir, params_path)
            except (RuntimeError, OSError, subprocess.SubprocessError, AssertionError) as error:
                errors[name] = str(error)
                print(f"{name} FAILED: {error}", file=sys.stderr, flush=True)
            print(f"{name} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    about = {**machine(), "mode": "quick" if args.quick else "full", "settings": settings.__dict__}
    print(f"cores {about['cpu_count']}, Python {about['python']}, TensorFlow {about['tensorflow']}, {about['date']}")
    print(table(figures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": about,
        "runs": {name: about for name in args.only},  # which run each benchmark's figures come from
        "errors": errors,
        "figures": {figure.key: figure.value for figure in figures},
        "targets": {
            figure.key: {"target": figure.target, "met": figure.met} for figure in figures if figure.met is not None
        },
        "units": {figure.key: figure.unit for figure in figures},
    }
    if args.merge and args.out.exists():  # keep the figures of benchmarks not run this time
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        for section in ("figures", "targets", "units"):
            payload[section] = {**previous.get(section, {}), **payload[section]}
        payload["runs"] = {**previous.get("runs", {}), **payload["runs"]}
    args.out.write_text(json.dumps(payload, indent=2, default=list) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if errors:
        raise SystemExit(f"failed: {', '.join(errors)}")


if __name__ == "__main__":
    main()
