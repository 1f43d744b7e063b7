"""`dvc repro` of the whole pipeline in a temporary copy of the repo, on small crops of the seed images."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pathcnn.tracking import EPOCH_PREFIX, flat_numbers
from tests.conftest import commit_all, mlflow_uri, prepare_repo_copy, run_command

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


def test_dvc_metrics_show_lists_each_models_headline_numbers_as_measured(reproduced: Path) -> None:
    """`dvc metrics show` lists only results/summary/<model>.json, each value the stage's own, unrounded."""
    shown = json.loads(run_command(["dvc", "metrics", "show", "--json"], reproduced).stdout)
    files = shown[""]["data"] if "" in shown else next(iter(shown.values()))["data"]
    assert set(files) == {"results/summary/model1.json", "results/summary/model2.json"}
    results = reproduced / "results"
    for model in ("model1", "model2"):
        headline = files[f"results/summary/{model}.json"]["data"]
        train = json.loads((results / "train" / model / "metrics.json").read_text())
        baseline = json.loads((results / "baseline" / model / "metrics.json").read_text())
        control = json.loads((results / "control" / model / "metrics.json").read_text())
        crossval = json.loads((results / "crossval" / model / "metrics.json").read_text())
        nonsense = json.loads((results / "nonsense" / model / "metrics.json").read_text())
        untuned = json.loads((results / "crossval-untuned" / model / "metrics.json").read_text())
        assert untuned["train_params"] == "untuned" and crossval["train_params"] == "tuned"
        assert headline["held_out_untuned"] == untuned.get("cnn_mean_accuracy")
        assert headline["train"] == train["train_accuracy"] and headline["val"] == train["val_accuracy"]
        assert headline["test"] == train["test_accuracy"] and headline["majority"] == train["baseline_accuracy"]
        assert headline["features"] == baseline["test_accuracy"] and headline["shuffled"] == control["test_accuracy"]
        assert headline["held_out"] == crossval.get("cnn_mean_accuracy")
        assert headline["held_out_features"] == crossval.get("features_mean_accuracy")
        assert headline["held_out_seed_range"] == crossval["cnn_max_seed_range"]
        assert headline["nonsense_test"] == nonsense["patch_split"]["test_accuracy"]
        assert headline["nonsense_held_out"] == nonsense["held_out"]["cnn_mean_accuracy"]
    table = run_command(["pathcnn", "summary"], reproduced).stdout
    assert f"{headline['test']:.3f}" in table


def test_the_familiarity_metrics_measure_every_transformation(reproduced: Path) -> None:
    """predict's unfamiliar-image check: calibrated on held-out images, measured on every transformation."""
    from pathcnn.familiarity import TRANSFORMS, Reference

    params = yaml.safe_load((reproduced / "params.yaml").read_text())
    expected = {*TRANSFORMS, "non_tissue", "ihc_sample"}
    for model in ("model1", "model2"):
        metrics = json.loads((reproduced / "results" / "familiarity" / model / "metrics.json").read_text())
        scales = {f"scale_{factor:g}x" for factor in params["familiarity"]["scales"]}
        assert expected <= set(metrics["transformations"]) <= expected | scales
        for name, record in metrics["transformations"].items():
            assert record["patches"] > 0 and 0.0 <= record["detection_rate"] <= 1.0, name
        assert metrics["false_alarm_rate_target"] == params["familiarity"]["false_alarm_rate"]
        reference = Reference.load(reproduced / "models" / f"{model}.familiarity.npz")
        assert reference.threshold == metrics["threshold"]  # predict applies the threshold the metrics report
        assert reference.false_alarm_rate == metrics["false_alarm_rate"]


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
        history = client.get_metric_history(run.info.run_id, "epoch/val_loss")
        assert len(history) >= 1
        classes = "A vs B" if model == "model1" else "C vs D"
        assert classes in experiment.tags["mlflow.note.content"]
        # The Dataset column: each split part, with the split file's MD5 (DVC's hash of that file) as digest.
        digest = hashlib.md5((reproduced / "data" / "splits" / f"{model}.csv").read_bytes()).hexdigest()
        inputs = {item.dataset.name: item for item in run.inputs.dataset_inputs}
        assert set(inputs) == {f"{model}-train", f"{model}-val", f"{model}-test"}
        for part in ("train", "val", "test"):
            item = inputs[f"{model}-{part}"]
            assert item.dataset.digest == digest
            assert {tag.key: tag.value for tag in item.tags}["mlflow.data.context"] == part
    assert mlflow.get_tracking_uri() is not None


def test_plots_render(reproduced: Path) -> None:
    result = run_command(["dvc", "plots", "show", "--json"], reproduced)
    assert "history.csv" in result.stdout and "confusion.csv" in result.stdout


def headline_metrics(run) -> dict[str, float]:
    """What MLflow's UI and search_runs show for a run: each metric's latest value, per-epoch curves left out."""
    return {key: value for key, value in run.data.metrics.items() if not key.startswith(EPOCH_PREFIX)}


def assert_shown_equals_recorded(shown: dict[str, float], recorded: dict[str, float], where: str) -> None:
    assert shown, f"{where}: no metrics logged"
    for key, value in shown.items():
        assert key in recorded, f"{where}: MLflow shows {key}, which the stage's record does not hold"
        assert value == pytest.approx(recorded[key], abs=1e-12), f"{where}: {key} {value} != {recorded[key]}"


def test_every_run_shows_the_numbers_its_stage_recorded(reproduced: Path) -> None:
    """The latest value of every metric of every run equals the stage's metrics.json (or trials.csv)."""
    client = MlflowClient(mlflow_uri(reproduced))
    results = reproduced / "results"
    seen: set[str] = set()
    for model in ("model1", "model2"):
        experiment = client.get_experiment_by_name(f"pathcnn-{model}")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        trials = pd.read_csv(results / "tune" / model / "trials.csv").set_index("number")
        best = json.loads((results / "tune" / model / "best_params.json").read_text())
        for run in runs:
            kind, shown = run.data.tags["kind"], headline_metrics(run)
            seen.add(kind)
            where = f"{model} {kind} run {run.info.run_name}"
            if kind in {"train", "baseline", "control", "crossval", "crossval-untuned", "nonsense", "familiarity"}:
                recorded = flat_numbers(json.loads((results / kind / model / "metrics.json").read_text()))
                if kind == "train":  # the registry's comparison is logged beside the stage's own numbers
                    shown.pop("previous_champion_test_accuracy", None)
                assert_shown_equals_recorded(shown, recorded, where)
                assert set(recorded) <= set(shown), f"{where}: {set(recorded) - set(shown)} not logged"
            elif kind in {"crossval-fold", "crossval-untuned-fold"}:  # one fit of one fold with one seed
                stage = kind.removesuffix("-fold")
                folds = json.loads((results / stage / model / "metrics.json").read_text())["folds"]
                record = folds[run.data.tags["fold"]]["seeds"][f"seed{run.data.tags['seed']}"]
                assert_shown_equals_recorded(shown, flat_numbers(record), where)
            elif kind == "nonsense-fit":  # a nonsense-label fit: on the patch split, or one fold, with one seed
                nonsense = json.loads((results / "nonsense" / model / "metrics.json").read_text())
                seed = f"seed{run.data.tags['seed']}"
                if run.data.tags["evaluation"] == "patch_split":
                    record = nonsense["patch_split"]["seeds"][seed]
                else:
                    record = nonsense["held_out"]["folds"][run.data.tags["fold"]]["seeds"][seed]
                assert_shown_equals_recorded(shown, flat_numbers(record), where)
            elif kind == "trial":
                row = trials.loc[int(run.data.tags["trial_number"])]
                figures = ("train_accuracy", "val_accuracy", "train_val_gap")
                if best["objective"].startswith("held_out_"):  # the mean accuracy on the images left out
                    figures += ("held_out_accuracy",)
                recorded = {key: float(row[key]) for key in figures}
                recorded |= {"epochs": float(row["epochs"]), best["objective"]: float(row["value"])}
                assert_shown_equals_recorded(shown, recorded, where)
            elif kind == "study":
                recorded = {key: float(best[key]) for key in ("n_complete", "n_pruned", "n_failed")}
                if best["best_value"] is not None:  # None when every trial was pruned (e.g. none fitted)
                    recorded[f"best_{best['objective']}"] = float(best["best_value"])
                if best.get("train_val_gap") is not None:
                    recorded["best_train_val_gap"] = float(best["train_val_gap"])
                assert_shown_equals_recorded(shown, recorded, where)
            else:
                raise AssertionError(f"{where}: a run kind this test does not check")
    kinds = {"train", "baseline", "control", "crossval", "crossval-fold", "nonsense", "nonsense-fit", "trial", "study"}
    kinds |= {"crossval-untuned", "crossval-untuned-fold", "familiarity"}
    assert kinds <= seen


def test_a_fresh_clone_restores_the_results_from_a_team_remote_without_training(
    reproduced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teammate pushed data, outputs and run cache; `make repro` in a new clone restores them, fitting nothing."""
    remote = tmp_path / "team-remote"
    commit_all(reproduced, "results")
    run_command(["dvc", "remote", "add", "--local", "team", str(remote)], reproduced)
    run_command(["dvc", "push", "-r", "team", "--run-cache"], reproduced)
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(reproduced), str(clone)], tmp_path)
    run_command(["dvc", "remote", "add", "--local", "--default", "team", str(remote)], clone)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # this environment: `make` would otherwise build one
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the clone's own default store
    started = time.monotonic()
    result = run_command(["make", "-o", ".venv/.installed", "repro"], clone, timeout=600)
    seconds = time.monotonic() - started
    log = result.stdout + result.stderr
    assert "Running stage" not in log, log
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    for stage in stages:
        assert f"'{stage}'" in log, f"{stage} not restored:\n{log}"
    print(f"make repro in a fresh clone with the team remote: {seconds:.1f} s")
    assert seconds < 60, f"make repro took {seconds:.0f} s"
    # Nothing was fitted: no training, tuning or crossval run in the clone's MLflow store.
    store = clone / "mlflow.db"
    if store.exists():
        runs = MlflowClient(f"sqlite:///{store.as_posix()}").search_runs(
            [e.experiment_id for e in MlflowClient(f"sqlite:///{store.as_posix()}").search_experiments()]
        )
        assert runs == [], [run.data.tags.get("kind") for run in runs]
    changed = run_command(["git", "status", "--porcelain"], clone).stdout.splitlines()
    assert [line for line in changed if line != "?? .venv"] == []
    status = json.loads(run_command(["dvc", "status", "--json"], clone).stdout)
    assert status == {}, status
    for metrics_file in (clone / "results" / "train").glob("*/metrics.json"):
        original = reproduced / metrics_file.relative_to(clone)
        assert metrics_file.read_bytes() == original.read_bytes()
