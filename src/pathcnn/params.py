"""Typed, validated params: `params.yaml` is read once into frozen objects, one per section.

Unknown keys, wrong types and out-of-range values stop with one line naming the key.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from pathcnn.errors import ParamsError

CLASS_NAME = re.compile(r"^[A-Za-z]+$")
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Keys DVC's run cache leaves out of its hash at any depth (dvc/stage/cache.py: _get_cache_hash): a param
# named so could change and `dvc repro` would still restore the old outputs. tests/unit/test_params.py
# checks this against DVC itself.
DVC_RUN_CACHE_IGNORED = frozenset({"size", "nfiles"})


class Section(BaseModel):
    """Base of every params section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class BaseParams(Section):
    """Settings shared by every stage."""

    seed: int = Field(42, ge=0, description="One seed for Python, NumPy and TensorFlow.")
    experiment_prefix: str = Field(
        "pathcnn", min_length=1, description="MLflow experiments are named <prefix>-<model>."
    )


class PatchesParams(Section):
    """How images are cut into patches."""

    # Not `size`: DVC's run cache drops every key named size or nfiles from its hash (DVC_RUN_CACHE_IGNORED).
    patch_size: int = Field(100, gt=0, description="Patch side in pixels.")
    stride: int = Field(100, gt=0, description="Step between patches; equal to patch_size for no overlap.")
    min_tissue_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="Patches with less tissue than this are dropped."
    )
    tissue_min_saturation: float = Field(
        0.07, ge=0.0, le=1.0, description="A pixel counts as tissue when its HSV saturation exceeds this."
    )
    skip_bad_images: bool = Field(
        False, description="Skip unreadable images (listed in skipped.json) instead of stopping."
    )
    max_image_pixels: int = Field(200_000_000, gt=0, description="Refuse larger images (decompression-bomb guard).")


class SplitStrategy(StrEnum):
    """How test patches are chosen."""

    patch = "patch"  # random patches: the task's 90:10 split; patches of one image land on both sides
    image = "image"  # whole images held out: measures generalisation to new images


class SplitParams(Section):
    """The train/validation/test split."""

    strategy: SplitStrategy = Field(SplitStrategy.patch, description="patch (task default) or image.")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Share of patches held out for test.")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Share of the training part used for early stopping.")


class ModelSpec(Section):
    """One binary (or multi-class) model: which classes it separates."""

    classes: tuple[str, ...] = Field(description="Class letters, e.g. [A, B].")

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2:
            raise ValueError("a model needs at least two classes")
        if len(set(value)) != len(value):
            raise ValueError("classes must be distinct")
        for name in value:
            if not CLASS_NAME.match(name):
                raise ValueError(f"class {name!r} must be letters only (the leading letters of file names)")
        return value


class Head(StrEnum):
    """How conv features become a vector."""

    global_pool = "global_pool"
    flatten = "flatten"


class StainNormalization(StrEnum):
    """Colour preprocessing applied to every patch before training, evaluation and prediction."""

    none = "none"
    reinhard = "reinhard"  # each image's LAB mean/std mapped onto a fixed H&E target (pathcnn.stain)


class ClassWeights(StrEnum):
    """Loss weighting of classes."""

    balanced = "balanced"
    none = "none"


MAX_POOLING_BLOCKS = 6


class TrainParams(Section):
    """CNN architecture and fitting; the tuner searches over a subset of these fields."""

    use_tuned: bool = Field(True, description="Override these fields with the tune stage's best params.")
    conv_blocks: int = Field(3, ge=1, le=MAX_POOLING_BLOCKS, description="Conv+pool blocks.")
    filters: int = Field(16, ge=1, le=512, description="Filters of the first block; doubled per block.")
    kernel_size: int = Field(3, ge=1, le=11, description="Conv kernel side.")
    batch_norm: bool = Field(True, description="Batch normalisation after each conv.")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout before and after the dense layer.")
    l2_kernel: float = Field(1e-4, ge=0.0, le=1.0, description="L2 kernel_regularizer strength.")
    l2_bias: float = Field(0.0, ge=0.0, le=1.0, description="L2 bias_regularizer strength.")
    dense_units: int = Field(32, ge=1, le=4096, description="Units of the dense layer.")
    head: Head = Field(Head.global_pool, description="global_pool or flatten.")
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    warmup_epochs: int = Field(
        3,
        ge=0,
        le=100,
        description="The learning rate rises linearly from a tenth of learning_rate over this many epochs, then "
        "stays (0 = off). Without it some fits collapsed to one constant output in their first steps.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Patches per step.")
    max_epochs: int = Field(30, ge=1, le=10_000, description="Upper bound on epochs.")
    patience: int = Field(6, ge=1, description="Early-stopping patience on validation loss.")
    augment: bool = Field(True, description="Random flips and 90-degree rotations.")
    color_jitter: float = Field(0.5, ge=0.0, le=1.0, description="Stain/colour augmentation strength (0 = off).")
    class_weights: ClassWeights = Field(ClassWeights.balanced, description="balanced or none.")
    stain_normalization: StainNormalization = Field(
        StainNormalization.none, description="none or reinhard (per-image colour statistics to a fixed target)."
    )


START_DESCRIPTION = (
    "The value used when the field is not tuned (train.use_tuned: false) and the study's first trial, "
    "so the search has to beat it. Required for a train field set to `tuned`."
)


class FloatRange(Section):
    """A float search range."""

    low: float
    high: float
    log: bool = False
    zero: bool = Field(False, description="Also allow exactly 0 (searched as a yes/no choice, then the range).")
    start: float | None = Field(None, description=START_DESCRIPTION)

    @model_validator(mode="after")
    def _check_range(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite")
        if self.low >= self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0 (use zero: true to also allow 0)")
        if self.start is not None and not (self.low <= self.start <= self.high or (self.zero and self.start == 0)):
            raise ValueError(f"start {self.start} lies outside [{self.low}, {self.high}]")
        return self


class IntRange(Section):
    """An integer search range."""

    low: int
    high: int
    log: bool = False
    start: int | None = Field(None, description=START_DESCRIPTION)

    @model_validator(mode="after")
    def _check_range(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.start is not None and not self.low <= self.start <= self.high:
            raise ValueError(f"start {self.start} lies outside [{self.low}, {self.high}]")
        return self


class Choices(Section):
    """A categorical search dimension."""

    choices: tuple[bool | int | float | str, ...]
    start: bool | int | float | str | None = Field(None, description=START_DESCRIPTION)

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError("choices must not be empty")
        return value

    @model_validator(mode="after")
    def _check_start(self) -> Choices:
        if self.start is not None and not any(
            self.start == choice and type(self.start) is type(choice) for choice in self.choices
        ):
            raise ValueError(f"start {self.start!r} is not one of the choices {list(self.choices)}")
        return self


DIMENSION_TAGS = frozenset({"choices", "int", "float"})


def _dimension_kind(value: Any) -> str:
    """Which kind of search dimension a raw mapping is: choices, an int range or a float range."""
    if isinstance(value, BaseModel):
        return {Choices: "choices", IntRange: "int"}.get(type(value), "float")
    if isinstance(value, dict) and "choices" in value:
        return "choices"
    bounds = [value.get("low"), value.get("high")] if isinstance(value, dict) else []
    if bounds and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) and "zero" not in value:
        return "int"
    return "float"


SearchDimension = Annotated[
    Annotated[Choices, Tag("choices")] | Annotated[IntRange, Tag("int")] | Annotated[FloatRange, Tag("float")],
    Discriminator(_dimension_kind),
]


class Sampler(StrEnum):
    """Optuna samplers."""

    tpe = "tpe"
    random = "random"


class Pruner(StrEnum):
    """Optuna pruners."""

    median = "median"
    hyperband = "hyperband"
    none = "none"


class Objective(StrEnum):
    """What each trial minimises or maximises.

    val_*: the validation split, patches of the images the trial trains on. held_out_*: leave one image
    per class out inside the train split's patches (crossval's folds without the test split), mean over
    folds: the trial is scored on images it never saw.
    """

    val_loss = "val_loss"
    val_accuracy = "val_accuracy"
    val_balanced_accuracy = "val_balanced_accuracy"
    held_out_accuracy = "held_out_accuracy"
    held_out_loss = "held_out_loss"

    @property
    def held_out(self) -> bool:
        """Scored on held-out images of the train split, not on the validation split."""
        return self.value.startswith("held_out_")

    @property
    def minimised(self) -> bool:
        """A loss: lower is better."""
        return self.value.endswith("_loss")


class TuneParams(Section):
    """The Optuna study."""

    n_trials: int = Field(8, ge=0, description="Finished (complete or pruned) trials the study should reach.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes started by one tune command.")
    max_epochs: int = Field(8, ge=1, description="Epoch budget of one trial.")
    objective: Objective = Field(
        Objective.val_loss, description="What trials are scored on: val_* or held_out_* (see Objective)."
    )
    sampler: Sampler = Field(Sampler.tpe, description="tpe (seeded) or random.")
    pruner: Pruner = Field(Pruner.median, description="median, hyperband or none.")
    storage: str = Field("", description="SQLAlchemy URL; empty means a journal file beside the outputs.")
    heartbeat_seconds: int = Field(
        30, ge=1, description="A trial whose worker is silent this long (x2) is marked FAIL."
    )
    space: dict[str, SearchDimension] = Field(default_factory=dict)

    @field_validator("space")
    @classmethod
    def _check_space(cls, value: dict[str, Any]) -> dict[str, Any]:
        tunable = set(TrainParams.model_fields) - {"use_tuned", "max_epochs", "patience", "warmup_epochs"}
        for name, dimension in value.items():
            if name not in tunable:
                raise ValueError(f"{name}: not a tunable train field (choose from {sorted(tunable)})")
            values: list[Any]
            if isinstance(dimension, Choices):
                values = list(dimension.choices)
            else:
                values = [dimension.low, dimension.high]
            if dimension.start is not None:
                values.append(dimension.start)
            for candidate in values:
                try:
                    TrainParams(**{name: candidate})
                except ValidationError as error:
                    reason = error.errors()[0]["msg"]
                    raise ValueError(f"{name}: value {candidate!r} is not allowed ({reason})") from None
        return value


class CrossvalParams(Section):
    """Leave-one-image-out cross-validation."""

    max_epochs: int = Field(10, ge=1, description="Epoch budget per fold (smaller than train to fit the time budget).")
    seeds: int = Field(
        3,
        ge=1,
        le=20,
        description="CNN fits per fold, seeded base.seed, base.seed + 1, ...: each fold reports their mean and range "
        "(also the nonsense-label control's fits).",
    )

    def seed_list(self, base_seed: int) -> list[int]:
        """The seeds of the repeated fits."""
        return [base_seed + index for index in range(self.seeds)]


class ControlParams(Section):
    """The label-permutation control."""

    max_epochs: int = Field(10, ge=1, description="Epoch budget of the shuffled-label model.")
    permutations: int = Field(
        3, ge=1, le=20, description="Shuffled-label models (each its own permutation); their image calls are pooled."
    )
    chance_margin: float = Field(
        0.15, gt=0.0, lt=1.0, description="Above majority rate + this margin the evaluation is reported as leaking."
    )


class FamiliarityParams(Section):
    """The familiarity stage: when predict calls an image unfamiliar (unlike the training images)."""

    false_alarm_rate: float = Field(
        0.05, gt=0.0, lt=0.5, description="Share of held-out in-distribution patches the threshold may flag."
    )
    image_share: float = Field(
        0.5, gt=0.0, lt=1.0, description="An image with more than this share of unfamiliar patches is unfamiliar."
    )
    scales: list[Annotated[float, Field(gt=0.0, le=4.0)]] = Field(
        default_factory=lambda: [0.8, 0.5, 0.25, 2.0],
        description="Resize factors of the evaluation set (another magnification: 0.5 = half the pixels per mm).",
    )
    jitter_copies: int = Field(
        2, ge=0, le=10, description="Stain-jittered copies of the training patches in the stain reference."
    )


class SignificanceParams(Section):
    """The significance stage: intervals and p-values of the stored predictions."""

    bootstrap_resamples: int = Field(1000, ge=100, description="Resamples for bootstrap intervals.")


class ReportParams(Section):
    """The report."""

    example_patches: int = Field(4, ge=1, le=16, description="Correct and wrong examples shown per class.")
    targets: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict, description="Image-held-out accuracy each crossval fold should reach, per model."
    )


TUNED = "tuned"  # a train field with this value takes the study's best value (see Params.tuned_fields)


class Params(Section):
    """All of params.yaml.

    A train field set to `tuned` is searched by the tune stage over tune.space.<field>; `train` then holds
    the dimension's `start` value, and `tuned_fields` names the field. A train field set to a value is fixed
    at that value and not searched, even when tune.space has a range for it, so `dvc exp run -S
    train.dropout=0.5` fits with 0.5 and the study (whose name hashes the fixed values) is a new one.
    """

    tuned_fields: tuple[str, ...] = Field(
        (), description="Derived from train: the fields set to `tuned` (not a params.yaml key)."
    )
    base: BaseParams = BaseParams()
    patches: PatchesParams = PatchesParams()
    split: SplitParams = SplitParams()
    models: dict[str, ModelSpec]
    train: TrainParams = TrainParams()
    tune: TuneParams = TuneParams()
    crossval: CrossvalParams = CrossvalParams()
    control: ControlParams = ControlParams()
    familiarity: FamiliarityParams = FamiliarityParams()
    significance: SignificanceParams = SignificanceParams()
    report: ReportParams = ReportParams()

    @model_validator(mode="before")
    @classmethod
    def _resolve_tuned(cls, raw: Any) -> Any:
        """Replace each `tuned` train field by its search dimension's start and record it in tuned_fields."""
        if not isinstance(raw, dict):
            return raw
        if "tuned_fields" in raw:
            raise ValueError("tuned_fields: not a params.yaml key; set a train field to `tuned` instead")
        train, tune = raw.get("train"), raw.get("tune")
        if not isinstance(train, dict):
            return raw
        space = tune.get("space") if isinstance(tune, dict) else None
        space = space if isinstance(space, dict) else {}
        tuned = [name for name, value in train.items() if value == TUNED]
        resolved = dict(train)
        for name in tuned:
            dimension = space.get(name)
            if not isinstance(dimension, dict):
                raise ValueError(
                    f"train.{name}: `tuned` needs a search range tune.space.{name} (or set a value to fix it)"
                )
            # A missing start is reported after the search space itself is validated (_check_tuned_starts).
            start = dimension.get("start")
            resolved[name] = TrainParams.model_fields[name].default if start is None else start
        return {**raw, "train": resolved, "tuned_fields": tuple(tuned)}

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        if not value:
            raise ValueError("define at least one model, e.g. model1: {classes: [A, B]}")
        for name in value:
            if not MODEL_NAME.match(name):
                raise ValueError(f"model name {name!r} must start with a letter and use letters, digits, _ or -")
            if name in DVC_RUN_CACHE_IGNORED:
                raise ValueError(f"model name {name!r} is ignored by DVC's run cache; choose another name")
        return value

    @model_validator(mode="after")
    def _check_tuned_starts(self) -> Params:
        for name in self.tuned_fields:
            if self.tune.space[name].start is None:
                raise ValueError(
                    f"tune.space.{name}.start: missing; train.{name} is `tuned`, so give the value used "
                    "untuned and tried first"
                )
        return self

    @model_validator(mode="after")
    def _check_patch_geometry(self) -> Params:
        if self.patches.stride > self.patches.patch_size:
            raise ValueError("patches.stride must not exceed patches.patch_size (patches would skip pixels)")
        smallest = self.patches.patch_size >> self.train.conv_blocks
        if smallest < 1:
            raise ValueError(
                f"train.conv_blocks: {self.train.conv_blocks} pooling blocks shrink a "
                f"{self.patches.patch_size}px patch below 1 pixel"
            )
        conv_space = self.search().space.get("conv_blocks")
        if conv_space is not None:
            highest = max(conv_space.choices) if isinstance(conv_space, Choices) else conv_space.high
            if self.patches.patch_size >> int(highest) < 1:
                raise ValueError(
                    f"tune.space.conv_blocks: {highest} pooling blocks shrink a "
                    f"{self.patches.patch_size}px patch below 1 pixel"
                )
        return self

    def search(self) -> TuneParams:
        """tune with its space cut to the tuned fields: what the study searches.

        Fields of tune.space whose train value is fixed are not searched; their fixed value is part of the
        study's identity, like every other train value.
        """
        space = {name: dimension for name, dimension in self.tune.space.items() if name in self.tuned_fields}
        return self.tune.model_copy(update={"space": space})

    def model(self, name: str) -> ModelSpec:
        """The spec of one model, or a ParamsError naming the known ones."""
        if name not in self.models:
            raise ParamsError(f"models.{name}: no such model in params.yaml (known: {', '.join(self.models)})")
        return self.models[name]


def _location(error: dict[str, Any]) -> str:
    parts = [str(part) for part in error["loc"] if not str(part).startswith(("function-after", "tagged-union"))]
    # Pydantic names union members in the location (e.g. "Choices"); they mean nothing to a user.
    # The discriminator tag of a search dimension (tune.space.<name>.<tag>) means nothing to a user.
    parts = [
        part for i, part in enumerate(parts) if not (i >= 3 and parts[i - 2] == "space" and part in DIMENSION_TAGS)
    ]
    return ".".join(parts) or "(top level)"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a raw mapping into Params, or raise ParamsError with one line naming the key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (base, patches, split, models, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = _location(first)
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against params.yaml's documented keys)"
        given = first.get("input")
        shown = (
            "" if first["type"] in {"missing", "extra_forbidden"} or isinstance(given, dict) else f" (got {given!r})"
        )
        where = "" if key == "(top level)" and "." in message.split(":")[0] else f"{key}: "  # message names it
        raise ParamsError(f"{source}: {where}{message}{shown}") from None


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ParamsError(f"{path}: cannot read params ({error.strerror}); run from the repo root") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return parse_params(raw, str(path))


def check_models_have_images(params: Params, labels: set[str]) -> None:
    """Every class a model names must have at least one image."""
    for name, spec in params.models.items():
        missing = [label for label in spec.classes if label not in labels]
        if missing:
            raise ParamsError(
                f"params.yaml: models.{name}.classes: no images for class {', '.join(missing)} in data/raw "
                f"(found classes: {', '.join(sorted(labels)) or 'none'})"
            )


def effective_train_params(params: Params, tuned_file: Path | None) -> tuple[TrainParams, dict[str, Any]]:
    """The train values a fit uses: params.train, with the study's best value for each field set to `tuned`.

    Only fields set to `tuned` are taken from best_params.json; a field fixed in params.yaml keeps its value.
    With train.use_tuned false or no tuned field, the tuned fields keep their tune.space start values; so they
    do, with a line saying so, when no best-params file is given (a stage run by hand without --tuned; dvc.yaml
    always passes it). The run's params record the values used either way.
    """
    train = params.train
    if not train.use_tuned or not params.tuned_fields:
        return train, {}
    if tuned_file is None:
        from pathcnn.console import say

        say(f"no --tuned file given: {', '.join(params.tuned_fields)} take their tune.space start values")
        return train, {}
    if not tuned_file.exists():
        raise ParamsError(f"{tuned_file}: best params of the tune stage not found; run `dvc repro` (it runs tune)")
    tuned = json.loads(tuned_file.read_text())
    best = tuned.get("params", {})
    missing = [name for name in params.tuned_fields if name not in best]
    if missing:
        raise ParamsError(
            f"{tuned_file}: no tuned value for {', '.join(missing)} (the study searched other fields); "
            "re-run the tune stage"
        )
    try:
        used = TrainParams.model_validate({**train.model_dump(), **{name: best[name] for name in params.tuned_fields}})
    except ValueError as error:
        raise ParamsError(
            f"{tuned_file}: best params are not valid train params ({error}); re-run the tune stage"
        ) from None
    return used, tuned
