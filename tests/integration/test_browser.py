"""The MLflow UI in headless Chromium, on a store written by a small real train run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import REPO, free_port, shrink_params

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
METRICS = ("train_accuracy", "val_accuracy", "test_accuracy", "baseline_accuracy")
UI_TIMEOUT_MS = 120_000


def chromium_path() -> str:
    path = os.environ.get("PATHCNN_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("chromium not installed (apt-get install chromium, or set PATHCNN_CHROMIUM)")
    return path


def train_store(root: Path, small_images: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the patches, split and train (model1) stages into root/mlflow.db; return the store URI."""
    from pathcnn.stages import patches, split, train

    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(shrink_params(yaml.safe_load((REPO / "params.yaml").read_text()))))
    uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(root)  # artifacts land under root/mlruns
    patches.run(small_images, root / "patches", root / "grids", params_file)
    split.run(root / "patches", root / "splits", params_file)
    split_file = root / "splits" / "model1.csv"
    train.run("model1", root / "patches", split_file, None, root / "model1.keras", root / "results", params_file)
    return uri


def wait_for_server(process: subprocess.Popen, url: str, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"mlflow server not up after {timeout}s:\n{log.read_text()[-3000:]}")


def test_experiment_page_shows_runs_with_accuracy_and_baseline(
    tmp_path: Path, small_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    uri = train_store(tmp_path, small_images, monkeypatch)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pathcnn-model1")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'train'")
    expected = {name: run.data.metrics[name] for name in METRICS}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as output:
        server = subprocess.Popen(
            command, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_server(server, url, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs", wait_until="domcontentloaded")
                page.get_by_text("train-model1").first.wait_for()
                close_assistant = page.get_by_role("button", name="Close")
                if close_assistant.count():
                    close_assistant.first.click()
                # The metric columns a reader adds to compare runs (docs/tracking.md, "Looking at results").
                page.get_by_role("button", name="Columns").click()
                menu = page.get_by_role("dialog", name="Popover content")
                for name in ("Dataset", "Source", *METRICS):
                    menu.get_by_placeholder("Search columns").fill(name)
                    column_item(menu, name).click()
                page.keyboard.press("Escape")
                shown = shown_metrics(page)
                page.screenshot(path=str(tmp_path / "mlflow_runs.png"), full_page=True)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert set(shown) == set(METRICS), shown
    for name, value in expected.items():
        assert shown[name] == pytest.approx(value, abs=1e-3), name
    assert (tmp_path / "mlflow_runs.png").stat().st_size > 10_000


def column_item(menu, name: str):
    """The column picker's entry for exactly `name`.

    The search highlights the matched part of longer names too (`val_accuracy` inside
    `val_accuracy_last5_range`), so an exact text match alone can be a fragment of another entry: take the
    match whose parent holds nothing else.
    """
    candidates = menu.get_by_text(name, exact=True)
    for index in range(candidates.count()):
        item = candidates.nth(index)
        if item.evaluate("element => element.parentElement.innerText.trim()") == name:
            return item
    return candidates.last


def shown_metrics(page) -> dict[str, float]:
    """Metric name -> value read from the run table: the cell under each metric's column header."""
    page.get_by_role("columnheader", name="baseline_accuracy").first.wait_for()
    columns = {}
    for header in page.get_by_role("columnheader").all():
        text, index = header.inner_text().strip(), header.get_attribute("aria-colindex")
        if text in METRICS and index:
            columns[text] = index
    values = {}
    for row in page.get_by_role("row").all():
        if "train-model1" in row.inner_text():
            continue
        for name, index in columns.items():
            cell = row.locator(f'[role="gridcell"][aria-colindex="{index}"]')
            if cell.count() and cell.first.inner_text().strip():
                values[name] = float(cell.first.inner_text().strip())
    return values
