"""The tune stage on small crops of the seed images: studies end to end, resume, kills, parallel workers, MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from pathcnn import studies
from pathcnn.params import load_params
from tests.conftest import run_command

pytestmark = pytest.mark.slow

MODEL = "model1"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, small_images: Path) -> Path:
    """Patches and splits of the small images, cut once with the real stage functions."""
    from pathcnn.stages import patches, split
    from tests.conftest import shrink_params

    root = tmp_path_factory.mktemp("tune-data")
    params_file = root / "params.yaml"
    params = shrink_params(yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text()))
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    patches.run(small_images, root / "patches", root / "grids", params_file)
    split.run(root / "patches", root / "splits", params_file)
    return root


@pytest.fixture
def workspace(prepared: Path, tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with shrunk params; the study journal and mlflow.db are fresh per test."""
    monkeypatch.delenv(studies.STORAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((prepared / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def set_tune(workspace: Path, **values: object) -> None:
    """Change tune params of the workspace's params.yaml."""
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["tune"].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tune_arguments(workspace: Path, prepared: Path) -> list[str]:
    return [
        *("--model", MODEL, "--patches", str(prepared / "patches"), "--split", str(prepared / "splits" / "model1.csv")),
        *("--out", str(workspace / "out"), "--journal", str(workspace / "optuna.journal")),
        *("--params", str(workspace / "params.yaml")),
    ]


def run_tune(workspace: Path, prepared: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pathcnn.cli", "tune", *tune_arguments(workspace, prepared), *extra]
    return run_command(command, workspace, check=check, timeout=600)


def load_study(workspace: Path, prepared: Path, url: str | None = None) -> optuna.Study:
    params = load_params(workspace / "params.yaml")
    name = studies.study_name(
        MODEL, params.search(), params.train, params.base.seed, studies.file_digest(prepared / "splits" / "model1.csv")
    )
    storage = studies.open_storage(url or str(workspace / "optuna.journal"), params.tune.heartbeat_seconds)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("objective", ["val_loss", "held_out_accuracy"])
def test_two_trial_study_writes_outputs_and_nested_mlflow_runs(
    workspace: Path, prepared: Path, tracking_uri: str, objective: str
):
    set_tune(workspace, objective=objective)
    run_tune(workspace, prepared)
    best = json.loads((workspace / "out" / "best_params.json").read_text())
    assert set(best["params"]) == {"dropout", "filters"}
    assert best["study_name"].startswith(f"model1-{objective}-") and best["objective"] == objective
    assert best["n_complete"] + best["n_pruned"] == 2
    trials = pd.read_csv(workspace / "out" / "trials.csv")
    assert list(trials["number"]) == [0, 1]
    figures = ["train_accuracy", "val_accuracy", "train_val_gap"]
    if objective == "held_out_accuracy":  # trials.csv shows the held-out accuracy the value is made of
        figures.append("held_out_accuracy")
        complete = trials[trials["state"] == "COMPLETE"]
        assert list(complete["value"]) == pytest.approx(list(complete["held_out_accuracy"]), abs=1e-12)
    assert {"state", "value", "dropout", "filters", *figures} <= set(trials)
    for name in ("history.png", "importance.png"):
        assert (workspace / "out" / name).read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("pathcnn-model1")
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna_study"] == best["study_name"]
    assert parent.data.metrics["n_complete"] + parent.data.metrics["n_pruned"] == 2
    assert parent.data.tags["best_params.filters"] == str(best["params"]["filters"])
    children = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["trial_state"] in {"COMPLETE", "PRUNED"}
        assert child.data.params["trial_state"] == child.data.tags["trial_state"]
        assert child.info.run_name == f"model1 trial {child.data.tags['trial_number']}"
        # The headline metrics MLflow shows are the trial's values in trials.csv (and the dashboard's).
        row = trials.set_index("number").loc[int(child.data.tags["trial_number"])]
        for column in figures:
            assert child.data.metrics[column] == pytest.approx(row[column], abs=1e-12), column
        assert child.data.metrics[objective] == pytest.approx(row["value"], abs=1e-12)
        # Per-epoch curves live under epoch/<name>, apart from the headline values; a held-out trial's per fold.
        assert client.get_metric_history(child.info.run_id, f"epoch/objective_{objective}")
        curve = "epoch/val_accuracy" if objective == "val_loss" else "epoch/fold1_val_accuracy"
        assert client.get_metric_history(child.info.run_id, curve)
        assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 1
    study = load_study(workspace, prepared)
    assert study.metric_names == [objective] and study.user_attrs["classes"] == "A vs B"
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"best_params.json", "history.png", "importance.png", "trials.csv"} <= artifacts


def test_resume_keeps_finished_trials(workspace: Path, prepared: Path, tracking_uri: str):
    set_tune(workspace, n_trials=1)
    run_tune(workspace, prepared)
    first = load_study(workspace, prepared).trials[0]
    set_tune(workspace, n_trials=2)  # n_trials is not part of the study name: the same study continues
    run_tune(workspace, prepared)
    trials = load_study(workspace, prepared).trials
    assert len(trials) == 2
    assert trials[0].params == first.params and trials[0].value == first.value
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("pathcnn-model1")
    assert len(client.search_runs([experiment.experiment_id], "tags.kind = 'study'")) == 1  # one parent run
    # Nothing left to do: a third run adds no trial.
    run_tune(workspace, prepared)
    assert len(load_study(workspace, prepared).trials) == 2


def test_killed_worker_trial_ends_fail_and_the_study_completes(workspace: Path, prepared: Path, tracking_uri: str):
    set_tune(workspace, n_trials=1, heartbeat_seconds=1)
    command = [sys.executable, "-m", "pathcnn.cli", "tune", *tune_arguments(workspace, prepared), "--worker-only"]
    worker = subprocess.Popen(command, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = workspace / "optuna.journal"
    deadline = time.monotonic() + 180
    try:
        # The trial records its process and MLflow run first, then loads TensorFlow and fits: kill it in between.
        while not (journal.exists() and '"mlflow_run_id"' in journal.read_text()):
            if time.monotonic() > deadline or worker.poll() is not None:
                pytest.fail("the worker never started a trial")
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=60)
    assert load_study(workspace, prepared).trials[0].state is TrialState.RUNNING

    run_tune(workspace, prepared)
    trials = load_study(workspace, prepared).trials
    assert trials[0].state is TrialState.FAIL
    assert studies.finished_count(studies.state_counts(load_study(workspace, prepared))) == 1
    client = MlflowClient(tracking_uri)
    dead = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    assert dead.info.status == "FAILED" and dead.data.tags["trial_state"] == "FAIL"


def test_two_worker_processes_share_one_journal_study(workspace: Path, prepared: Path, tracking_uri: str):
    set_tune(workspace, n_trials=3)
    result = run_tune(workspace, prepared, "--workers", "2")
    assert "database is locked" not in result.stderr
    study = load_study(workspace, prepared)
    assert studies.finished_count(studies.state_counts(study)) == 3
    assert len({trial.user_attrs["pid"] for trial in study.trials}) == 2  # both workers ran trials
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("pathcnn-model1")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
    children = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    assert len(children) == 3
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}


@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(
    workspace: Path, prepared: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
):
    url = os.environ.get("PATHCNN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PATHCNN_TEST_POSTGRES_URL is unset (make postgres prints it; .ci/run sets it)")
    set_tune(workspace, n_trials=2, sampler="random")  # a sampler no other test uses: a fresh study name
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["base"]["seed"] = int(time.time()) % 100_000  # a new study on every run of the test
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv(studies.STORAGE_ENV, url)
    run_tune(workspace, prepared, "--workers", "2")
    study = load_study(workspace, prepared, url)
    assert studies.finished_count(studies.state_counts(study)) == 2
    assert not (workspace / "optuna.journal").exists()


def test_same_params_and_seed_give_the_same_trials(workspace: Path, prepared: Path, tmp_path: Path):
    set_tune(workspace, n_trials=2, pruner="none")
    run_tune(workspace, prepared)
    first = [trial.params for trial in load_study(workspace, prepared).trials]
    (workspace / "optuna.journal").rename(workspace / "first.journal")
    run_tune(workspace, prepared)
    second = [trial.params for trial in load_study(workspace, prepared).trials]
    assert first == second and first[0] != first[1]


def test_bad_search_space_stops_before_any_trial(workspace: Path, prepared: Path):
    filters = {"choices": [4, 8], "start": 4}
    set_tune(workspace, space={"dropout": {"low": 0.5, "high": 0.1}, "filters": filters})
    result = run_tune(workspace, prepared, check=False)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "tune.space.dropout" in message[0] and "empty range" in message[0]
    assert not (workspace / "optuna.journal").exists()
    dropout = {"low": 0.0, "high": 0.5, "start": 0.3}
    set_tune(workspace, space={"head": {"choices": ["global_pool", "average"]}, "dropout": dropout, "filters": filters})
    result = run_tune(workspace, prepared, check=False)
    assert result.returncode == 1 and "head: value 'average' is not allowed" in result.stderr
    assert not (workspace / "optuna.journal").exists()


def test_zero_trials_write_the_train_defaults(workspace: Path, prepared: Path):
    set_tune(workspace, n_trials=0)
    run_tune(workspace, prepared)
    best = json.loads((workspace / "out" / "best_params.json").read_text())
    assert best["study_name"] is None
    assert best["params"] == {"dropout": 0.3, "filters": 4}


def test_changed_best_params_rerun_train_under_dvc(repo_copy: Path):
    run_command(["dvc", "repro", "tune@model1"], repo_copy, timeout=900)
    tuned = repo_copy / "results" / "tune" / "model1" / "best_params.json"
    assert json.loads(tuned.read_text())["study_name"].startswith("model1-")
    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())
    assert "tune@model1" in lock["stages"]
    assert (repo_copy / "results" / "tune" / "optuna.journal").exists()
    status = run_command(["dvc", "status", "train@model1"], repo_copy).stdout
    assert "train@model1" in status  # never run yet
    run_command(["dvc", "repro", "train@model1"], repo_copy, timeout=900)
    assert "changed" not in run_command(["dvc", "status", "train@model1"], repo_copy).stdout
    payload = json.loads(tuned.read_text())
    payload["params"]["dropout"] = 0.123
    tuned.write_text(json.dumps(payload))
    status = run_command(["dvc", "status", "train@model1"], repo_copy).stdout
    assert "results/tune/model1/best_params.json" in status and "modified" in status


def test_a_shared_study_gets_a_parent_run_in_each_experiment(
    workspace: Path, prepared: Path, tracking_uri: str
) -> None:
    """Two teams' prefixes, one study storage: the second reuses the study's trials under its own parent run."""
    run_tune(workspace, prepared)
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["base"]["experiment_prefix"] = "other"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    run_tune(workspace, prepared)  # the same study, already complete: no new trial
    client = MlflowClient(tracking_uri)
    for prefix in ("pathcnn", "other"):
        experiment = client.get_experiment_by_name(f"{prefix}-{MODEL}")
        parents = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED", prefix
    assert len(load_study(workspace, prepared).trials) == 2
