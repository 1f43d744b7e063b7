"""Where runs land: the project's store (also from DVC's temporary experiment copies) and portable artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pathcnn import tracking


@pytest.fixture
def default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with no MLFLOW_TRACKING_URI set: the default store mlflow.db at its root."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.chdir(project)
    return project


def log_one_run(experiment: str, text: str) -> mlflow.entities.Run:
    with tracking.tracked_run(experiment, "r", "test"):
        mlflow.log_text(text, "note.txt")
        run_id = mlflow.active_run().info.run_id
    return MlflowClient(tracking.tracking_uri()).get_run(run_id)


def test_a_temporary_experiment_copy_logs_to_the_parent_repository(
    default_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(default_store))
    monkeypatch.setenv("DVC_EXP_NAME", "dropout-1")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    assert tracking.tracking_uri() == f"sqlite:///{(default_store / 'mlflow.db').as_posix()}"
    assert tracking.in_temporary_workspace() and tracking.temporary_experiment() == "dropout-1"
    run = log_one_run("pathcnn-model1", "queued")
    assert run.data.tags["dvc_exp_name"] == "dropout-1"
    assert run.data.tags["dvc_baseline_rev"] == "abc123"
    assert run.data.tags["dvc_workspace"] == "temporary"
    # The artifacts of an experiment first created from the copy live beside the store, not in the copy.
    artifact = Path(mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/note.txt", dst_path=str(tmp_path)))
    assert artifact.read_text() == "queued"
    assert run.info.artifact_uri.startswith((default_store / "mlruns").as_uri())
    assert not (copy / "mlruns").exists() and not (copy / "mlflow.db").exists()


def test_the_workspace_is_not_a_temporary_experiment(default_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", str(default_store))
    monkeypatch.setenv("DVC_EXP_NAME", "in-workspace")
    assert not tracking.in_temporary_workspace() and tracking.temporary_experiment() is None
    assert tracking.dvc_experiment_tags()["dvc_workspace"] == "workspace"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.dvc_experiment_tags() == {}  # a plain dvc repro is no experiment


def test_runs_stay_readable_and_new_runs_write_home_after_the_store_moves(
    default_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = log_one_run("pathcnn-model1", "before")
    moved = tmp_path / "renamed"
    shutil.move(default_store, moved)
    monkeypatch.chdir(moved)
    # A new process in the moved folder: mlflow.set_tracking_uri exported the old store's URI to this one.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    old_uri = f"{before.info.artifact_uri}/note.txt"
    assert not Path(old_uri.removeprefix("file://")).exists()
    relocated = tracking.relocated_artifact_uri(old_uri)
    assert Path(relocated).read_text() == "before"
    assert Path(relocated).is_relative_to(moved)
    after = log_one_run("pathcnn-model1", "after")
    assert after.info.artifact_uri.startswith((moved / "mlruns").as_uri())
    assert not default_store.exists()  # nothing re-created the old folder
    # URIs that exist, or are not local, are left alone.
    assert tracking.relocated_artifact_uri(after.info.artifact_uri) == after.info.artifact_uri
    assert tracking.relocated_artifact_uri("mlflow-artifacts:/1/x/artifacts") == "mlflow-artifacts:/1/x/artifacts"
