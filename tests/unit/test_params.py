"""Params: the real params.yaml loads; bad keys, types and ranges stop with one line naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pathcnn.errors import ParamsError
from pathcnn.params import Head, SplitStrategy, check_models_have_images, load_params, parse_params

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
    assert params.patches.size == 100 and params.patches.stride == 100
    assert isinstance(params.train.head, Head)


def test_params_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ValueError):
        params.train.dropout = 0.9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r["patches"].update(size=0), "patches.size"),
        (lambda r: r["patches"].update(size="big"), "patches.size"),
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
