"""MLflow in one place: the store, experiment names, run tags, run states and what gets logged."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient

from pathcnn.artifacts import read_json
from pathcnn.metrics import finite_or_none
from pathcnn.processes import process_alive

DEFAULT_STORE = "mlflow.db"
# Per-epoch curves are logged under this prefix, so a run's headline metrics (the values in the stage's
# metrics.json) are never shadowed: MLflow's UI and search_runs show a metric's latest step.
EPOCH_PREFIX = "epoch/"
HOST_TAG, PID_TAG = "pathcnn.host", "pathcnn.pid"
DVC_EXPERIMENT_TAG, DVC_BASELINE_TAG, DVC_WORKSPACE_TAG = "dvc_exp_name", "dvc_baseline_rev", "dvc_workspace"


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so runs and files are closed like on Ctrl+C."""


def project_root() -> Path:
    """The repository the user works in: DVC_ROOT when DVC runs the stage, else the working directory.

    `dvc exp run --queue/--temp` runs stages in a temporary copy (.dvc/tmp/exps/...) that DVC deletes
    afterwards; for those, DVC sets DVC_ROOT to the parent repository, so runs and trials land there.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def in_temporary_workspace() -> bool:
    """Whether this process runs in DVC's temporary copy of the repository (a queued or --temp experiment)."""
    return Path.cwd().resolve() != project_root()


def temporary_experiment() -> str | None:
    """The name of the queued or --temp DVC experiment this process runs in, None in the workspace."""
    return (os.environ.get("DVC_EXP_NAME") or "unnamed") if in_temporary_workspace() else None


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store mlflow.db at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(project_root() / DEFAULT_STORE).as_posix()}"


def local_store_path() -> Path | None:
    """The file of the local SQLite store in use, None for a server or another database."""
    uri = tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _local_store_folder() -> Path | None:
    """The folder of a local SQLite store (its artifacts go to <folder>/mlruns), None for a server or other DB."""
    database = local_store_path()
    return None if database is None else database.resolve().parent


def experiment_id_of(name: str) -> str:
    """The id of an experiment, created if missing and made active.

    MLflow places a new experiment's artifacts in ./mlruns of the working directory, which for a queued
    experiment is DVC's temporary copy; with a local store they go beside the store instead.
    """
    folder = _local_store_folder()
    if folder is None:
        return mlflow.set_experiment(name).experiment_id
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=(folder / "mlruns" / name).as_uri())
        except mlflow.exceptions.MlflowException:
            found = client.get_experiment_by_name(name)  # created meanwhile by a concurrent process?
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
        _rehome_experiment(experiment_id, found.artifact_location, folder)
    return mlflow.set_experiment(experiment_id=experiment_id).experiment_id


def _rehome_experiment(experiment_id: str, location: str, folder: Path) -> None:
    """Point an experiment of a moved or copied local store at the store's own mlruns folder.

    MLflow keeps an absolute artifact location per experiment and has no API to change it, so after the
    repository moved, new runs would write into the old folder (re-creating it) or into the original clone.
    This updates that one column of the project's own SQLite file; earlier runs are read through
    relocated_artifact_uri.
    """
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    if not is_local_uri(location):
        return
    path = Path(local_file_uri_to_path(location))
    home = folder / "mlruns"
    if path.parent == home:
        return
    database = local_store_path()
    with closing(sqlite3.connect(database, timeout=60)) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            ((home / path.name).as_uri(), int(experiment_id)),
        )


def relocated_artifact_uri(uri: str) -> str:
    """A local artifact URI re-rooted onto this store's mlruns folder when the repository has moved.

    A local store records absolute artifact paths; after the folder is moved or renamed they point to
    nothing, while the same files sit under the store's own mlruns. Other URIs are returned unchanged.
    """
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    folder = _local_store_folder()
    if folder is None or not is_local_uri(uri):
        return uri
    path = local_file_uri_to_path(uri)
    if Path(path).exists() or "/mlruns/" not in Path(path).as_posix():
        return uri
    moved = folder / "mlruns" / Path(path).as_posix().rsplit("/mlruns/", 1)[1]
    return str(moved) if moved.exists() else uri


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


def dvc_experiment_tags() -> dict[str, str]:
    """The DVC experiment a run belongs to (DVC sets these for `dvc exp run`), so `dvc exp show` leads to it."""
    tags = {
        DVC_EXPERIMENT_TAG: os.environ.get("DVC_EXP_NAME", ""),
        DVC_BASELINE_TAG: os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    tags = {key: value for key, value in tags.items() if value}
    if tags:
        tags[DVC_WORKSPACE_TAG] = "temporary" if in_temporary_workspace() else "workspace"
    return tags


def provenance_tags() -> dict[str, str]:
    """Tags every run carries: code and data versions, the DVC experiment, and who runs it.

    The host and pid spot runs of dead processes.
    """
    return {
        "git_commit": git_commit(),
        "data_raw_dvc_md5": data_version(),
        **dvc_experiment_tags(),
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
    experiment_id = experiment_id_of(experiment)
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
    experiment_id = experiment_id_of(experiment)
    all_tags = {**provenance_tags(), "kind": kind, "mlflow.runName": run_name, **(tags or {})}
    return client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id


def run_exists(run_id: str, experiment: str | None = None) -> bool:
    """Whether the store holds a (not deleted) run with this id, in the named experiment if one is given."""
    client = MlflowClient(tracking_uri())
    try:
        info = client.get_run(run_id).info
        if info.lifecycle_stage == "deleted":
            return False
        return experiment is None or client.get_experiment(info.experiment_id).name == experiment
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


def flat_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested mapping under dotted names, as `dvc metrics show` names them.

    Booleans become 1.0/0.0; strings, None and non-finite numbers are left out (MLflow metrics are numbers).
    """
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_numbers(value, f"{name}."))
        elif isinstance(value, (bool, int, float)) and finite_or_none(float(value)) is not None:
            flat[name] = float(value)
    return flat


def log_metrics_file(path: Path) -> dict[str, float]:
    """Log the numbers of a stage's metrics JSON, read back from the file: the DVC record and MLflow agree.

    Also attaches the file itself; returns what was logged.
    """
    numbers = flat_numbers(read_json(path))
    if numbers:
        mlflow.log_metrics(numbers)
    log_artifact(path)
    return numbers


def epoch_metric_name(name: str) -> str:
    """The MLflow name of a per-epoch curve: epoch/<name>, apart from the headline metric <name>."""
    return f"{EPOCH_PREFIX}{name}"


def log_epoch(values: Mapping[str, float | None], epoch: int) -> None:
    """One epoch's values as curves (epoch/<name>), step = epoch number (1-based)."""
    log_metrics({epoch_metric_name(key): value for key, value in values.items()}, step=epoch)


def log_history(history: Mapping[str, list[float]]) -> None:
    """Per-epoch curves (epoch/<name>), step = epoch number (1-based)."""
    for epoch in range(len(next(iter(history.values()), []))):
        log_epoch({key: values[epoch] for key, values in history.items() if epoch < len(values)}, epoch + 1)


def epoch_logger() -> Any:
    """A Keras callback logging every epoch's metrics as curves (epoch/<name>) as it ends (live in the UI)."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            log_epoch(dict(logs or {}), epoch + 1)

    return EpochLogger()


def close_abandoned_runs() -> list[str]:
    """At the start of any stage: mark FAILED the runs that hard-killed processes left RUNNING.

    Skipped when the default SQLite store does not exist yet, so commands never create it needlessly.
    """
    database = local_store_path()
    if database is not None and not database.exists():
        return []
    return mark_stale_runs_failed(MlflowClient(tracking_uri()))


def describe_experiment(experiment: str, model: str, classes: tuple[str, ...]) -> None:
    """The experiment's description in the MLflow UI: which model, which classes, what its runs are."""
    text = (
        f"{model}: {' vs '.join(classes)}. Runs: `train` (the final CNN on the 90:10 patch split), `study` with "
        "one nested run per Optuna `trial`, `baseline` (colour/texture features), `control` (shuffled labels), "
        "`crossval` (the study's values) and `crossval-untuned` (tune.space start values), each with a nested run "
        "per held-out-image fold and seed, `nonsense` (classes that follow image identity) with a nested run per "
        "fit. Headline metrics equal the stage's results/<stage>/<model>/metrics.json; per-epoch curves are named "
        "epoch/<metric>."
    )
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is not None and found.tags.get("mlflow.note.content") != text:
        client.set_experiment_tag(found.experiment_id, "mlflow.note.content", text)


def log_split_inputs(split: Any, split_file: Path, model: str) -> None:
    """The run's data as MLflow datasets: one per split part, named <model>-<part>, context = the part.

    The digest is the split file's MD5, which is how DVC identifies that file's version.
    """
    import hashlib

    import mlflow.data

    digest = hashlib.md5(Path(split_file).read_bytes()).hexdigest()
    for part in ("train", "val", "test"):
        rows = split[split["split"] == part][["patch_id", "image_id", "label"]].reset_index(drop=True)
        if len(rows):
            with warnings.catch_warnings():  # a local path matches two equivalent local source types; either is right
                warnings.filterwarnings("ignore", "The specified dataset source can be interpreted", UserWarning)
                dataset = mlflow.data.from_pandas(
                    rows, source=Path(split_file).as_posix(), targets="label", name=f"{model}-{part}", digest=digest
                )
            mlflow.log_input(dataset, context=part)


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


def log_keras_model(
    model: Any, input_example: Any, registered_name: str | None = None, description: str | None = None
) -> Any:
    """Log a Keras model under the name 'model', its signature inferred from the example as given.

    The example is a batch of stored patches (uint8), so the signature states the input the model takes
    and MLflow's own clients (mlflow.pyfunc, `mlflow models serve`) refuse other input instead of
    predicting nonsense. The description (the input contract) goes on the registered version.
    """
    from mlflow.models import Model, infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=_KerasFlavor,
        model=model,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_name,
        metadata={"input_contract": description} if description else None,
    )
    if registered_name and description and info.registered_model_version is not None:
        MlflowClient(tracking_uri()).update_model_version(
            registered_name, str(info.registered_model_version), description=description
        )
    return info


def load_keras_model(model_uri: str) -> Any:
    """A Keras model from the store: models:/<name>@<alias>, models:/<name>/<version> or runs:/<run_id>/model."""
    import mlflow.keras
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    mlflow.set_tracking_uri(tracking_uri())
    if ModelsArtifactRepository.is_models_uri(model_uri):
        location = ModelsArtifactRepository.get_underlying_uri(model_uri)
    elif RunsArtifactRepository.is_runs_uri(model_uri):
        location = RunsArtifactRepository.get_underlying_uri(model_uri)
    else:
        location = model_uri
    return mlflow.keras.load_model(relocated_artifact_uri(location))
