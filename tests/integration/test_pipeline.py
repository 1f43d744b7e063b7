"""`dvc repro` of the whole pipeline in a temporary copy of the repo, on small crops of the seed images."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import mlflow_uri, prepare_repo_copy, run_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory, small_images: Path) -> Path:
    """Run dvc repro once in a repo copy; the tests below inspect what it left."""
    monkeypatch = pytest.MonkeyPatch()
    root = prepare_repo_copy(tmp_path_factory.mktemp("pipeline") / "repo", small_images)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri(root))
    run_command(["dvc", "repro"], root, timeout=1500)
    yield root
    monkeypatch.undo()


def test_dvc_lock_records_every_stage(reproduced: Path) -> None:
    lock = yaml.safe_load((reproduced / "dvc.lock").read_text())
    stages = set(lock["stages"])
    assert {"patches", "split", "train@model1", "train@model2"} <= stages
    status = run_command(["dvc", "status"], reproduced).stdout
    assert "changed" not in status


def test_metrics_files_hold_the_four_accuracies(reproduced: Path) -> None:
    for model in ("model1", "model2"):
        metrics = json.loads((reproduced / "results" / "train" / model / "metrics.json").read_text())
        for key in ("train_accuracy", "val_accuracy", "test_accuracy", "baseline_accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert sum(sum(row.values()) for row in metrics["confusion"].values()) == metrics["n_test"]
    shown = run_command(["dvc", "metrics", "show", "--json"], reproduced).stdout
    assert "model1" in shown and "model2" in shown and "test_accuracy" in shown


def test_mlflow_has_a_finished_run_per_model(reproduced: Path) -> None:
    client = MlflowClient(mlflow_uri(reproduced))
    for model in ("model1", "model2"):
        experiment = client.get_experiment_by_name(f"pathcnn-{model}")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'train'")
        assert len(runs) == 1
        run = runs[0]
        assert run.info.status == "FINISHED"
        for key in ("train_accuracy", "val_accuracy", "test_accuracy", "baseline_accuracy"):
            assert key in run.data.metrics
        assert run.data.tags["data_raw_dvc_md5"].endswith(".dir")
        assert len(run.data.tags["git_commit"]) == 40
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(history) >= 1
    assert mlflow.get_tracking_uri() is not None


def test_plots_render(reproduced: Path) -> None:
    result = run_command(["dvc", "plots", "show", "--json"], reproduced)
    assert "history.csv" in result.stdout and "confusion.csv" in result.stdout
