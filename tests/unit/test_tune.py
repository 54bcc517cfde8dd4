"""callqa.model.tune: real Optuna (SQLite storage), real MLflow, the real train.fit on tiny data."""

import json

import optuna
import pytest
from tiny_model_data import tiny_data

from callqa.config import MlflowConfig, SearchSpace, TrainConfig, TuneConfig
from callqa.model import train, tune

SMALL_SPACE = SearchSpace(freeze=["frozen", "top_k"], batch_size=[16], top_k_layers=(1, 1))
TRAIN = TrainConfig(hidden=16, device="cpu", progress=False, epochs=8, patience=3)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Two workers on one SQLite study: the first prunes its second trial, the second adds one."""
    import mlflow

    root = tmp_path_factory.mktemp("tune")
    mlflow_cfg = MlflowConfig(
        tracking_uri=f"sqlite:///{root}/mlflow/mlflow.db",
        artifact_location=str(root / "mlflow" / "artifacts"),
        experiment="tune-test",
    )
    tune_cfg = TuneConfig(
        storage=f"sqlite:///{root}/tune/optuna.db",
        study_name="t",
        n_trials=2,
        epochs=2,
        max_train_rows=20,
        pruner_startup_trials=1,
        out=root / "tune" / "best_params.json",
        search_space=SMALL_SPACE,
    )
    data = tiny_data()
    fits = []

    def fit_second_reports_bad(cfg, data, out_dir, on_epoch):
        """The real fit; the 2nd call's epoch scores reach the pruner as -1 (below any median)."""
        fits.append(cfg)
        report = on_epoch
        if len(fits) == 2:
            report = lambda epoch, m: on_epoch(epoch, {**m, "val_macro_f1": -1.0})  # noqa: E731
        return train.fit(cfg, data, out_dir, on_epoch=report)

    first = tune.run(tune_cfg, TRAIN, mlflow_cfg, data, fit=fit_second_reports_bad)
    # A second worker: more startup trials, so its one trial is never pruned.
    second_cfg = tune_cfg.model_copy(update={"n_trials": 1, "pruner_startup_trials": 10})
    second = tune.run(second_cfg, TRAIN, mlflow_cfg, data)
    study = optuna.load_study(study_name="t", storage=tune_cfg.storage)
    return {
        "first": first,
        "second": second,
        "study": study,
        "fits": fits,
        "cfg": tune_cfg,
        "client": mlflow.MlflowClient(mlflow_cfg.tracking_uri),
        "experiment": mlflow.MlflowClient(mlflow_cfg.tracking_uri).get_experiment_by_name(
            "tune-test"
        ),
    }


def test_two_workers_share_one_study_and_prune(tuned):
    first, second, study = tuned["first"], tuned["second"], tuned["study"]
    assert (first["trials"], first["complete"], first["pruned"]) == (2, 1, 1)
    assert (second["trials"], second["complete"], second["pruned"]) == (1, 1, 0)
    assert second["study_trials"] == len(study.trials) == 3
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert study.trials[1].intermediate_values == {1: -1.0}  # pruned after its first epoch
    # Trials train short: tune.epochs and tune.max_train_rows override the train section.
    assert all(cfg.epochs == 2 and cfg.max_train_rows == 20 for cfg in tuned["fits"])
    assert len(study.trials[0].intermediate_values) == 2


def test_best_params_file_is_the_study_best_and_valid_train_config(tuned):
    study = tuned["study"]
    doc = tune.load_best(tuned["cfg"].out)
    assert doc == json.loads(tuned["cfg"].out.read_text())
    assert doc["value"] == study.best_value and doc["trial"] == study.best_trial.number
    assert doc["study"] == "t" and doc["params"] == study.best_trial.params
    cfg = TrainConfig.model_validate({**TRAIN.model_dump(), **doc["params"]})
    assert cfg.freeze in ("frozen", "top_k")
    assert tuned["second"]["best_params"] == doc["params"]


def test_each_trial_is_a_nested_mlflow_run(tuned):
    client, exp, study = tuned["client"], tuned["experiment"], tuned["study"]
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.info.run_name == "tune"]
    trials = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert [p.info.run_id for p in parents] == [
        tuned["first"]["mlflow_run_id"],
        tuned["second"]["mlflow_run_id"],
    ]
    assert [r.info.run_name for r in trials] == ["trial-0", "trial-1", "trial-2"]
    expected_parent = [parents[0], parents[0], parents[1]]
    for run, parent, trial in zip(trials, expected_parent, study.trials, strict=True):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["optuna.state"] == trial.state.name.lower()
        assert run.info.status == "FINISHED"
        assert {k: str(v) for k, v in trial.params.items()} == run.data.params
        steps = client.get_metric_history(run.info.run_id, "val_macro_f1")
        assert [m.step for m in steps] == sorted(trial.intermediate_values)
    assert "best_val_macro_f1" not in trials[1].data.metrics  # pruned: no final score
    assert parents[0].data.tags["lineage.arrays.npz"] == "ab" * 32
    assert parents[1].data.tags["optuna.seed"] == "2"  # seed + trials already in the study
    assert parents[1].data.params["tune.storage"] == tuned["cfg"].storage


def test_parent_runs_hold_best_params_and_plots(tuned):
    client = tuned["client"]
    first = {a.path for a in client.list_artifacts(tuned["first"]["mlflow_run_id"], "optuna")}
    second = {a.path for a in client.list_artifacts(tuned["second"]["mlflow_run_id"], "optuna")}
    assert first == {"optuna/history.html", "optuna/epochs.html"}  # 1 complete trial
    assert second == first | {"optuna/importances.html"}  # 2 complete trials
    names = {a.path for a in client.list_artifacts(tuned["second"]["mlflow_run_id"])}
    assert "best_params.json" in names


def test_suggest_stays_in_the_space_and_samples_conditional_params_only_when_used():
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        p = tune.suggest(trial, space)
        study.tell(trial, 0.0)
        seen.add(p["freeze"])
        assert space.lr[0] <= p["lr"] <= space.lr[1]
        assert space.head_lr[0] <= p["head_lr"] <= space.head_lr[1]
        assert space.dropout[0] <= p["dropout"] <= space.dropout[1]
        assert p["batch_size"] in space.batch_size and p["fusion"] in space.fusion
        assert ("top_k_layers" in p) == (p["freeze"] == "top_k")
        assert ("lora_rank" in p) == (p["freeze"] == "lora")
        assert set(p) <= set(tune.SEARCHED)
        TrainConfig.model_validate({**TRAIN.model_dump(), **p})  # every sample is a valid config
    assert seen == set(space.freeze)


def test_no_completed_trial_writes_no_file(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    assert tune.write_best(tmp_path / "best.json", study) is None
    assert not (tmp_path / "best.json").exists()


def test_load_best_rejects_a_foreign_file(tmp_path):
    bad = tmp_path / "best.json"
    bad.write_text(json.dumps({"params": {"lr": 1e-4, "hidden": 64}}))
    with pytest.raises(ValueError, match="not a `callqa tune` best-params file"):
        tune.load_best(bad)


def test_search_space_and_storage_url_checks():
    with pytest.raises(ValueError, match="lr"):
        SearchSpace(lr=(1e-3, 1e-5))
    with pytest.raises(ValueError, match="freeze"):
        SearchSpace(freeze=[])
    url = "postgresql://tuner:s3cret@db:5432/optuna"
    assert tune.redact(url) == "postgresql://tuner:***@db:5432/optuna"
    assert tune.redact("sqlite:///data/tune/optuna.db") == "sqlite:///data/tune/optuna.db"


@pytest.mark.parametrize("url, says", [
    ("garbage", "cannot open the study"), ("foo://bar", "cannot open the study"),
    ("postgresql://tuner:s3cret@127.0.0.1:1/optuna", "cannot open the study"),
    ("sqlite:///", "needs a file path"),
])  # fmt: skip
def test_a_storage_url_that_cannot_hold_a_study_is_one_clear_error(url, says):
    """Found from outside: sqlalchemy / driver tracebacks, or a throwaway in-memory study."""
    from callqa.config import TuneConfig

    cfg = TuneConfig(storage=url)
    with pytest.raises(ValueError, match=says) as err:
        tune._open_study(cfg, optuna.pruners.NopPruner())
    assert "tune.storage" in str(err.value) and "s3cret" not in str(err.value)
