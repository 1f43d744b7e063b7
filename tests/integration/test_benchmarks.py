"""benchmarks/run.py --quick runs every benchmark and reports every figure (the values are not checked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_command

pytestmark = pytest.mark.slow

TILING = [
    "image_megapixels",
    "decoded_mb",
    "pillow_decode_seconds",
    "decode_seconds",
    "decode_megapixels_per_second",
    "total_seconds",
    "decode_and_tile_seconds",
    "write_seconds",
    "grid_seconds",
    "megapixels_per_second",
    "kept_patches",
    "ratio_to_decode",
    "kept_mb",
    "bare_write_seconds",
    "ratio_to_decode_and_bare_write",
    "import_rss_mb",
    "decode_peak_rss_mb",
    "peak_rss_mb",
    "peak_rss_to_decoded",
]
INPUT = [
    "patches",
    "arrays_epoch_seconds",
    "files_epoch_seconds",
    "compute_epoch_seconds",
    "arrays_patches_per_second",
    "files_patches_per_second",
    "epoch_speedup",
    "epoch_speedup_ceiling",
    "step_with_input_ms",
    "step_without_input_ms",
    "files_step_ms",
    "step_overhead",
    "arrays_input_only_patches_per_second",
    "arrays_flips_input_only_patches_per_second",
    "files_input_only_patches_per_second",
    "input_only_speedup",
    "peak_rss_mb",
]
COMPUTE = [
    "forward_mflops_per_patch",
    "train_step_gflops",
    "train_step_ms",
    "train_achieved_gflops_per_second",
    "peak_fp32_gflops_per_second",
    "peak_bf16_gflops_per_second",
    "train_fraction_of_fp32_peak",
    "predict_patches_per_second",
    "predict_achieved_gflops_per_second",
    "predict_fraction_of_fp32_peak",
    "peak_rss_mb",
]
SCALE_EACH = ["patches", "seconds", "patches_seconds", "split_seconds", "train_seconds", "peak_rss_mb"]
SCALE = ["data_growth", "time_growth", "memory_growth", "memory_per_patch_kb"]
E2E = ["stages", "clean_seconds", "noop_seconds", "children_peak_rss_mb"]
QUICK_FACTORS = (1, 2)


def expected_keys() -> list[str]:
    keys = [f"tiling.{key}" for key in TILING] + [f"input.{key}" for key in INPUT]
    keys += [f"compute.{key}" for key in COMPUTE]
    keys += [f"scale.x{factor}.{key}" for factor in QUICK_FACTORS for key in SCALE_EACH]
    return keys + [f"scale.{key}" for key in SCALE] + [f"e2e.{key}" for key in E2E]


def test_quick_benchmarks_print_and_record_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_command([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)], REPO, timeout=900)
    recorded = json.loads(out.read_text())
    assert recorded["machine"]["cpu_count"] >= 1
    assert recorded["machine"]["mode"] == "quick"
    assert set(recorded["runs"]) == {"tiling", "input", "compute", "scale", "e2e"}
    for key in ("python", "tensorflow", "keras", "date"):
        assert recorded["machine"][key], key
    printed = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    missing = [key for key in expected_keys() if key not in recorded["figures"]]
    assert not missing, f"not recorded: {missing}"
    unprinted = [key for key in expected_keys() if key not in printed]
    assert not unprinted, f"not printed: {unprinted}"
    for key in expected_keys():
        value = recorded["figures"][key]
        assert isinstance(value, int | float) and value == value, f"{key}: {value!r} is not a number"
    for key, target in recorded["targets"].items():
        assert target["met"] in (True, False) and target["target"], key
    assert "cores 2" in result.stdout or "cores " in result.stdout
