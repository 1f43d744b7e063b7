"""A changed param re-runs what uses it: `dvc status` marks the stages that list it, and `dvc repro` does not
restore another value's outputs from the run cache (issue 11: the cache ignored a key named `size`)."""

from __future__ import annotations

import enum
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pathcnn import params as params_module
from pathcnn.errors import ParamsError
from pathcnn.params import parse_params
from tests.conftest import REPO, leaf_paths, mlflow_uri, prepare_repo_copy, run_command, with_value

pytestmark = pytest.mark.slow

CACHED = "cached - skipping run"


@pytest.fixture(scope="module")
def split_repo(tmp_path_factory: pytest.TempPathFactory, small_images: Path) -> Iterator[Path]:
    """A repo copy after `dvc repro split`: patches and split have run, nothing later."""
    monkeypatch = pytest.MonkeyPatch()
    root = prepare_repo_copy(tmp_path_factory.mktemp("rerun") / "repo", small_images)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri(root))
    run_command(["dvc", "repro", "split"], root)
    yield root
    monkeypatch.undo()


def tracked_params(root: Path, raw: dict) -> dict[str, list[str | None]]:
    """The params.yaml names each stage lists in dvc.yaml (None: the whole file), foreach stages per item."""
    tracked: dict[str, list[str | None]] = {}
    for name, stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        names: list[str | None] = []
        for entry in body.get("params", []):
            if isinstance(entry, str):
                names.append(entry)
            elif "params.yaml" in entry:
                names.extend(entry["params.yaml"] or [None])
        if "foreach" not in stage:
            tracked[name] = names
            continue
        items = stage["foreach"]
        if isinstance(items, str):  # "${section}" of params.yaml
            items = lookup(raw, tuple(items.removeprefix("${").removesuffix("}").split(".")))
        for item in items:
            tracked[f"{name}@{item}"] = names
    return tracked


def lookup(raw: dict, path: tuple) -> Any:
    value: Any = raw
    for part in path:
        value = value[part]
    return value


def covers(name: str | None, key: str) -> bool:
    """Whether a params name listed in dvc.yaml (a section, a dotted key, None for the file) includes key."""
    return name is None or key == name or key.startswith(f"{name}.")


def record_params_in_lock(root: Path, tracked: dict[str, list[str | None]], raw: dict) -> None:
    """Write the current params.yaml values into every stage's dvc.lock entry, as `dvc repro` records them.

    The copied dvc.lock holds the full-size params for the stages after split (running them takes minutes), and a
    section DVC already reports as modified would hide the change under test. Only this temporary copy is edited.
    """
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    for stage, names in tracked.items():
        if names:
            values = raw if None in names else {name: lookup(raw, tuple(name.split("."))) for name in names}
            # A stage new since the lock was written gets an entry holding only its params.
            entry = lock["stages"].setdefault(stage, {"cmd": "(not run yet)"})
            entry["params"] = {"params.yaml": values}
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))


def changed_params(root: Path) -> dict[str, set[str]]:
    """Per stage, the params.yaml names `dvc status --json` reports as changed."""
    status = json.loads(run_command(["dvc", "status", "--json"], root).stdout)
    changed: dict[str, set[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            reported = entry.get("changed deps", {}).get("params.yaml") if isinstance(entry, dict) else None
            if isinstance(reported, dict):
                changed.setdefault(stage, set()).update(reported)
            elif reported is not None:
                changed.setdefault(stage, set()).add(f"params.yaml {reported}")
    return changed


def value_pool(raw: dict) -> list[Any]:
    """Values a key could take instead: every scalar in params.yaml (list items too) and every enum choice."""
    choices = [
        member.value
        for item in vars(params_module).values()
        if isinstance(item, type) and issubclass(item, enum.Enum)
        for member in item
    ]
    leaves = [lookup(raw, path) for path in leaf_paths(raw)]
    scalars = [item for leaf in leaves for item in (leaf if isinstance(leaf, list) else [leaf])]
    pool: list[Any] = []
    for value in [*scalars, *choices]:
        if not isinstance(value, (list, dict)) and (type(value), value) not in {(type(seen), seen) for seen in pool}:
            pool.append(value)
    return pool


def alternatives(value: Any, pool: list[Any]) -> list[Any]:
    """Other values for one params.yaml leaf, most alike first: the same type changed a little, then the pool."""
    same: list[Any] = []
    if isinstance(value, bool):
        same = [not value]
    elif isinstance(value, int):
        same = [value + 1, value - 1, value * 2, value // 2]
    elif isinstance(value, float):
        same = [value * 1.1, value * 0.9, value + 0.01, value - 0.01, value + 0.1]
    elif isinstance(value, str):
        same = [f"{value}x"]
    elif isinstance(value, list):
        same = [value[::-1], value[:-1], value + value[:1]]
    # Then the pool: its values of the same type (e.g. another of a dimension's choices), strings sorted; last,
    # values of another type, e.g. a number for a train field set to a word such as `tuned`.
    rank = {str: 1, int: 2, float: 3, bool: 4} | {type(value): 0}
    pooled = sorted(pool, key=lambda item: (rank.get(type(item), 5), item if isinstance(item, str) else ""))
    return [candidate for candidate in [*same, *pooled] if candidate != value]


def validation_error(raw: dict) -> str | None:
    try:
        parse_params(raw)
    except ParamsError as error:
        return str(error)
    return None


def check_every_key(root: Path, raw: dict) -> tuple[list[str], list[str]]:
    """Change each leaf of raw in turn; the keys no stage tracks or dvc status misses, and the keys not checked."""
    params_path = root / "params.yaml"
    tracked = tracked_params(root, raw)
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    record_params_in_lock(root, tracked, raw)
    assert changed_params(root) == {}, "dvc.lock should record the current params before any change"
    pool = value_pool(raw)
    problems: list[str] = []
    skipped: list[str] = []
    for path in leaf_paths(raw):
        key = ".".join(map(str, path))
        using = {stage for stage, names in tracked.items() if any(covers(name, key) for name in names)}
        if not using:
            problems.append(f"{key}: no stage lists it in dvc.yaml, so changing it re-runs nothing")
            continue
        old = lookup(raw, path)
        errors = []
        for new in alternatives(old, pool):
            error = validation_error(with_value(raw, path, new))
            if error is None:
                break
            errors.append(f"{new!r}: {error}")
        else:
            skipped.append(f"{key}: no other value of {old!r} is valid alone, e.g. {errors[0] if errors else 'none'}")
            continue
        params_path.write_text(yaml.safe_dump(with_value(raw, path, new), sort_keys=False))
        changed = changed_params(root)
        marked = {stage for stage, names in changed.items() if any(covers(name, key) for name in names)}
        if using - marked:
            problems.append(
                f"{key}: {old!r} -> {new!r}: dvc status does not mark {sorted(using - marked)} (reported {changed})"
            )
    return problems, skipped


def test_every_param_change_marks_the_stages_that_list_it(split_repo: Path) -> None:
    # Every key of the real params.yaml (the copy's shrunk one drops most of tune.space); status runs nothing.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    paths = leaf_paths(raw)
    assert ("patches", "patch_size") in paths and ("tune", "space", "dropout", "high") in paths
    originals = {path: path.read_text() for path in (split_repo / "params.yaml", split_repo / "dvc.lock")}
    try:
        problems, skipped = check_every_key(split_repo, raw)
    finally:
        for path, text in originals.items():
            path.write_text(text)
    for reason in skipped:
        warnings.warn(f"not checked: {reason}", stacklevel=1)
    assert len(skipped) < len(paths) // 2, f"too few keys checked; skipped: {skipped}"
    assert not problems, "\n".join([*problems, *(f"skipped {reason}" for reason in skipped)])


def patch_shapes(root: Path) -> set[tuple[int, ...]]:
    """(height, width) of the patches in every data/patches/<image>.npy."""
    return {np.load(path, mmap_mode="r").shape[1:3] for path in sorted((root / "data" / "patches").glob("*.npy"))}


def test_patch_size_change_reruns_patches_and_the_run_cache_restores_the_old_size(split_repo: Path) -> None:
    params_path = split_repo / "params.yaml"
    original = params_path.read_text()
    raw = yaml.safe_load(original)
    assert (raw["patches"]["patch_size"], raw["patches"]["stride"]) == (100, 100)
    assert patch_shapes(split_repo) == {(100, 100)}
    try:
        smaller = with_value(with_value(raw, ("patches", "patch_size"), 50), ("patches", "stride"), 50)
        params_path.write_text(yaml.safe_dump(smaller, sort_keys=False))
        rerun = run_command(["dvc", "repro", "patches"], split_repo)
        assert CACHED not in rerun.stdout + rerun.stderr, rerun.stdout
        assert patch_shapes(split_repo) == {(50, 50)}
        # Back to 100 px: the params equal the first run's, so the run cache restores its outputs.
        params_path.write_text(original)
        restored = run_command(["dvc", "repro", "patches"], split_repo)
        assert CACHED in restored.stdout + restored.stderr, restored.stdout
        assert patch_shapes(split_repo) == {(100, 100)}
    finally:
        params_path.write_text(original)
