"""MLflow in one place: the store, experiment names, run tags, run states and what gets logged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient

from pathcnn.metrics import finite_or_none
from pathcnn.processes import process_alive

DEFAULT_STORE = "mlflow.db"
HOST_TAG, PID_TAG = "pathcnn.host", "pathcnn.pid"


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so runs and files are closed like on Ctrl+C."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store mlflow.db in the working directory (the repo root)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / DEFAULT_STORE).as_posix()}"


def experiment_name(prefix: str, model: str) -> str:
    """One MLflow experiment per model, so its runs compare side by side."""
    return f"{prefix}-{model}"


def git_commit() -> str:
    """The checked-out commit, or 'unknown' outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def data_version(dvc_file: Path = Path("data/raw.dvc")) -> str:
    """The DVC hash of data/raw, or 'untracked'."""
    try:
        outs = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["outs"]
        return str(outs[0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "untracked"


def provenance_tags() -> dict[str, str]:
    """Tags every run carries: code and data versions, and who runs it (to spot runs of dead processes)."""
    return {
        "git_commit": git_commit(),
        "data_raw_dvc_md5": data_version(),
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
    }


def mark_stale_runs_failed(client: MlflowClient | None = None) -> list[str]:
    """Runs left RUNNING by a process of this host that no longer exists are set FAILED; returns their ids."""
    client = client or MlflowClient(tracking_uri())
    host = socket.gethostname()
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    if not experiment_ids:
        return []
    stale = []
    for run in client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) == host and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="FAILED")
            stale.append(run.info.run_id)
    return stale


def setup() -> None:
    """Point MLflow at the project's store and close runs abandoned by killed processes."""
    mlflow.set_tracking_uri(tracking_uri())
    mark_stale_runs_failed()


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def tracked_run(
    experiment: str,
    run_name: str,
    kind: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED on success, FAILED on an exception and KILLED on Ctrl+C or SIGTERM.

    run_id resumes an existing run (its tags are updated), as a study's parent run is on every tune run.
    """
    setup()
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    all_tags = {**provenance_tags(), "kind": kind, **(tags or {})}
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    run = mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=run_name,
        tags=all_tags,
        parent_run_id=parent_run_id,
        nested=parent_run_id is not None,
    )
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def create_run(experiment: str, run_name: str, kind: str, tags: Mapping[str, str] | None = None) -> str:
    """Create a RUNNING run without making it active (a study's parent run, shared by worker processes)."""
    setup()
    client = MlflowClient(tracking_uri())
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    all_tags = {**provenance_tags(), "kind": kind, "mlflow.runName": run_name, **(tags or {})}
    return client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id


def run_exists(run_id: str) -> bool:
    """Whether the store holds a (not deleted) run with this id."""
    try:
        return MlflowClient(tracking_uri()).get_run(run_id).info.lifecycle_stage != "deleted"
    except mlflow.exceptions.MlflowException:
        return False


def close_run(run_id: str, tags: Mapping[str, str], status: str = "FAILED") -> None:
    """Set tags on a run that may belong to another (possibly dead) process; end it with status if still RUNNING."""
    client = MlflowClient(tracking_uri())
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status=status)


def set_tags(tags: Mapping[str, str]) -> None:
    """Tags on the active run (unlike params, tags may change: a trial's state, a study's best params)."""
    mlflow.set_tags(dict(tags))


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Log a (nested) mapping of params with dotted names; enums by value."""
    flat: dict[str, Any] = {}

    def visit(value: Any, name: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(item, f"{name}.{key}" if name else str(key))
        else:
            flat[name] = getattr(value, "value", value)

    visit(params, prefix)
    mlflow.log_params({key: str(value)[:6000] for key, value in flat.items()})


def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    """Log finite numeric metrics (undefined ones, such as AUC on one class, are left out)."""
    clean = {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and finite_or_none(float(v)) is not None
    }
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_history(history: Mapping[str, list[float]]) -> None:
    """Per-epoch metrics, step = epoch number (1-based)."""
    for epoch in range(len(next(iter(history.values()), []))):
        log_metrics({key: values[epoch] for key, values in history.items()}, step=epoch + 1)


def epoch_logger() -> Any:
    """A Keras callback logging every epoch's metrics to the active run as it ends (live curves in the UI)."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            log_metrics(dict(logs or {}), step=epoch + 1)

    return EpochLogger()


def close_abandoned_runs() -> list[str]:
    """At the start of any stage: mark FAILED the runs that hard-killed processes left RUNNING.

    Skipped when the default SQLite store does not exist yet, so commands never create it needlessly.
    """
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    return mark_stale_runs_failed(MlflowClient(uri))


def log_artifact(path: Path, folder: str | None = None) -> None:
    """Attach a file (plot, CSV, JSON) to the active run."""
    mlflow.log_artifact(str(path), artifact_path=folder)


class _KerasFlavor:
    """mlflow.keras with its model folder created before the input example is written into it.

    MLflow 3.17's keras save_model writes input_example.json before creating the folder, so
    log_model(..., input_example=...) fails with FileNotFoundError; this shim creates it first.
    """

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> Any:
        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        return mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(model: Any, input_example: Any, registered_name: str | None = None) -> Any:
    """Log a Keras model with its signature (inferred from the example) under the name 'model'."""
    from mlflow.models import Model, infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=_KerasFlavor,
        model=model,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_name,
    )


def load_keras_model(model_uri: str) -> Any:
    """A Keras model from the store: models:/<name>@<alias>, models:/<name>/<version> or runs:/<run_id>/model."""
    import mlflow.keras

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.keras.load_model(model_uri)
