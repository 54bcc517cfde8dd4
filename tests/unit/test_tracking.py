"""callqa.tracking against a real MLflow store (SQLite + artifacts in a temp dir)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from callqa import tracking
from callqa.config import MlflowConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> MlflowConfig:
    root = tmp_path_factory.mktemp("mlflow")
    return MlflowConfig(
        tracking_uri=f"sqlite:///{root}/db/mlflow.db",
        artifact_location=str(root / "artifacts"),
        experiment="callqa-test",
    )


@pytest.fixture
def client(store, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(store)
    yield mlflow.MlflowClient()
    while mlflow.active_run():  # a failed test must not leave a run open for the next one
        mlflow.end_run()


def test_configure_creates_store_and_experiment_with_artifact_location(store, client):
    assert Path(store.tracking_uri.removeprefix("sqlite:///")).is_file()
    exp = client.get_experiment_by_name("callqa-test")
    assert exp.artifact_location.removeprefix("file://") == store.artifact_location
    tracking.configure(store)  # again: the experiment exists, nothing changes
    assert client.get_experiment_by_name("callqa-test").experiment_id == exp.experiment_id


def test_nested_runs_params_metrics_per_step_and_artifacts(store, client, tmp_path):
    model_dir = tmp_path / "callqa-qa"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"intents": ["greeting"]}')
    (model_dir / "model.safetensors").write_bytes(b"\0" * 64)
    with tracking.run("tune", tags={"purpose": "test"}) as parent:
        tracking.log_params({"train": {"lr": 1e-4, "freeze": "top_k"}, "layers": [6, 12]})
        with tracking.run("trial-0", nested=True) as child:
            for epoch, f1 in enumerate([0.5, 0.7, float("nan")]):
                tracking.log_metrics({"val_macro_f1": f1, "train_loss": None}, step=epoch)
            tracking.log_dict({"a": 1}, "summary.json")
            tracking.log_text("hello", "notes/readme.txt")
            tracking.log_model_dir(model_dir)
    p = client.get_run(parent.info.run_id)
    c = client.get_run(child.info.run_id)
    assert p.info.status == c.info.status == "FINISHED"
    assert p.data.tags["purpose"] == "test"
    assert c.data.tags["mlflow.parentRunId"] == p.info.run_id
    assert "mlflow.parentRunId" not in p.data.tags
    assert p.data.params == {"train.lr": "0.0001", "train.freeze": "top_k", "layers": "[6, 12]"}
    history = client.get_metric_history(c.info.run_id, "val_macro_f1")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.7)]  # NaN skipped
    assert "train_loss" not in c.data.metrics
    names = {a.path for a in client.list_artifacts(c.info.run_id)}
    assert names == {"summary.json", "notes", "model"}
    model_files = {a.path for a in client.list_artifacts(c.info.run_id, "model")}
    assert model_files == {"model/config.json", "model/model.safetensors"}
    on_disk = Path(store.artifact_location) / c.info.run_id / "artifacts" / "model"
    assert (on_disk / "model.safetensors").read_bytes() == b"\0" * 64
    assert len(c.data.tags["model.sha256"]) == 32


def test_failed_block_marks_run_failed_and_reraises(client):
    with pytest.raises(ZeroDivisionError):
        with tracking.run("broken") as r:
            1 / 0  # noqa: B018
    assert client.get_run(r.info.run_id).info.status == "FAILED"
    import mlflow

    assert mlflow.active_run() is None


def test_long_param_values_are_cut_to_mlflow_limits(client):
    with tracking.run("long") as r:
        tracking.log_params({"paths": "x" * 10_000})
    value = client.get_run(r.info.run_id).data.params["paths"]
    assert len(value) == tracking.MAX_PARAM_VALUE_CHARS and value.endswith("...")


def test_lineage_tags_hash_files_folders_git_and_dvc_lock(client, tmp_path):
    repo = tmp_path / "repo"
    (repo / "features").mkdir(parents=True)
    (repo / "manifest.parquet").write_bytes(b"manifest")
    (repo / "features" / "a.npy").write_bytes(b"a")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    paths = {"manifest": repo / "manifest.parquet", "features": repo / "features"}
    paths["labels"] = repo / "nope.csv"
    with tracking.run("train") as r:
        returned = tracking.log_lineage(paths, cwd=repo, hashes={"arrays.npz": "ab" * 32})
    tags = client.get_run(r.info.run_id).data.tags
    import hashlib

    assert tags["lineage.manifest"] == hashlib.sha256(b"manifest").hexdigest()
    assert tags["lineage.labels"] == "missing"
    assert tags["lineage.arrays.npz"] == "ab" * 32
    assert tags["lineage.git_commit"] == "unknown"  # not a git checkout
    assert tags["lineage.dvc_lock"] == hashlib.sha256(b"schema: '2.0'\n").hexdigest()
    assert {k: tags[k] for k in returned} == returned
    before = tags["lineage.features"]
    (repo / "features" / "a.npy").write_bytes(b"b")
    assert tracking.lineage(paths, cwd=repo)["lineage.features"] != before

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "dvc.lock"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert tracking.git_commit(repo) == head
    (repo / "dvc.lock").write_text("changed\n")
    assert tracking.git_commit(repo) == head + "-dirty"


def test_env_tracking_uri_wins_over_params(store, client, tmp_path, monkeypatch):
    env_db = tmp_path / "env" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{env_db}")
    cfg = store.model_copy(update={"artifact_location": str(tmp_path / "env-artifacts")})
    tracking.configure(cfg)
    with tracking.run("env") as r:
        tracking.log_metrics({"x": 1})
    import mlflow

    assert env_db.is_file()
    assert mlflow.MlflowClient(f"sqlite:///{env_db}").get_run(r.info.run_id).data.metrics == {
        "x": 1.0
    }
    with pytest.raises(mlflow.exceptions.MlflowException):  # not in the params store
        mlflow.MlflowClient(store.tracking_uri).get_run(r.info.run_id)


def test_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = MlflowConfig(
        tracking_uri="sqlite:///off/mlflow.db", artifact_location="off/art", enabled=False
    )
    tracking.configure(cfg)
    (tmp_path / "m").mkdir()
    with tracking.run("train") as r:
        assert r is None and not tracking.is_active()
        with tracking.run("child", nested=True):
            tracking.log_params({"a": 1})
            tracking.log_metrics({"b": 2.0}, step=0)
            tracking.set_tags({"c": "d"})
            tracking.log_dict({"e": 1}, "e.json")
            tracking.log_text("f", "f.txt")
            tracking.log_artifact(tmp_path / "m")
            tracking.log_model_dir(tmp_path / "m")
            assert tracking.log_lineage({"m": tmp_path / "m"}) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no off/, no mlruns/


def test_outside_a_run_nothing_is_logged(client):
    import mlflow

    tracking.log_metrics({"x": 1.0})
    tracking.log_params({"y": 2})
    assert mlflow.active_run() is None  # MLflow did not start a run of its own


def test_flatten_and_list_values():
    assert tracking.flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a.b.c": 1, "d": 2}
    assert json.loads(tracking._text(["a", Path("b")], 100)) == ["a", "b"]


def test_existing_experiment_keeps_its_artifact_location_with_a_warning(store, client, caplog):
    moved = store.model_copy(update={"artifact_location": store.artifact_location + "-moved"})
    with caplog.at_level("WARNING", logger="callqa.tracking"):
        tracking.configure(moved)
    assert "keeps its artifact location" in caplog.text
    exp = client.get_experiment_by_name(store.experiment)
    assert exp.artifact_location.removeprefix("file://") == store.artifact_location


def test_import_loads_no_mlflow():
    code = "import sys, callqa.tracking; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_tracking_server_that_is_down_is_one_clear_error_in_seconds(monkeypatch):
    """Found from outside: MLflow's retries held `train` for minutes before it started."""
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:s3cret@127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingError, match="cannot be reached") as err:
        tracking.configure(MlflowConfig())
    assert time.monotonic() - t0 < tracking.REACH_TIMEOUT_S + 5
    assert "s3cret" not in str(err.value) and "$MLFLOW_TRACKING_URI" in str(err.value)
    assert not tracking._enabled


@pytest.mark.parametrize("uri", ["garbage", "foo://bar"])
def test_a_uri_mlflow_refuses_is_one_clear_error(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.TrackingError, match="mlflow.enabled: false"):
        tracking.configure(MlflowConfig())
