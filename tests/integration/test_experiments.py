"""`dvc exp run -S ...` variants: the value given is the value fitted, logged and shown."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from mlflow import MlflowClient

from tests.conftest import commit_all, mlflow_uri, run_command

pytestmark = pytest.mark.slow


def fitted_dropout(model_file: Path) -> float:
    """The rate of the Dropout layers of a saved model (both use train.dropout)."""
    model = keras.models.load_model(model_file)
    rates = {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert len(rates) == 1, rates
    return float(rates.pop())


def shown_params(root: Path, experiment: str) -> dict:
    """The params `dvc exp show` lists for one experiment."""
    shown = json.loads(run_command(["dvc", "exp", "show", "--json"], root).stdout)
    for baseline in shown:
        for item in baseline.get("experiments") or []:
            for revision in item.get("revs") or []:
                if revision.get("name") == experiment:
                    return revision["data"]["params"]["params.yaml"]["data"]
    raise AssertionError(f"experiment {experiment} not in dvc exp show")


def test_an_explicit_train_value_is_fitted_logged_and_shown(repo_copy: Path) -> None:
    commit_all(repo_copy)
    client = MlflowClient(mlflow_uri(repo_copy))
    fitted = {}
    for dropout in (0.1, 0.4):
        name = f"dropout-{int(dropout * 10)}"
        run_command(
            ["dvc", "exp", "run", "-n", name, "summary@model1", "-S", f"train.dropout={dropout}"],
            repo_copy,
            timeout=900,
        )
        shown = shown_params(repo_copy, name)
        assert shown["train"]["dropout"] == dropout
        fitted[dropout] = fitted_dropout(repo_copy / "models" / "model1.keras")
        assert fitted[dropout] == pytest.approx(dropout)
        experiment = client.get_experiment_by_name("pathcnn-model1")
        latest = client.search_runs(
            [experiment.experiment_id], "tags.kind = 'train'", order_by=["attributes.start_time DESC"], max_results=1
        )[0]
        assert float(latest.data.params["train.dropout"]) == pytest.approx(dropout)
        assert "dropout" not in latest.data.tags["tuned_fields"].split(",")
        best = json.loads((repo_copy / "results" / "tune" / "model1" / "best_params.json").read_text())
        assert "dropout" not in best["params"]  # a fixed field is not searched
    assert fitted[0.1] != fitted[0.4]
    # make compare: one readable line per experiment and model, with the value each changed param had.
    table = run_command(["pathcnn", "compare"], repo_copy).stdout.splitlines()
    assert max(len(line) for line in table) <= 160, table
    assert table[0].split()[:2] == ["experiment", "train.dropout"]
    rows = {(line.split()[0], line.split()[2]): line.split() for line in table[2:]}
    assert rows[("dropout-1", "model1")][1] == "0.1" and rows[("dropout-4", "model1")][1] == "0.4"
    summary = json.loads((repo_copy / "results" / "summary" / "model1.json").read_text())
    test_column = table[0].split().index("test")
    assert rows[("workspace", "model1")][test_column] == f"{summary['test']:.3f}"


def test_a_tuned_field_logs_the_study_value_it_used(repo_copy: Path) -> None:
    run_command(["dvc", "repro", "train@model1"], repo_copy, timeout=900)
    lock = (repo_copy / "dvc.lock").read_text()
    # Same weights, same bytes: a forced re-run leaves dvc.lock (the model's md5) as it was.
    run_command(["dvc", "repro", "-f", "-s", "train@model1"], repo_copy, timeout=900)
    assert (repo_copy / "dvc.lock").read_text() == lock
    best = json.loads((repo_copy / "results" / "tune" / "model1" / "best_params.json").read_text())
    assert fitted_dropout(repo_copy / "models" / "model1.keras") == pytest.approx(best["params"]["dropout"])
    client = MlflowClient(mlflow_uri(repo_copy))
    experiment = client.get_experiment_by_name("pathcnn-model1")
    run = client.search_runs([experiment.experiment_id], "tags.kind = 'train'")[0]
    assert float(run.data.params["train.dropout"]) == pytest.approx(best["params"]["dropout"])
    assert "dropout" in run.data.tags["tuned_fields"].split(",")
