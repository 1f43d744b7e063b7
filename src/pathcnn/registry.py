"""The MLflow model registry: one registered model per pipeline model, and who holds the `champion` alias.

A new version takes `champion` only when its test accuracy beats both its own majority baseline and the
current champion's test accuracy (read from the champion's training run), and only from the workspace's own
`train`: a queued or temporary DVC experiment registers its version but leaves the alias where it is. The
rule is a pure function; the rest reads and writes the registry of the store `tracking.tracking_uri()` names.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pathcnn import tracking
from pathcnn.artifacts import read_json
from pathcnn.errors import PathcnnError

CHAMPION = "champion"
TRAINING_STATS = "training_stats.json"  # artifact of the train run that predict compares images with
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]+)(?:/.*)?$")


@dataclass(frozen=True)
class Decision:
    """What the registry did with a newly registered version, and the figures behind it."""

    name: str
    version: str
    promoted: bool
    reason: str
    test_accuracy: float
    baseline_accuracy: float
    champion_version: str | None  # the champion before this decision
    champion_test_accuracy: float | None

    def summary(self) -> str:
        """One line for the terminal and DVC logs."""
        verdict = f"is now {CHAMPION}" if self.promoted else f"not {CHAMPION}"
        return f"registry: {self.name} version {self.version} {verdict} ({self.reason})"


@dataclass(frozen=True)
class ModelRun:
    """The training run behind a model URI: its params (classes, patches.*) and its training statistics."""

    run_id: str
    params: dict[str, str]
    training_stats: dict[str, Any] | None
    version: str | None = None  # the registered version a models:/ URI resolved to (None for runs:/)


def registered_name(prefix: str, model: str) -> str:
    """Registered model name of a pipeline model, e.g. pathcnn-model1 (same word as its experiment)."""
    return tracking.experiment_name(prefix, model)


def should_promote(
    test_accuracy: float, baseline_accuracy: float, champion_test_accuracy: float | None
) -> tuple[bool, str]:
    """The champion rule: strictly beat the majority baseline and the current champion on the test set."""
    if not test_accuracy > baseline_accuracy:
        return False, f"test accuracy {test_accuracy:.3f} does not beat the majority baseline {baseline_accuracy:.3f}"
    if champion_test_accuracy is None:
        return True, f"test accuracy {test_accuracy:.3f} beats the baseline {baseline_accuracy:.3f}; no champion yet"
    if not test_accuracy > champion_test_accuracy:
        return False, f"test accuracy {test_accuracy:.3f} does not beat the champion's {champion_test_accuracy:.3f}"
    return True, (
        f"test accuracy {test_accuracy:.3f} beats the baseline {baseline_accuracy:.3f} "
        f"and the champion's {champion_test_accuracy:.3f}"
    )


def _client() -> MlflowClient:
    return MlflowClient(tracking.tracking_uri())


def current_champion(name: str, client: MlflowClient | None = None) -> tuple[str, float | None] | None:
    """(version, test accuracy of its training run) of the champion of `name`, or None when there is none."""
    client = client or _client()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    accuracy = None
    if version.run_id:
        try:
            accuracy = client.get_run(version.run_id).data.metrics.get("test_accuracy")
        except MlflowException:
            accuracy = None
    return str(version.version), accuracy


def promote_if_better(
    name: str,
    version: str | int,
    metrics: dict[str, Any],
    client: MlflowClient | None = None,
    experiment: str | None = None,
) -> Decision:
    """Apply the champion rule to a registered version and record the decision on the version and the active run.

    experiment names the queued or temporary DVC experiment the version comes from; it is never promoted.
    """
    client = client or _client()
    version = str(version)
    champion = current_champion(name, client)
    champion_version, champion_accuracy = champion if champion else (None, None)
    test_accuracy, baseline = float(metrics["test_accuracy"]), float(metrics["baseline_accuracy"])
    if experiment is not None:
        promoted = False
        reason = (
            f"DVC experiment {experiment} ran in a temporary workspace: only the workspace's own train moves "
            f"{CHAMPION} (`dvc exp apply {experiment}`, then `dvc repro -f -s train@<model>`)"
        )
    elif champion is not None and champion_accuracy is None:
        # A champion whose run lost its score cannot be compared; the baseline alone decides.
        promoted, reason = should_promote(test_accuracy, baseline, None)
        reason += f" (champion version {champion_version} has no test_accuracy)"
    else:
        promoted, reason = should_promote(test_accuracy, baseline, champion_accuracy)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    decision = Decision(name, version, promoted, reason, test_accuracy, baseline, champion_version, champion_accuracy)
    tags = {
        "registry.model": name,
        "registry.version": version,
        "registry.champion": "promoted" if promoted else "not promoted",
        "registry.reason": reason,
        "registry.previous_champion": champion_version or "none",
    }
    for key in ("registry.champion", "registry.reason", "registry.previous_champion"):
        client.set_model_version_tag(name, version, key, tags[key])
    if mlflow.active_run() is not None:
        mlflow.set_tags(tags)
        if champion_accuracy is not None:
            tracking.log_metrics({"previous_champion_test_accuracy": champion_accuracy})
    return decision


def model_run(model_uri: str, client: MlflowClient | None = None) -> ModelRun:
    """The training run of models:/<name>@<alias>, models:/<name>/<version> or runs:/<run_id>/..."""
    client = client or _client()
    try:
        version_number = None
        if match := _MODELS_URI.match(model_uri):
            if match["alias"]:
                version = client.get_model_version_by_alias(match["name"], match["alias"])
            else:
                version = client.get_model_version(match["name"], match["version"])
            run_id, version_number = version.run_id, str(version.version)
        elif match := _RUNS_URI.match(model_uri):
            run_id = match["run_id"]
        else:
            raise PathcnnError(
                f"{model_uri}: unsupported model URI; use models:/<name>@<alias>, models:/<name>/<version> "
                "or runs:/<run_id>/model"
            )
        if not run_id:
            raise PathcnnError(f"{model_uri}: the model version has no training run, so its classes are unknown")
        run = client.get_run(run_id)
    except MlflowException as error:
        message = " ".join(str(error.message).split())[:300]
        raise PathcnnError(
            f"{model_uri}: not found in the MLflow store {tracking.tracking_uri()} ({message}); "
            "check the name and alias, or set MLFLOW_TRACKING_URI"
        ) from None
    return ModelRun(run_id, dict(run.data.params), _training_stats(run.info.artifact_uri), version_number)


def _training_stats(artifact_uri: str) -> dict[str, Any] | None:
    """The training statistics artifact of a run, or None when the run has none."""
    uri = f"{tracking.relocated_artifact_uri(artifact_uri).rstrip('/')}/{TRAINING_STATS}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
        except (MlflowException, OSError):
            return None
        return read_json(Path(path))
