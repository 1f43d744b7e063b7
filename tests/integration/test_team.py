"""Team scale: queued DVC experiments log where the user looks, a shared MLflow server, portable artifacts.

Real `dvc exp run --queue`, a real MLflow SQLite store and, when .ci/run (or `make mlflow-server`) started
them, a real `mlflow server` on PostgreSQL and a PostgreSQL Optuna storage.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from pathcnn import registry
from tests.conftest import REPO, commit_all, free_port, mlflow_uri, run_command, seed_image_dir

pytestmark = pytest.mark.slow

QUEUED = {"q-drop1": 0.1, "q-drop4": 0.4}


def run_queued(root: Path, jobs: int) -> None:
    """Queue one experiment per QUEUED dropout (train@model1 and what it needs), then run the queue."""
    for name, dropout in QUEUED.items():
        run_command(
            ["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.dropout={dropout}", "train@model1"], root
        )
    run_command(["dvc", "exp", "run", "--run-all", "-j", str(jobs)], root, timeout=1800)
    shown = run_command(["dvc", "exp", "show", "--json"], root).stdout
    for name in QUEUED:
        assert f'"name": "{name}"' in shown, f"{name} not in dvc exp show"


def train_runs(client: MlflowClient, experiment: str) -> dict[str, object]:
    """The train runs of an MLflow experiment, keyed by their DVC experiment name ('' for workspace runs)."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    runs = client.search_runs([found.experiment_id], "tags.kind = 'train'", max_results=100)
    return {run.data.tags.get("dvc_exp_name", ""): run for run in runs}


def test_queued_experiments_land_in_the_main_store_and_leave_the_champion(
    repo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default store, as a user has it: no MLFLOW_TRACKING_URI, so mlflow.db at the repository root.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("PATHCNN_OPTUNA_STORAGE", raising=False)
    commit_all(repo_copy, "shrunk params")
    run_command(["dvc", "repro", "train@model1"], repo_copy)
    baseline = commit_all(repo_copy, "workspace results")
    client = MlflowClient(mlflow_uri(repo_copy))
    name = registry.registered_name("pathcnn", "model1")
    if registry.current_champion(name, client) is None:  # the tiny model did not beat its baseline
        client.set_registered_model_alias(name, registry.CHAMPION, "1")
    champion = client.get_model_version_by_alias(name, registry.CHAMPION).version
    journal = repo_copy / "results" / "tune" / "optuna.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    studies_before = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}

    run_queued(repo_copy, jobs=1)

    runs = train_runs(client, "pathcnn-model1")
    assert set(QUEUED) <= set(runs), sorted(runs)
    for exp_name, dropout in QUEUED.items():
        run = runs[exp_name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["dvc_baseline_rev"] == baseline
        assert run.data.tags["dvc_workspace"] == "temporary"
        assert float(run.data.params["train.dropout"]) == pytest.approx(dropout)
        # Its artifacts sit in the main repository, not in DVC's deleted temporary copy.
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        assert artifacts.is_relative_to(repo_copy / "mlruns") and (artifacts / "training_stats.json").is_file()
        # Registered, but the champion alias stays with the workspace's train.
        version = client.get_model_version(name, run.data.tags["registry.version"])
        assert version.tags["registry.champion"] == "not promoted"
        assert exp_name in version.tags["registry.reason"]
        # The queued tune's trials are in the main study storage, under the study its train used.
        study = optuna.load_study(study_name=run.data.tags["optuna_study"], storage=storage)
        assert run.data.tags["optuna_study"] not in studies_before
        assert sum(trial.state.is_finished() for trial in study.trials) == 2
    assert client.get_model_version_by_alias(name, registry.CHAMPION).version == champion
    assert not list((repo_copy / ".dvc" / "tmp").rglob("mlflow.db"))


@pytest.mark.postgres
def test_parallel_queued_experiments_share_the_mlflow_server_and_postgres_study(
    repo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, database = os.environ.get("PATHCNN_TEST_MLFLOW_URL"), os.environ.get("PATHCNN_TEST_POSTGRES_URL")
    if not server or not database:
        pytest.skip("PATHCNN_TEST_MLFLOW_URL or PATHCNN_TEST_POSTGRES_URL is unset (.ci/run sets both)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("PATHCNN_OPTUNA_STORAGE", database)
    # The server outlives this test: a prefix of its own keeps its experiments and models apart.
    prefix = f"team-{uuid.uuid4().hex[:8]}"
    params_path = repo_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["base"]["experiment_prefix"] = prefix
    # ... and a seed of its own gives it new studies in the PostgreSQL storage, which also outlives it.
    params["base"]["seed"] = int(uuid.uuid4().int % 100_000)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(repo_copy, "own prefix")

    run_queued(repo_copy, jobs=2)

    client = MlflowClient(server)
    runs = train_runs(client, f"{prefix}-model1")
    assert set(runs) == set(QUEUED), sorted(runs)
    for exp_name, dropout in QUEUED.items():
        run = runs[exp_name]
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert float(run.data.params["train.dropout"]) == pytest.approx(dropout)
        assert "training_stats.json" in {item.path for item in client.list_artifacts(run.info.run_id)}
        study = optuna.load_study(study_name=run.data.tags["optuna_study"], storage=database)
        assert sum(trial.state.is_finished() for trial in study.trials) == 2, [t.state for t in study.trials]
        trial_runs = client.search_runs(
            [client.get_experiment_by_name(f"{prefix}-model1").experiment_id],
            f"tags.kind = 'trial' and tags.optuna_study = '{run.data.tags['optuna_study']}'",
        )
        assert len(trial_runs) == 2 and all(trial.data.tags.get("dvc_exp_name") == exp_name for trial in trial_runs)
    name = registry.registered_name(prefix, "model1")
    with pytest.raises(Exception, match="alias"):  # no workspace train ran: nobody is champion
        client.get_model_version_by_alias(name, registry.CHAMPION)


def test_the_champion_loads_after_the_repository_moves(
    repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    run_command(["dvc", "repro", "train@model1"], repo_copy)
    client = MlflowClient(mlflow_uri(repo_copy))
    name = registry.registered_name("pathcnn", "model1")
    if registry.current_champion(name, client) is None:  # the tiny model did not beat its baseline
        client.set_registered_model_alias(name, registry.CHAMPION, "1")
    image = str(seed_image_dir() / "B2.jpg")
    uri = f"models:/{name}@champion"
    run_command(["pathcnn", "predict", image, "--model-uri", uri, "--out", "before"], repo_copy)
    moved = shutil.move(repo_copy, tmp_path / "moved-and-renamed")
    run_command(["pathcnn", "predict", image, "--model-uri", uri, "--out", "after"], Path(moved))
    before = json.loads((Path(moved) / "before" / "B2_call.json").read_text())
    after = json.loads((Path(moved) / "after" / "B2_call.json").read_text())
    assert after["appearance_checked"], "the training statistics artifact was not found after the move"
    assert after == before
    assert not repo_copy.exists()


@pytest.mark.postgres
def test_postgres_starts_for_root_with_the_clone_in_a_folder_only_root_can_enter(tmp_path: Path) -> None:
    """`make postgres` as root with the clone under /root: the data directory moves where postgres can reach it."""
    if os.geteuid() != 0:
        pytest.skip("only root runs PostgreSQL as another user (the postgres user)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed (.ci/run installs it)")
    home = tmp_path / "root-like"
    home.mkdir(mode=0o700)  # like /root: the postgres user cannot enter it
    datadir, port = home / "clone" / ".postgres", str(free_port())
    script = REPO / ".ci" / "postgres.sh"
    moved = None
    try:
        started = run_command(["bash", str(script), "start", str(datadir), port], tmp_path, timeout=120)
        moved = started.stderr.split("postgres: data directory ", 1)[1].split()[0]
        assert moved.startswith("/var/tmp/pathcnn-postgres-") and not Path(moved).is_relative_to(home)
        url = f"postgresql+psycopg2://pathcnn@127.0.0.1:{port}/pathcnn"
        study = optuna.create_study(storage=url, study_name="reachable")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        assert len(optuna.load_study(study_name="reachable", storage=url).trials) == 1
    finally:
        run_command(["bash", str(script), "stop", str(datadir), port], tmp_path, check=False)
        if moved:
            shutil.rmtree(moved, ignore_errors=True)
