"""Study helpers: storage choice, naming, seeds, the search space, dead-trial handling and outputs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pathcnn import studies
from pathcnn.errors import ParamsError
from pathcnn.params import FloatRange, Objective, TrainParams, TuneParams, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "dropout": {"low": 0.0, "high": 0.5},
    "l2_kernel": {"low": 1e-6, "high": 1e-2, "log": True, "zero": True},
    "filters": {"choices": [4, 8]},
    "conv_blocks": {"low": 1, "high": 3},
}


def tune_params(**values: object) -> TuneParams:
    return TuneParams.model_validate({"space": SPACE, "objective": "val_loss", **values})


def raw_params(space: dict | None = None, **tune: object) -> dict:
    """The repository's params with tune values replaced and search dimensions replaced or added."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tune"].update(tune)
    raw["tune"]["space"].update(space or {})
    return raw


def memory_study(tune: TuneParams, seed: int = 0) -> optuna.Study:
    return studies.open_study("s", optuna.storages.InMemoryStorage(), tune, seed)


def test_storage_url_prefers_environment_then_param_then_journal(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(studies.STORAGE_ENV, raising=False)
    journal = Path("results/tune/optuna.journal")
    assert studies.storage_url(tune_params(), journal) == str(journal)
    assert studies.storage_url(tune_params(storage="sqlite:///x.db"), journal) == "sqlite:///x.db"
    monkeypatch.setenv(studies.STORAGE_ENV, "postgresql+psycopg2://u:secret@h/db")
    assert studies.storage_url(tune_params(storage="sqlite:///x.db"), journal).startswith("postgresql")
    assert studies.describe_storage("postgresql+psycopg2://u:secret@h:5432/db") == "postgresql+psycopg2://u@h:5432/db"
    assert not studies.is_database_url(str(journal))


def test_study_name_changes_with_the_search_not_with_the_budget():
    train = TrainParams()
    name = studies.study_name("model1", tune_params(), train, 42, "abc")
    assert name.startswith("model1-") and name == studies.study_name("model1", tune_params(), train, 42, "abc")
    same_search = tune_params(n_trials=100, workers=4, storage="sqlite:///x.db", heartbeat_seconds=5)
    assert studies.study_name("model1", same_search, train, 42, "abc") == name
    for unused in (TrainParams(use_tuned=False), TrainParams(max_epochs=99), TrainParams(dropout=0.1)):
        assert studies.study_name("model1", tune_params(), unused, 42, "abc") == name  # not used by trials
    changed = [
        studies.study_name("model1", tune_params(space={"dropout": {"low": 0.0, "high": 0.4}}), train, 42, "abc"),
        studies.study_name("model1", tune_params(objective="val_accuracy"), train, 42, "abc"),
        studies.study_name("model1", tune_params(max_epochs=3), train, 42, "abc"),
        studies.study_name("model1", tune_params(), TrainParams(kernel_size=5), 42, "abc"),
        studies.study_name("model1", tune_params(), train, 43, "abc"),
        studies.study_name("model1", tune_params(), train, 42, "other split"),
        studies.study_name("model2", tune_params(), train, 42, "abc"),
    ]
    assert name not in changed and len(set(changed)) == len(changed)


def test_direction_follows_the_objective():
    assert studies.direction(Objective.val_loss) == "minimize"
    assert studies.direction(Objective.val_balanced_accuracy) == "maximize"
    assert studies.direction(Objective.held_out_accuracy) == "maximize"
    assert studies.direction(Objective.held_out_loss) == "minimize"
    assert Objective.held_out_loss.held_out and not Objective.val_loss.held_out


def test_sampler_seeds_differ_per_worker_and_on_resume():
    assert studies.sampler_seed(42, 0, 0) == 42
    seeds = {studies.sampler_seed(42, worker, before) for worker in range(3) for before in (0, 5)}
    assert len(seeds) == 6


def test_zero_allowed_range_is_a_conditional_parameter_recording_the_value_used():
    dimension = FloatRange(low=1e-6, high=1e-2, log=True, zero=True)
    assert studies.decode({"l2": dimension}, {"l2_zero": True}) == {"l2": 0.0}
    assert studies.decode({"l2": dimension}, {"l2_zero": False, "l2": 5e-5}) == {"l2": 5e-5}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    tune = tune_params()
    values = []
    for _ in range(400):
        trial = study.ask()
        values.append(studies.suggest_train_params(trial, tune, TrainParams()).l2_kernel)
        study.tell(trial, 0.0)
    zeros = sum(value == 0.0 for value in values) / len(values)
    assert 0.4 < zeros < 0.6  # a yes/no choice first
    assert all(value == 0.0 or 1e-6 <= value <= 1e-2 for value in values)
    # What Optuna (and so the dashboard) records is the value used: no sampled l2_kernel beside a zero.
    for trial, value in zip(study.trials, values, strict=True):
        assert trial.params["l2_kernel_zero"] == (value == 0.0)
        assert trial.params.get("l2_kernel") == (None if value == 0.0 else value)


def test_a_fixed_train_value_is_not_searched_and_names_another_study():
    tuned = parse_params(raw_params())
    raw = raw_params()
    raw["train"]["dropout"] = 0.5
    fixed = parse_params(raw)
    assert "dropout" in tuned.tuned_fields and "dropout" in tuned.search().space
    assert "dropout" not in fixed.tuned_fields and "dropout" not in fixed.search().space
    assert fixed.train.dropout == 0.5 and tuned.train.dropout == tuned.tune.space["dropout"].start
    raw["train"]["dropout"] = 0.2
    other = parse_params(raw)

    def name(params):
        return studies.study_name("model1", params.search(), params.train, 42, "abc")

    assert len({name(tuned), name(fixed), name(other)}) == 3
    study = memory_study(fixed.search())
    assert "dropout" not in studies.suggest_raw(study.ask(), fixed.search().space)


def test_study_tells_the_dashboard_its_metric_and_what_it_is():
    study = studies.open_study(
        "s", optuna.storages.InMemoryStorage(), tune_params(), 0, description={"model": "model1", "classes": "A vs B"}
    )
    assert study.metric_names == ["val_loss"]
    assert study.user_attrs["model"] == "model1" and study.user_attrs["classes"] == "A vs B"


def test_suggested_train_params_use_the_tune_epoch_budget():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    train = studies.suggest_train_params(trial, tune_params(max_epochs=3), TrainParams(max_epochs=30))
    assert train.max_epochs == 3 and train.filters in (4, 8) and 1 <= train.conv_blocks <= 3


def test_same_seed_gives_the_same_trial_sequence():
    def sequence() -> list[dict]:
        study = memory_study(tune_params(), seed=7)
        for _ in range(6):
            trial = study.ask()
            studies.suggest_raw(trial, tune_params().space)
            study.tell(trial, trial.params["dropout"])
        return [trial.params for trial in study.trials]

    assert sequence() == sequence()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_trials_of_dead_processes_fail_and_live_ones_stay_running():
    study = memory_study(tune_params())
    dead, alive, unmarked = study.ask(), study.ask(), study.ask()
    for trial, pid in ((dead, dead_pid()), (alive, os.getppid())):
        trial.set_user_attr(studies.HOST_ATTR, studies.socket.gethostname())
        trial.set_user_attr(studies.PID_ATTR, pid)
    assert studies.fail_dead_trials(study, grace_seconds=3600) == [dead.number]
    assert studies.fail_dead_trials(study, grace_seconds=0) == [unmarked.number]
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]


def test_study_reopens_from_its_journal_file(tmp_path: Path):
    journal = tmp_path / "tune" / "optuna.journal"
    first = studies.open_study("m-1", studies.open_storage(str(journal), 30), tune_params(), 0)
    first.tell(first.ask({"dropout": optuna.distributions.FloatDistribution(0, 0.5)}), 0.5)
    again = studies.open_study("m-1", studies.open_storage(str(journal), 30), tune_params(), 0)
    assert len(again.trials) == 1 and studies.finished_count(studies.state_counts(again)) == 1


def test_best_params_decode_the_best_trial_and_fall_back_to_train_defaults():
    tune = tune_params()
    empty = studies.best_params(None, tune, TrainParams(), "model1")
    assert empty["study_name"] is None and empty["best_value"] is None
    assert empty["params"] == {"dropout": 0.3, "l2_kernel": 1e-4, "filters": 16, "conv_blocks": 3}
    study = memory_study(tune)
    for value in (0.4, 0.2):
        trial = study.ask()
        studies.suggest_raw(trial, tune.space)
        trial.set_user_attr("train_accuracy", 0.9)
        study.tell(trial, value)
    pruned = study.ask()
    studies.suggest_raw(pruned, tune.space)
    study.tell(pruned, state=TrialState.PRUNED)
    best = studies.best_params(study, tune, TrainParams(), "model1")
    assert best["best_trial"] == 1 and best["best_value"] == 0.2 and best["n_pruned"] == 1
    assert set(best["params"]) == set(SPACE) and best["train_accuracy"] == 0.9
    TrainParams.model_validate({**TrainParams().model_dump(), **best["params"]})  # train can use them
    frame = studies.trials_frame(study.trials, tune.space)
    assert list(frame["state"]) == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert {"dropout", "l2_kernel", "train_val_gap"} <= set(frame.columns)


def test_importance_plot_needs_two_complete_trials():
    study = memory_study(tune_params())
    figure, reason = studies.importance_figure(study, "t", 0)
    assert reason is not None and "at least 2 complete trials" in reason
    for value in (0.4, 0.2, 0.3):
        trial = study.ask()
        studies.suggest_raw(trial, tune_params().space)
        study.tell(trial, value)
    figure, reason = studies.importance_figure(study, "t", 0)
    assert reason is None and figure.axes


def test_the_repository_params_hold_a_valid_default_space():
    params = load_params(REPO / "params.yaml")
    assert params.tune.space and params.tune.objective is Objective.val_loss


@pytest.mark.parametrize(
    ("space", "key", "words"),
    [
        ({"dropout": {"low": 0.5, "high": 0.1}}, "tune.space.dropout", "empty range"),
        ({"dropout": {"low": 0.3, "high": 0.3}}, "tune.space.dropout", "empty range"),
        ({"conv_blocks": {"low": 4, "high": 2}}, "tune.space.conv_blocks", "empty range"),
        ({"head": {"choices": ["global_pool", "average"]}}, "head", "not allowed"),
        ({"head": {"choices": []}}, "tune.space.head", "must not be empty"),
        ({"dropuot": {"low": 0.0, "high": 0.5}}, "dropuot", "not a tunable train field"),
        ({"patience": {"low": 1, "high": 5}}, "patience", "not a tunable train field"),
        ({"l2_kernel": {"low": 0.0, "high": 0.1, "log": True}}, "tune.space.l2_kernel", "log range needs low > 0"),
        ({"conv_blocks": {"choices": [2, 7]}}, "conv_blocks", "not allowed"),
    ],
)
def test_bad_search_spaces_stop_with_one_line_naming_the_key(space: dict, key: str, words: str):
    with pytest.raises(ParamsError) as caught:
        parse_params(raw_params(space=space))
    message = str(caught.value)
    assert "\n" not in message and key in message and words in message, message


def test_too_many_pooling_blocks_for_the_patch_size_stop():
    raw = raw_params(space={"conv_blocks": {"choices": [2, 6], "start": 2}})
    raw["patches"].update(patch_size=32, stride=32)
    with pytest.raises(ParamsError, match=r"tune\.space\.conv_blocks: 6 pooling blocks shrink a 32px patch"):
        parse_params(raw)


def test_first_trial_of_a_new_study_is_params_train():
    tune = load_params(REPO / "params.yaml").tune
    train = TrainParams(l2_bias=0.0, dropout=0.3, filters=16)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    studies.enqueue_defaults(study, tune, train)
    trial = study.ask()
    values = studies.decode(tune.space, studies.suggest_raw(trial, tune.space))
    expected = {name: value for name, value in train.model_dump(mode="json").items() if name in tune.space}
    assert values == expected
    assert values["l2_bias"] == 0.0
    study.tell(trial, 1.0)
    studies.enqueue_defaults(study, tune, train)  # a study with trials gets nothing enqueued again
    assert studies.decode(tune.space, studies.suggest_raw(study.ask(), tune.space)) != expected


def test_held_out_loss_is_the_mean_cross_entropy_of_the_true_class() -> None:
    from pathcnn.trials import held_out_loss

    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    assert held_out_loss(np.array([0, 1, 1]), probabilities, 2) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    # A fold whose held-out images are all of one class is still scored.
    assert held_out_loss(np.array([1, 1]), probabilities[:2], 2) == pytest.approx(-np.mean(np.log([0.1, 0.8])))
