"""Shared fixtures: small real data cut from the seed images, shrunk params, and a temporary repo copy."""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SEED_DIRS = (REPO / "data" / "raw", REPO.parent / "shared" / "data" / "he-seed")
CROP = 300  # 3x3 patches of 100 px per image

# Stage commands (pathcnn, dvc) come from the interpreter's environment, even when it is not activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def seed_image_dir() -> Path:
    """The folder holding the eight seed JPEGs (data/raw after dvc pull, else ../shared/data/he-seed)."""
    for folder in SEED_DIRS:
        if len(list(folder.glob("*.jpg"))) >= 8:
            return folder
    pytest.fail("seed images not found: run `dvc pull` or put ../shared beside the checkout")


def write_small_images(target: Path, crop: int = CROP) -> Path:
    """Centre crops of the eight seed images, as JPEGs named like the originals."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(seed_image_dir().glob("*.jpg")):
        with Image.open(source) as image:
            left, top = (image.width - crop) // 2, (image.height - crop) // 2
            image.convert("RGB").crop((left, top, left + crop, top + crop)).save(target / source.name, quality=95)
    return target


def shrink_params(params: dict) -> dict:
    """The real params with tiny budgets: 1-2 epochs, 2 trials, a small network."""
    params["train"].update(max_epochs=2, patience=1, filters=4, conv_blocks=2, dense_units=8, batch_size=16)
    params["split"]["test_fraction"] = 0.2
    params["split"]["val_fraction"] = 0.2
    tune = params.get("tune")
    if tune is not None:
        tune.update(n_trials=2, max_epochs=1)
        space = {"dropout": {"low": 0.0, "high": 0.5, "start": 0.3}, "filters": {"choices": [4, 8], "start": 4}}
        # Fields `tuned` in params.yaml but not searched here are fixed at their start value.
        for name, value in params["train"].items():
            if value == "tuned" and name not in space:
                params["train"][name] = tune["space"][name]["start"]
        params["train"].update(dropout="tuned", filters="tuned")
        tune["space"] = space
    for section in ("crossval", "control"):
        if section in params:
            params[section]["max_epochs"] = 1
    if "crossval" in params:
        params["crossval"]["seeds"] = 2
    if "report" in params:
        params["significance"]["bootstrap_resamples"] = 100
    return params


@pytest.fixture(scope="session")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of eight 300x300 crops of the seed images (9 patches each)."""
    return write_small_images(tmp_path_factory.mktemp("small") / "raw")


@pytest.fixture
def small_params_file(tmp_path: Path) -> Path:
    """params.yaml of the repo, shrunk, written to tmp_path."""
    params = shrink_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real, empty MLflow SQLite store for this test."""
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def copy_repo(target: Path) -> Path:
    """Copy the tracked files of the repo (plus untracked, not ignored ones) into target, as a fresh git repo."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "copy"], cwd=target, check=True, env=env)
    return target


def prepare_repo_copy(target: Path, small_images: Path) -> Path:
    """A git copy of the repo in target with the small images in data/raw (dvc add'ed) and shrunk params.

    Runs of pathcnn inside it should use its own MLflow store: set MLFLOW_TRACKING_URI to mlflow_uri(root).
    """
    root = copy_repo(target)
    shutil.copytree(small_images, root / "data" / "raw")
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(shrink_params(yaml.safe_load(params_path.read_text())), sort_keys=False))
    run_command(["dvc", "add", "-q", "data/raw"], root)
    return root


def mlflow_uri(root: Path) -> str:
    """The SQLite MLflow store inside a repo copy."""
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


@pytest.fixture
def repo_copy(tmp_path: Path, small_images: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary copy of the repo with small images in data/raw (dvc add'ed) and shrunk params."""
    root = prepare_repo_copy(tmp_path / "repo", small_images)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri(root))
    return root


def stage_command(stage: str, key: str | None = None, drop: tuple[str, ...] = ()) -> list[str]:
    """The command dvc.yaml runs for a stage (foreach stages with ${key} filled in): paths live only there.

    `drop` leaves out options with their values (e.g. --tuned, for a train run without a study).
    """
    body = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    command = body["do"]["cmd"] if "foreach" in body else body["cmd"]
    words = shlex.split(command.replace("${key}", key) if key else command)
    for option in drop:
        at = words.index(option)
        del words[at : at + 2]
    return words


def run_command(command: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command, returning its output; on failure the assertion shows stdout and stderr."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def commit_all(root: Path, message: str = "shrunk params") -> str:
    """Commit everything in a repo copy (so experiments differ from their baseline by -S alone); returns HEAD."""
    run_command(["git", "add", "-A"], root)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)
    return run_command(["git", "rev-parse", "HEAD"], root).stdout.strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def small_patches(count: int = 8, size: int = 100, seed: int = 0) -> np.ndarray:
    """Random uint8 patches for unit tests that only need shapes."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def leaf_paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping down to its leaf values (list items by index when they nest)."""
    if isinstance(node, dict) and node:
        return [path for key, value in node.items() for path in leaf_paths(value, (*prefix, key))]
    if isinstance(node, list) and any(isinstance(item, (dict, list)) for item in node):
        return [path for index, item in enumerate(node) for path in leaf_paths(item, (*prefix, index))]
    return [prefix]


def with_value(raw: dict, path: tuple, value: object) -> dict:
    """A deep copy of a nested mapping with the leaf at path replaced."""
    changed = copy.deepcopy(raw)
    parent = changed
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return changed
