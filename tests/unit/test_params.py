"""Params: the real params.yaml loads; bad keys, types and ranges stop with one line naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pathcnn.errors import ParamsError
from pathcnn.params import (
    DVC_RUN_CACHE_IGNORED,
    Head,
    SplitStrategy,
    check_models_have_images,
    load_params,
    parse_params,
)
from tests.conftest import leaf_paths, with_value

REPO = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def mutated(change) -> dict:
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


def test_real_params_yaml_loads() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.models["model1"].classes == ("A", "B")
    assert params.models["model2"].classes == ("C", "D")
    assert params.split.strategy is SplitStrategy.patch
    assert params.split.test_fraction == pytest.approx(0.1)
    assert params.patches.patch_size == 100 and params.patches.stride == 100
    assert isinstance(params.train.head, Head)


def test_params_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ValueError):
        params.train.dropout = 0.9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r["patches"].update(patch_size=0), "patches.patch_size"),
        (lambda r: r["patches"].update(patch_size="big"), "patches.patch_size"),
        (lambda r: r["split"].update(test_fraction=1.0), "split.test_fraction"),
        (lambda r: r["split"].update(test_fraction=0), "split.test_fraction"),
        (lambda r: r["split"].update(strategy="random"), "split.strategy"),
        (lambda r: r["train"].update(dropuot=0.2), "train.dropuot"),
        (lambda r: r.update(extra_section={}), "extra_section"),
        (lambda r: r["train"].update(conv_blocks=7), "train.conv_blocks"),
        (lambda r: r["train"].update(head="dense"), "train.head"),
        (lambda r: r["models"].update(model3={"classes": ["A"]}), "models.model3.classes"),
        (lambda r: r["models"].update(model3={"classes": ["A", "A"]}), "models.model3.classes"),
        (lambda r: r["tune"]["space"].update(dropout={"low": 0.5, "high": 0.1}), "tune.space.dropout"),
        (lambda r: r["tune"]["space"].update(head={"choices": ["global_pool", "x"]}), "tune.space"),
        (lambda r: r["tune"]["space"].update(conv_blocks={"choices": [3, 8]}), "tune.space"),
        (lambda r: r["tune"]["space"].update(momentum={"low": 0.1, "high": 0.9}), "tune.space"),
    ],
)
def test_bad_values_name_the_key(change, key: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(mutated(change))
    message = str(caught.value)
    assert "\n" not in message
    assert f" {key}" in message or f"{key}:" in message, message


def test_model_naming_a_class_without_images_is_refused() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ParamsError, match=r"models\.model2\.classes: no images for class D"):
        check_models_have_images(params, {"A", "B", "C"})


def test_unknown_model_name_lists_known_ones() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ParamsError, match="known: model1, model2"):
        params.model("model9")


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def run_cache_key(params: dict) -> str:
    """DVC's run-cache key of a stage whose dvc.lock entry records these params.yaml values.

    DVC has no public function for this key; dvc.stage.cache._get_cache_hash is private and used in tests only,
    so what DVC leaves out comes from DVC itself, not from a list typed here.
    """
    from dvc.stage.cache import _get_cache_hash

    lock = {
        "cmd": "pathcnn patches",
        "deps": [{"path": "data/raw", "hash": "md5", "md5": "0" * 32}],
        "params": {"params.yaml": copy.deepcopy(params)},
        "outs": [{"path": "data/patches", "hash": "md5", "md5": "1" * 32}],
    }
    return _get_cache_hash(lock, key=True)


def test_dvc_run_cache_sees_every_param() -> None:
    # DVC drops some key names (at any depth) from the run-cache hash: a param named so can change and
    # `dvc repro` restores the outputs of the old value ("cached - skipping run"), issue 11.
    paths = leaf_paths(RAW)
    assert ("patches", "patch_size") in paths and ("tune", "space", "dropout", "high") in paths
    unchanged = run_cache_key(RAW)
    unseen = [
        ".".join(map(str, path)) for path in paths if run_cache_key(with_value(RAW, path, ["changed"])) == unchanged
    ]
    assert not unseen, f"DVC's run cache ignores params.yaml keys {unseen}; rename the segment DVC drops"


def test_names_dvc_run_cache_ignores_are_known() -> None:
    # Candidates: every field name DVC writes into dvc.lock entries (data meta and output fields), plus ours.
    from dvc.output import Output
    from dvc_data.hashfile.meta import Meta

    candidates = set(DVC_RUN_CACHE_IGNORED)
    for owner in (Meta, Output):
        candidates |= {
            value for name, value in vars(owner).items() if name.startswith("PARAM_") and isinstance(value, str)
        }
    ignored = {
        name for name in candidates if run_cache_key({"section": {name: 1}}) == run_cache_key({"section": {name: 2}})
    }
    assert ignored == DVC_RUN_CACHE_IGNORED


@pytest.mark.parametrize("name", sorted(DVC_RUN_CACHE_IGNORED))
def test_model_named_as_dvc_ignores_is_refused(name: str) -> None:
    raw = mutated(lambda r: r["models"].update({name: {"classes": ["A", "B"]}}))
    with pytest.raises(ParamsError, match=rf"models: model name '{name}' is ignored by DVC's run cache"):
        parse_params(raw)
