"""`pathcnn predict` and the model registry on a tiny model trained by the real stages on small crops."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from pathcnn import cli, predict, registry
from pathcnn.tiling import grid_shape, tile_image
from tests.conftest import REPO, free_port, seed_image_dir, shrink_params

MODEL = "model1"
NAME = f"pathcnn-{MODEL}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_images: Path) -> dict[str, Path | str]:
    """patches, split and train (model1) run as functions on the small crops, into a fresh SQLite store."""
    from pathcnn.stages import patches, split, train

    root = tmp_path_factory.mktemp("predict")
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(shrink_params(yaml.safe_load((REPO / "params.yaml").read_text()))))
    uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    patches.run(small_images, root / "patches", root / "grids", params_file)
    split.run(root / "patches", root / "splits", params_file)
    train.run(
        MODEL,
        root / "patches",
        root / "splits" / f"{MODEL}.csv",
        None,
        root / "models" / f"{MODEL}.keras",
        root / "results",
        params_file,
    )
    yield {"root": root, "params": params_file, "uri": uri, "stats": root / "results" / registry.TRAINING_STATS}
    monkeypatch.undo()


@pytest.fixture(scope="module")
def predictor(trained: dict) -> predict.Predictor:
    return predict.load_file_predictor(MODEL, trained["root"] / "models", trained["params"], trained["stats"])


@pytest.fixture(scope="module")
def familiar(trained: dict, small_images: Path) -> dict[str, Path]:
    """The familiarity stage on the tiny model, its reference beside a copy of the model (the other tests'
    predictor has none, so they keep testing predict without one)."""
    import shutil

    from pathcnn.stages import familiarity

    root = trained["root"]
    models = root / "familiar-models"
    models.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copyfile(root / "models" / f"{MODEL}{suffix}", models / f"{MODEL}{suffix}")
    familiarity.run(
        MODEL,
        root / "patches",
        root / "splits" / f"{MODEL}.csv",
        small_images,
        models / f"{MODEL}.keras",
        None,
        root / "results" / "familiarity",
        models / f"{MODEL}.familiarity.npz",
        trained["params"],
    )
    return {"models": models, "metrics": root / "results" / "familiarity" / "metrics.json"}


def test_a_restained_seed_image_is_uncertain_and_an_unmodified_one_is_not(
    trained: dict, familiar: dict, tmp_path: Path
) -> None:
    from pathcnn.familiarity import restain_dab

    metrics = json.loads(familiar["metrics"].read_text())
    assert {"restained_dab", "greyscale", "blur", "jpeg", "non_tissue", "ihc_sample"} <= set(metrics["transformations"])
    with Image.open(seed_image_dir() / "A1.jpg") as image:  # whole: a pale restained centre crop has no tissue
        pixels = np.asarray(image.convert("RGB"))
    images = {"unmodified": tmp_path / "A1.png", "restained": tmp_path / "A1_dab.png"}
    Image.fromarray(pixels).save(images["unmodified"])
    Image.fromarray(restain_dab(pixels)).save(images["restained"])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pathcnn.cli", "predict", *map(str, images.values()), "--model", MODEL]
    command += ["--models-dir", str(familiar["models"]), "--params", str(trained["params"]), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr  # a finding, not an error
    calls = {name: json.loads((out / f"{path.stem}_call.json").read_text()) for name, path in images.items()}
    assert calls["restained"]["call"] == predict.UNCERTAIN and calls["restained"]["image_unfamiliar"] is True
    assert calls["restained"]["unfamiliar_reasons"] and calls["restained"]["call_if_familiar"] in ("A", "B")
    assert "A1_dab.png: uncertain" in result.stdout
    assert "warning: A1_dab.png:" in result.stderr and "the call is `uncertain`" in result.stderr
    assert calls["unmodified"]["call"] != predict.UNCERTAIN and calls["unmodified"]["image_unfamiliar"] is False
    assert calls["unmodified"]["familiarity_checked"] is True
    umask = os.umask(0)
    os.umask(umask)
    for written in out.iterdir():  # shareable as the umask allows, not private to the user
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, written
    table = pd.read_csv(out / "A1_dab_patches.csv")
    kept = table["predicted"] != predict.NOT_CLASSIFIED
    assert set(table.loc[kept, "unfamiliar"]) <= {"yes", "no"} and (table.loc[kept, "unfamiliar"] == "yes").mean() > 0.5
    assert table.loc[kept, "predicted"].isin(["A", "B"]).all()  # per-patch classes still written


def variants(source: Path, folder: Path) -> dict[str, Path]:
    """The seed image, a crop, a 90-degree rotation and a strong JPEG recompression of it."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    paths = {"original": source, "crop": folder / "crop.png", "rotated": folder / "rotated.tif"}
    image.crop((150, 120, 150 + 640, 120 + 530)).save(paths["crop"])
    image.transpose(Image.Transpose.ROTATE_90).save(paths["rotated"])
    paths["recompressed"] = folder / "recompressed.jpg"
    image.save(paths["recompressed"], quality=40)
    return paths


def check_outputs(path: Path, out: Path, call: dict, class_names: tuple[str, ...]) -> pd.DataFrame:
    """The three files agree with each other and with the image."""
    with Image.open(path) as image:
        width, height = image.size
    with Image.open(out / f"{path.stem}_heatmap.png") as heatmap:
        # The image at full size, and the legend in a panel on its right.
        assert heatmap.width > width and heatmap.height >= height
    assert json.loads((out / f"{path.stem}_call.json").read_text()) == json.loads(json.dumps(call))
    table = pd.read_csv(out / f"{path.stem}_patches.csv")
    assert len(table) == np.prod(grid_shape(height, width, 100, 100)) == call["patches_total"]
    classified = table[table["predicted"] != predict.NOT_CLASSIFIED]
    assert len(classified) == call["patches_used"] > 0
    probabilities = classified[[f"prob_{name}" for name in class_names]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=2e-4)
    assert table.loc[table["predicted"] == predict.NOT_CLASSIFIED, "prob_A"].isna().all()
    assert (table.loc[table["predicted"] == predict.NOT_CLASSIFIED, "tissue_fraction"] < 0.5).all()
    assert call["call"] == max(call["mean_probability"], key=call["mean_probability"].get)
    assert sum(call["vote_share"].values()) == pytest.approx(1.0, abs=1e-3)
    return table


def test_train_stage_registers_and_decides_champion(trained: dict) -> None:
    client = MlflowClient(trained["uri"])
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [str(version.version) for version in versions] == ["1"]
    run = client.get_run(versions[0].run_id)
    metrics = run.data.metrics
    beats_baseline = metrics["test_accuracy"] > metrics["baseline_accuracy"]
    assert registry.current_champion(NAME, client) == (("1", metrics["test_accuracy"]) if beats_baseline else None)
    assert run.data.tags["registry.champion"] == ("promoted" if beats_baseline else "not promoted")
    assert run.data.params["classes"] == "A,B"
    stats = json.loads(trained["stats"].read_text())
    assert stats["patches"] > 0 and stats["images"] == 4 and stats["stain_normalization"] == "none"


def test_predict_seed_image_and_altered_copies(trained: dict, predictor: predict.Predictor, tmp_path: Path) -> None:
    paths = variants(seed_image_dir() / "A1.jpg", tmp_path / "in")
    out = tmp_path / "out"
    calls = predict.run(list(paths.values()), predictor, out, batch_size=64)
    for path in paths.values():
        check_outputs(path, out, calls[path], predictor.class_names)
        assert calls[path]["appearance_checked"]
    # The seed image looks like the training crops: no colour warning.
    assert not [warning for warning in calls[paths["original"]]["warnings"] if "stain" in warning]
    # Rotation by 90 degrees keeps the tissue: the same number of tissue patches up to edge effects.
    used = {name: calls[path]["patches_used"] for name, path in paths.items()}
    assert abs(used["rotated"] - used["original"]) <= 0.15 * used["original"]


def test_predict_matches_training_tiling(predictor: predict.Predictor, tmp_path: Path) -> None:
    """Band-wise prediction classifies exactly the patches training would keep."""
    source = seed_image_dir() / "B1.jpg"
    predict.run([source], predictor, tmp_path, batch_size=16)  # small batches: many bands
    table = pd.read_csv(tmp_path / "B1_patches.csv")
    settings = predictor.patches
    with Image.open(source) as image:
        tiles = tile_image(
            np.asarray(image.convert("RGB")),
            settings.patch_size,
            settings.stride,
            settings.min_tissue_fraction,
            settings.tissue_min_saturation,
        )
    np.testing.assert_array_equal(table["row"], tiles.rows)
    np.testing.assert_array_equal(table["col"], tiles.cols)
    np.testing.assert_array_equal(table["predicted"] != predict.NOT_CLASSIFIED, tiles.kept)


def test_unfamiliar_colours_are_warned_about(predictor: predict.Predictor, tmp_path: Path) -> None:
    with Image.open(seed_image_dir() / "A2.jpg") as image:
        pixels = np.asarray(image.convert("RGB"))
    # A green-brown stain no training image had, same structure.
    recoloured = tmp_path / "A2_green.png"
    Image.fromarray(np.ascontiguousarray(pixels[..., [1, 0, 2]])).save(recoloured)
    call = predict.run([recoloured], predictor, tmp_path / "out")[recoloured]
    assert any("stain" in warning for warning in call["warnings"]), call["warnings"]


def test_background_only_image_is_no_tissue(
    predictor: predict.Predictor, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    white = tmp_path / "blank.png"
    Image.new("RGB", (450, 320), (245, 245, 242)).save(white)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (60, 40), (200, 80, 150)).save(tiny)
    calls = predict.run([white, tiny], predictor, tmp_path / "out")
    assert calls[white]["call"] == calls[tiny]["call"] == predict.NO_TISSUE
    assert calls[white]["patches_total"] == 12 and calls[white]["patches_used"] == 0
    assert calls[tiny]["patches_total"] == 0 and calls[tiny]["warnings"]
    with Image.open(tmp_path / "out" / "blank_heatmap.png") as heatmap:
        assert heatmap.width > 450 and heatmap.height >= 320
    assert pd.read_csv(tmp_path / "out" / "blank_patches.csv")["predicted"].eq(predict.NOT_CLASSIFIED).all()
    printed = capsys.readouterr()
    assert "blank.png: no tissue" in printed.out
    # Not silent: why nothing counted as tissue, and how far that is from the training images' tissue share.
    assert any("stain colour" in warning for warning in calls[white]["warnings"]), calls[white]["warnings"]
    assert any("0% of patches are tissue" in warning for warning in calls[white]["warnings"]), calls[white]["warnings"]
    assert "warning: blank.png: no patch has enough stain colour" in printed.err


def test_a_greyscale_image_is_uncertain_not_no_tissue(
    predictor: predict.Predictor, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Tissue is found by the stain's colour: a greyscale scan of tissue has none, which is unlike training."""
    grey = tmp_path / "grey.png"
    with Image.open(seed_image_dir() / "A1.jpg") as image:
        image.convert("L").save(grey)
    call = predict.run([grey], predictor, tmp_path / "out")[grey]
    assert call["call"] == predict.UNCERTAIN and call["call_if_familiar"] is None
    assert call["image_unfamiliar"] is True and call["patches_used"] == 0
    assert any("greyscale" in warning for warning in call["warnings"]), call["warnings"]
    assert "grey.png: uncertain (greyscale" in capsys.readouterr().out
    blank = tmp_path / "white.png"  # no content at all: still no tissue, not uncertain
    Image.new("RGB", (300, 300), (250, 250, 250)).save(blank)
    assert predict.run([blank], predictor, tmp_path / "out")[blank]["call"] == predict.NO_TISSUE


def test_unreadable_image_is_one_line_error(trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "slide.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    arguments = ["predict", str(broken), "--model", MODEL, "--models-dir", str(trained["root"] / "models")]
    code = cli.main([*arguments, "--params", str(trained["params"]), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(error) == 1 and error[0].startswith(f"error: {broken}") and "Traceback" not in error[0]


def test_predict_by_registry_alias(trained: dict, predictor: predict.Predictor, tmp_path: Path) -> None:
    client = MlflowClient(trained["uri"])
    if registry.current_champion(NAME, client) is None:  # the tiny model did not beat its baseline
        client.set_registered_model_alias(NAME, registry.CHAMPION, "1")
    image = seed_image_dir() / "B2.jpg"
    code = cli.main(["predict", str(image), "--model-uri", f"models:/{NAME}@champion", "--out", str(tmp_path / "uri")])
    assert code == 0
    by_alias = json.loads((tmp_path / "uri" / "B2_call.json").read_text())
    by_file = predict.run([image], predictor, tmp_path / "file")[image]
    assert by_alias["model"] == f"models:/{NAME}@champion" and by_alias["appearance_checked"]
    champion = client.get_model_version_by_alias(NAME, registry.CHAMPION)  # the alias, and what it resolved to
    assert (by_alias["model_version"], by_alias["model_run_id"]) == (str(champion.version), champion.run_id)
    assert by_alias["classes"] == ["A", "B"]
    for key in ("call", "patches_used", "vote_share"):
        assert by_alias[key] == by_file[key]
    for name, value in by_file["mean_probability"].items():
        assert by_alias["mean_probability"][name] == pytest.approx(value, abs=1e-3)


def test_unknown_alias_is_one_line_error(trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = str(seed_image_dir() / "A1.jpg")
    assert cli.main(["predict", image, "--model-uri", f"models:/{NAME}@nobody", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: models:/{NAME}@nobody: not found")


@pytest.fixture
def store(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def add_version(client: MlflowClient, name: str, test_accuracy: float, baseline: float) -> str:
    """A registered version whose training run scored test_accuracy against a majority baseline."""
    experiment = client.get_experiment_by_name("registry-test")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("registry-test")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "test_accuracy", test_accuracy)
    client.log_metric(run.info.run_id, "baseline_accuracy", baseline)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    decision = registry.promote_if_better(
        name, version.version, {"test_accuracy": test_accuracy, "baseline_accuracy": baseline}, client
    )
    assert client.get_model_version(name, version.version).tags["registry.reason"] == decision.reason
    return str(version.version)


def test_champion_alias_rule(store: MlflowClient) -> None:
    name = "pathcnn-rule"
    assert add_version(store, name, 0.50, 0.60) == "1"  # below its majority baseline: never champion
    assert registry.current_champion(name, store) is None
    add_version(store, name, 0.80, 0.60)  # better than baseline, no champion yet
    assert registry.current_champion(name, store) == ("2", 0.80)
    add_version(store, name, 0.70, 0.60)  # worse than the champion
    assert registry.current_champion(name, store) == ("2", 0.80)
    add_version(store, name, 0.80, 0.60)  # a tie does not replace the champion
    assert registry.current_champion(name, store) == ("2", 0.80)
    add_version(store, name, 0.95, 0.97)  # beats the champion but not its own baseline
    assert registry.current_champion(name, store) == ("2", 0.80)
    add_version(store, name, 0.90, 0.60)
    assert registry.current_champion(name, store) == ("6", 0.90)
    assert store.get_model_version(name, "3").tags["registry.champion"] == "not promoted"


def test_mlflow_serving_takes_stored_patches_and_answers_like_pathcnn(
    trained: dict, predictor: predict.Predictor, tmp_path: Path
) -> None:
    """`mlflow models serve` on the registered model: uint8 patches as stored give pathcnn's probabilities."""
    client = MlflowClient(trained["uri"])
    version = client.get_model_version(NAME, "1")
    assert "uint8" in version.description and "do not scale" in version.description
    patches = np.asarray(np.load(trained["root"] / "patches" / "A1.npy", mmap_mode="r")[:2])
    expected = predictor.model.predict(patches, verbose=0)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{NAME}/1",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": trained["uri"]},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("w"),
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "serve.log").read_text()[-2000:]) from None
                time.sleep(1)

        def invoke(batch: np.ndarray) -> tuple[int, str]:
            body = json.dumps({"inputs": batch.tolist()}).encode()
            request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        status, answer = invoke(patches)
        assert status == 200, answer
        np.testing.assert_allclose(np.asarray(json.loads(answer)["predictions"]), expected, atol=1e-5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # MLflow's Python client enforces the signature: patches scaled to 0-1 are refused, not answered.
    # (JSON carries no dtype: the REST server casts what it gets to uint8, hence the description's contract.)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    np.testing.assert_allclose(model.predict(patches), expected, atol=1e-5)
    with pytest.raises(MlflowException, match="Failed to enforce schema"):
        model.predict(patches.astype(np.float32) / 255.0)


def test_predict_works_from_any_folder_with_the_model_card(
    trained: dict, predictor: predict.Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Classes, tiling and training statistics travel beside the model file: no params.yaml needed."""
    card = json.loads((trained["root"] / "models" / f"{MODEL}.json").read_text())
    assert card["classes"] == ["A", "B"] and card["patches"]["patch_size"] == predictor.patches.patch_size
    assert card["training_stats"] == json.loads(trained["stats"].read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no params.yaml, no results/ here
    image = seed_image_dir() / "B2.jpg"
    models = str(trained["root"] / "models")
    assert cli.main(["predict", str(image), "--model", MODEL, "--models-dir", models, "--out", "out"]) == 0
    call = json.loads((elsewhere / "out" / "B2_call.json").read_text())
    assert call["appearance_checked"] and call["classes"] == ["A", "B"]
    model_file = trained["root"] / "models" / f"{MODEL}.keras"
    assert call["model_md5"] == hashlib.md5(model_file.read_bytes()).hexdigest()
    by_fixture = predict.run([image], predictor, tmp_path / "fixture")[image]
    for key in ("call", "patches_used", "vote_share", "mean_probability"):
        assert call[key] == by_fixture[key]


def test_a_model_uri_without_a_store_is_one_line_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # like a clone restored from a remote: no mlflow.db
    image = str(seed_image_dir() / "A1.jpg")
    assert cli.main(["predict", image, "--model-uri", f"models:/{NAME}@champion", "--out", "out"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no MLflow store" in error[0] and "--model" in error[0], error
    assert not (tmp_path / "mlflow.db").exists()
