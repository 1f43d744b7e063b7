"""The patches and split stages on real crops, and their handling of bad images and bad params."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import run_command, stage_command

PATCHES, SPLIT = stage_command("patches")[1:], stage_command("split")[1:]  # the arguments dvc.yaml passes


def pathcnn(args: list[str], cwd: Path, check: bool = True):
    return run_command(["pathcnn", *args], cwd, check=check, timeout=300)


@pytest.fixture
def workdir(tmp_path: Path, small_images: Path, small_params_file: Path) -> Path:
    shutil.copytree(small_images, tmp_path / "data" / "raw")
    return tmp_path


def test_patches_and_split_on_real_crops(workdir: Path) -> None:
    pathcnn(PATCHES, workdir)
    manifest = pd.read_csv(workdir / "data/patches/manifest.csv")
    assert len(manifest) == 8 * 9
    assert set(manifest["image_id"]) == {"A1", "A2", "B1", "B2", "C1", "C2", "D1", "D2"}
    first = np.load(workdir / "data/patches/A1.npy")
    assert first.dtype == np.uint8 and first.shape[1:] == (100, 100, 3)
    assert len(first) == manifest[(manifest.image_id == "A1") & manifest.kept].shape[0]
    with Image.open(workdir / "data/raw/A1.jpg") as image:
        source = np.asarray(image.convert("RGB"))
    row = manifest[(manifest.image_id == "A1") & manifest.kept].iloc[0]
    np.testing.assert_array_equal(
        first[row["index"]],
        source[row["row"] * 100 : row["row"] * 100 + 100, row["col"] * 100 : row["col"] * 100 + 100],
    )
    assert (workdir / "reports/figures/tiling/A1.png").exists()
    assert json.loads((workdir / "data/patches/skipped.json").read_text()) == []

    pathcnn(SPLIT, workdir)
    split = pd.read_csv(workdir / "data/splits/model1.csv")
    assert set(split["label"]) == {"A", "B"}
    assert set(split["split"]) == {"train", "val", "test"}
    assert split["patch_id"].is_unique


BAD_IMAGES = [
    ("A3.jpg", "empty", "empty file"),
    ("A3.png", "html", "not a supported image"),
    ("A3.jpg", "truncated", "corrupt or truncated"),
    ("A3.png", "tiny", "smaller than one"),
    ("A3.png", "white", "background"),
    ("A3.png", "grey", "has no colour"),
    ("A3.png", "grey16", "has no colour"),
    ("A3.jpg", "grey-rgb", "has no colour"),
]


def _write_bad(path: Path, kind: str, donor: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "html":
        path.write_bytes(b"<html><body>not an image</body></html>")
    elif kind == "truncated":
        data = donor.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "tiny":
        Image.new("RGB", (60, 60), (200, 100, 150)).save(path, format="PNG")
    elif kind == "white":
        Image.new("RGB", (300, 300), (250, 250, 250)).save(path, format="PNG")
    elif kind == "grey":  # a greyscale scan of real tissue
        Image.open(donor).convert("L").save(path, format="PNG")
    elif kind == "grey16":
        grey = np.asarray(Image.open(donor).convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(path, format="PNG")
    elif kind == "grey-rgb":  # greyscale stored as a colour JPEG
        Image.open(donor).convert("L").convert("RGB").save(path, format="JPEG", quality=90)


@pytest.mark.parametrize(("name", "kind", "reason"), BAD_IMAGES)
def test_bad_image_stops_with_one_line_and_keeps_old_outputs(workdir: Path, name: str, kind: str, reason: str) -> None:
    pathcnn(PATCHES, workdir)
    before = (workdir / "data/patches/manifest.csv").read_bytes()
    _write_bad(workdir / "data" / "raw" / name, kind, workdir / "data/raw/A1.jpg")

    result = pathcnn(PATCHES, workdir, check=False)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert name in lines[0] and reason in lines[0], lines[0]
    assert (workdir / "data/patches/manifest.csv").read_bytes() == before
    assert not list((workdir / "data").glob(".patches.*")), "no temporary folder left behind"


@pytest.mark.parametrize(("name", "kind", "reason"), BAD_IMAGES)
def test_skip_bad_images_lists_them(workdir: Path, name: str, kind: str, reason: str) -> None:
    _write_bad(workdir / "data" / "raw" / name, kind, workdir / "data/raw/A1.jpg")
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["patches"]["skip_bad_images"] = True
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))

    pathcnn(PATCHES, workdir)

    skipped = json.loads((workdir / "data/patches/skipped.json").read_text())
    assert [entry["file"] for entry in skipped] == [name]
    assert reason in skipped[0]["reason"]
    manifest = pd.read_csv(workdir / "data/patches/manifest.csv")
    assert "A3" not in set(manifest["image_id"]) and len(manifest) == 72


def test_bad_param_stops_before_any_work(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["patches"]["patch_size"] = -5
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    result = pathcnn(PATCHES, workdir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: params.yaml: patches.patch_size: Input should be greater than 0 (got -5)"
    ]
    assert not (workdir / "data/patches").exists()


def test_model_with_a_class_without_images_is_refused(workdir: Path) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["models"]["model3"] = {"classes": ["A", "Z"]}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    result = pathcnn(PATCHES, workdir, check=False)
    assert result.returncode == 1
    assert "models.model3.classes: no images for class Z" in result.stderr


def test_misnamed_file_is_reported(workdir: Path) -> None:
    (workdir / "data/raw/scan.jpg").write_bytes((workdir / "data/raw/A1.jpg").read_bytes())
    (workdir / "data/raw/.DS_Store").write_bytes(b"junk")
    result = pathcnn(PATCHES, workdir, check=False)
    assert result.returncode == 1
    assert "scan.jpg" in result.stderr and ".DS_Store" not in result.stderr
