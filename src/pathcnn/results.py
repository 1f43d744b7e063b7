"""The stages' results of one model as the significance and report stages read them, with one-line errors.

A missing, unreadable or outdated file stops the reading stage with one line naming it and `dvc repro`;
nothing is ever read as empty and shown as "not run".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pathcnn.errors import PathcnnError

STAGES = ("train", "baseline", "control", "crossval", "crossval-untuned", "nonsense", "familiarity")
WITH_PREDICTIONS = ("train", "baseline", "control", "crossval")  # the stages whose predictions are read
# Keys a stage's metrics.json must hold when its status is ok (files of an older format lack them).
HELD_OUT_KEYS = ("folds", "seeds", "cnn_mean_accuracy", "cnn_max_seed_range", "cnn_mean_seed_range")
REQUIRED_KEYS = {
    "train": ("test_accuracy", "train_accuracy", "val_accuracy", "train_val_gap", "baseline_accuracy"),
    "baseline": ("test_accuracy", "baseline_accuracy"),
    "control": ("test_accuracy", "chance_accuracy", "image_calls", "image_calls_correct", "image_p_value"),
    "crossval": (*HELD_OUT_KEYS, "features_mean_accuracy"),
    "crossval-untuned": HELD_OUT_KEYS,  # the same stage with --untuned; the features are crossval's to report
    "nonsense": ("classes", "seeds", "patch_split", "held_out"),
    "significance": ("stats", "comparison", "held_out_images", "bootstrap_resamples", "seed"),
    "familiarity": ("threshold", "false_alarm_rate", "false_alarm_rate_target", "transformations", "image_share"),
}
PREDICTION_COLUMNS = ("patch_id", "image_id", "label", "predicted")


@dataclass
class ModelResults:
    """What the stages left for one model: metrics, the predictions the figures need, the significance record."""

    name: str
    classes: tuple[str, ...]
    metrics: dict[str, dict[str, Any]]
    predictions: dict[str, pd.DataFrame]
    # The significance stage's record: intervals and p-values per prediction set, McNemar, bootstrap settings.
    significance: dict[str, Any] = field(default_factory=dict)
    # The study chose its values on held-out images of the train split (tune.objective held_out_*), i.e. on
    # the folds' test images: the tuned crossval figure is then optimistic. Set once, from params, at load.
    chosen_on_folds: bool = False

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Statistics per prediction set: train, baseline, control, crossval_cnn, crossval_features."""
        return self.significance.get("stats", {})

    @property
    def comparison(self) -> dict[str, Any]:
        """McNemar's test of the CNN against the features on the patch split."""
        return self.significance.get("comparison", {})

    @property
    def held_out_images(self) -> int:
        return int(self.significance.get("held_out_images", 0))

    @property
    def crossval_ok(self) -> bool:
        return self.metrics["crossval"].get("status") == "ok"

    @property
    def untuned_ok(self) -> bool:
        return self.metrics["crossval-untuned"].get("status") == "ok"

    @property
    def nonsense_ok(self) -> bool:
        return self.metrics["nonsense"].get("status") == "ok"

    @property
    def nonsense_held_out_ok(self) -> bool:
        return self.nonsense_ok and self.metrics["nonsense"]["held_out"].get("status") == "ok"


def input_error(path: Path, problem: str) -> PathcnnError:
    """The one-line error for a stage output that cannot be used."""
    return PathcnnError(f"{path}: {problem}; run `dvc repro` (it needs every earlier stage's results)")


def read_metrics(path: Path, stage: str) -> dict[str, Any]:
    """A stage's metrics.json; status not_possible needs only its reason."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise input_error(path, "missing") from None
    except (OSError, ValueError) as error:
        raise input_error(path, f"unreadable ({str(error).splitlines()[0]})") from None
    if not isinstance(record, dict):
        raise input_error(path, "not a JSON object")
    keys = REQUIRED_KEYS[stage] if record.get("status", "ok") == "ok" else ("reason",)
    absent = [key for key in keys if key not in record]
    if absent:
        raise input_error(path, f"lacks {', '.join(absent)} (written by an older version?)")
    return record


def read_predictions(path: Path) -> pd.DataFrame:
    """A stage's predictions.csv, with at least one row and the columns that are read."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise input_error(path, "missing") from None
    except (OSError, ValueError) as error:
        raise input_error(path, f"unreadable ({str(error).splitlines()[0]})") from None
    absent = [column for column in PREDICTION_COLUMNS if column not in frame]
    if absent or frame.empty:
        raise input_error(path, f"lacks columns {', '.join(absent)}" if absent else "has no rows")
    return frame


def read_model(
    results_dir: Path, name: str, stages: tuple[str, ...] = STAGES
) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame]]:
    """The stages' metrics of one model and their predictions where they have some; PathcnnError if unusable."""
    metrics = {stage: read_metrics(results_dir / stage / name / "metrics.json", stage) for stage in stages}
    predictions = {
        stage: read_predictions(results_dir / stage / name / "predictions.csv")
        for stage in stages
        if stage in WITH_PREDICTIONS and metrics[stage].get("status", "ok") == "ok"
    }
    return metrics, predictions


def load_results(results_dir: Path, name: str, classes: tuple[str, ...], chosen_on_folds: bool) -> ModelResults:
    """Every stage's results of one model and its significance record, as the report reads them."""
    metrics, predictions = read_model(results_dir, name)
    significance = read_metrics(results_dir / "significance" / name / "metrics.json", "significance")
    return ModelResults(name, classes, metrics, predictions, significance, chosen_on_folds)
