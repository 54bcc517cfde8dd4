"""`callqa register / promote / rollback` on a real MLflow registry (sqlite in a temp dir):
the first version is promoted, a worse candidate is refused with its reason, an equal one is
promoted, rollback restores the one it replaced, and both `models:/NAME/Production` and
`models:/NAME@production` load the pipeline, which scores a synth call."""

import base64
import json
import warnings

import jsonschema
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app
from callqa.config import load_params
from callqa.schemas import json_schema

pytestmark = pytest.mark.slow
runner = CliRunner()
NAME = "callqa-scorer-test"


def _cli(args, params, code=0):
    res = runner.invoke(app, [*args, "--params", str(params)], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("registry")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["mlflow"].update(
        tracking_uri=f"sqlite:///{d}/mlflow.db", artifact_location=str(d / "artifacts")
    )
    p["registry"].update(name=NAME, model_dir=None)
    # Timing on a shared 2-core CI host swings by half between calls even when both versions
    # are scored in turn; the speed rule is tested on fixed numbers (test_calibrate's gate tests).
    p["registry"]["gate"].update(
        eval_calls=str(d / "eval"), eval_n_calls=3, eval_seed=880123, max_x_real_time_growth=1.0
    )
    p["score"]["scorecard"] = str(ROOT / "scorecards" / "default.yaml")
    good = d / "params.yaml"
    good.write_text(yaml.safe_dump(p))
    # a worse scorecard: a greeting only counts with a word no call has, so every call fails
    card = yaml.safe_load((ROOT / "scorecards" / "default.yaml").read_text())
    for check in card["checks"]:
        if check["id"] == "greeting":
            check.update(type="phrase", patterns=["\\bzyxwvut\\b"])
            check.pop("checks")
    (d / "cards").mkdir()
    (d / "cards" / "worse.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    p["score"]["scorecard"] = str(d / "cards" / "worse.yaml")
    worse = d / "worse.yaml"
    worse.write_text(yaml.safe_dump(p))
    return d, good, worse


def _registry(params_path):
    import mlflow
    from callqa import tracking

    tracking.configure(load_params(params_path).mlflow)
    return mlflow, mlflow.MlflowClient()


def test_register_promote_refuse_rollback(project):
    d, good, worse = project
    assert "callqa promote --version 1" in _cli(["register"], good)
    out = _cli(["promote"], good)
    assert "promoted" in out and "no production version yet" in out
    mlflow, client = _registry(good)
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert [str(v.version) for v in client.get_latest_versions(NAME, ["Production"])] == ["1"]

    # the registered pipeline scores a call, by stage and by alias
    call = sorted((d / "eval").glob("*.wav"))[0]
    frame = pd.DataFrame({"audio_b64": [base64.b64encode(call.read_bytes()).decode()]})
    for uri in (f"models:/{NAME}/Production", f"models:/{NAME}@production"):
        result = json.loads(mlflow.pyfunc.load_model(uri).predict(frame)[0])
        jsonschema.validate(result, json_schema())
        assert result["duration_s"] > 5 and result["checks"]
    bad = pd.DataFrame({"audio_b64": [base64.b64encode(b"not audio at all").decode()]})
    err = json.loads(mlflow.pyfunc.load_model(f"models:/{NAME}@production").predict(bad)[0])
    assert err["error"]["code"] == "not_audio" and "not audio at all" not in json.dumps(err)

    # a worse candidate is refused, with the metric that dropped as the reason
    _cli(["register"], worse)
    out = _cli(["promote"], worse, code=3)
    assert "refused" in out and "check_f1.greeting" in out
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert client.get_model_version(NAME, "2").current_stage == "None"

    # an equal candidate passes (min_improvement 0), the old production is archived
    _cli(["register"], good)
    assert "promoted" in _cli(["promote", "--version", "3"], good)
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "3"
    assert client.get_model_version(NAME, "1").current_stage == "Archived"
    assert client.get_model_version(NAME, "3").current_stage == "Production"

    # rollback: production back to 1, with its stage
    assert "production 3 -> 1" in _cli(["rollback"], good)
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert client.get_model_version(NAME, "1").current_stage == "Production"
    assert client.get_model_version(NAME, "3").current_stage == "Archived"
    # every decision is a run in the experiment
    runs = mlflow.search_runs(experiment_names=["callqa"])
    assert {"register", "promote", "rollback"} <= set(runs["tags.mlflow.runName"])
    assert set(runs["tags.callqa.decision"].dropna()) >= {"promoted", "refused", "rollback"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_follows_the_production_alias(project, tmp_path):
    """`callqa serve` loads models:/NAME@production; a promotion moves what it serves, in the
    background, while requests keep succeeding."""
    import subprocess
    import sys
    import time

    import httpx

    d, good, _ = project
    p = yaml.safe_load(good.read_text())
    p["serve"].update(model_uri=f"models:/{NAME}@production", reload_interval_s=1.0)
    params = tmp_path / "serve.yaml"
    params.write_text(yaml.safe_dump(p))
    _, client = _registry(good)
    before = str(client.get_model_version_by_alias(NAME, "production").version)
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "callqa.cli", "serve", "--port", str(port), "--params", str(params)],
        cwd=d, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    call = sorted((d / "eval").glob("*.wav"))[0].read_bytes()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            deadline = time.time() + 180
            while time.time() < deadline:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            res = http.post("/v1/score", content=call, headers={"Content-Type": "audio/wav"})
            assert res.status_code == 200, res.text
            assert res.headers["X-Callqa-Model-Version"] == before
            jsonschema.validate(res.json(), json_schema())
            # a new version is promoted while requests keep coming
            _cli(["register"], good)
            new = str(max(int(v.version) for v in client.search_model_versions(f"name='{NAME}'")))
            assert "promoted" in _cli(["promote", "--version", new], good)
            served = set()
            deadline = time.time() + 120
            while new not in served and time.time() < deadline:
                res = http.post("/v1/score", content=call, headers={"Content-Type": "audio/wav"})
                assert res.status_code == 200, res.text
                served.add(res.headers["X-Callqa-Model-Version"])
            assert new in served
            assert http.get("/readyz").json()["version"] == new
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
