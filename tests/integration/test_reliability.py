"""Crashes, interruptions and reproducibility of the train stage, with a real MLflow store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import run_command, stage_command

TRAIN = stage_command("train", "model1", drop=("--tuned",))  # no study in these tests

pytestmark = pytest.mark.slow


@pytest.fixture
def stage_dir(tmp_path: Path, small_images: Path, small_params_file: Path, tracking_uri: str) -> Path:
    """patches and split done on the small crops; train is next."""
    shutil.copytree(small_images, tmp_path / "data" / "raw")
    run_command(stage_command("patches"), tmp_path)
    run_command(stage_command("split"), tmp_path)
    return tmp_path


def set_train(workdir: Path, **values) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"].update(values)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string="tags.kind = 'train'") if experiments else []


def start_training(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        TRAIN,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epochs(uri: str, process: subprocess.Popen, epochs: int, timeout: float = 240) -> str:
    """Block until the training run has logged `epochs` epochs; return its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            found = runs(uri)
        except Exception:  # the store may be mid-migration on first use
            found = []
        if found:
            history = MlflowClient(uri).get_metric_history(found[0].info.run_id, "epoch/loss")
            if len(history) >= epochs:
                return found[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("training did not reach the epoch in time")


def test_same_seed_gives_identical_metrics(stage_dir: Path) -> None:
    run_command(TRAIN, stage_dir)
    first = json.loads((stage_dir / "results/train/model1/metrics.json").read_text())
    run_command(TRAIN, stage_dir)
    second = json.loads((stage_dir / "results/train/model1/metrics.json").read_text())
    assert first == second


def test_sigkill_leaves_no_half_output_and_the_run_is_failed_at_next_start(stage_dir: Path, tracking_uri: str) -> None:
    set_train(stage_dir, max_epochs=300, patience=300)
    process = start_training(stage_dir)
    run_id = wait_for_epochs(tracking_uri, process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    assert not (stage_dir / "models/model1.keras").exists()
    assert not (stage_dir / "results/train/model1/metrics.json").exists()
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "RUNNING"

    run_command(stage_command("split"), stage_dir)  # any stage start closes abandoned runs
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FAILED"

    set_train(stage_dir, max_epochs=2, patience=1)
    run_command(TRAIN, stage_dir)
    metrics = json.loads((stage_dir / "results/train/model1/metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    import keras

    assert keras.saving.load_model(stage_dir / "models/model1.keras").output_shape == (None, 2)
    assert not list((stage_dir / "models").glob(".*tmp*")), "leftover temporaries are cleaned"
    statuses = sorted(run.info.status for run in runs(tracking_uri))
    assert statuses == ["FAILED", "FINISHED"]


def test_sigkill_keeps_the_previous_outputs(stage_dir: Path, tracking_uri: str) -> None:
    run_command(TRAIN, stage_dir)
    model_before = (stage_dir / "models/model1.keras").read_bytes()
    metrics_before = (stage_dir / "results/train/model1/metrics.json").read_bytes()
    set_train(stage_dir, max_epochs=300, patience=300)
    process = start_training(stage_dir)
    wait_for_epochs(tracking_uri, process, 2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert (stage_dir / "models/model1.keras").read_bytes() == model_before
    assert (stage_dir / "results/train/model1/metrics.json").read_bytes() == metrics_before


def test_sigterm_ends_the_run_killed(stage_dir: Path, tracking_uri: str) -> None:
    set_train(stage_dir, max_epochs=300, patience=300)
    process = start_training(stage_dir)
    run_id = wait_for_epochs(tracking_uri, process, 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "KILLED"
    assert not (stage_dir / "models/model1.keras").exists()


def test_an_error_inside_the_run_ends_it_failed_with_one_line(stage_dir: Path, tracking_uri: str) -> None:
    (stage_dir / "models" / "model1.keras").mkdir(parents=True)  # the model cannot be written over a folder
    result = run_command(TRAIN, stage_dir, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "model1.keras" in result.stderr.strip().splitlines()[-1]
    assert [run.info.status for run in runs(tracking_uri)] == ["FAILED"]
