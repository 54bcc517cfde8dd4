"""The Prefect flows on a real (temporary) Prefect server: `score_inbox` scores a small inbox
(rules-only local Scorer) and publishes its artifact; `retrain` runs real `dvc repro` of a tiny
stage in a temp git + dvc project, registers and promotes on a sqlite MLflow registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow
sys.path.insert(0, str(ROOT / "flows"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))  # review_data


@pytest.fixture(scope="session")
def prefect_server():
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    return found[-1].data


def _params(d: Path, **flows) -> Path:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["score"].update(model=None, scorecard=str(ROOT / "scorecards" / "default.yaml"))
    p["flows"].update(retries=0, retry_delay_s=0, **flows)
    path = d / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def test_score_inbox_flow(prefect_server, tmp_path, realdata):
    from score_inbox import score_inbox

    params = _params(
        tmp_path, inbox_dir=str(tmp_path / "inbox"), results_dir=str(tmp_path / "results"),
        done_dir=str(tmp_path / "done"), quarantine_dir=str(tmp_path / "quarantine"),
        ledger=str(tmp_path / "ledger.sqlite"),
    )  # fmt: skip
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("sr_english_one_two_three.wav", "ps_goforward.wav"):
        shutil.copyfile(realdata / "asr" / name, inbox / name)
    (inbox / "garbage.wav").write_bytes(os.urandom(2000))
    old = time.time() - 60
    for f in inbox.iterdir():
        os.utime(f, (old, old))

    counts = score_inbox(str(params), "local")
    assert counts["scored"] == 2 and counts["quarantined"] == 1 and counts["failed"] == 0
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [
        "ps_goforward.wav", "sr_english_one_two_three.wav"]  # fmt: skip
    assert (tmp_path / "quarantine" / "garbage.wav.reason.txt").is_file()
    assert len((tmp_path / "results" / "results.jsonl").read_text().splitlines()) == 2
    md = _artifact("callqa-score-inbox")
    assert "| scored | 2 |" in md and "| quarantined | 1 |" in md

    # a second run: the same content dropped again is a duplicate, never scored
    shutil.copyfile(realdata / "asr" / "ps_goforward.wav", inbox / "again.wav")
    os.utime(inbox / "again.wav", (old, old))
    counts = score_inbox(str(params), "local")
    assert counts["duplicate"] == 1 and counts["scored"] == 0
    assert len((tmp_path / "results" / "results.jsonl").read_text().splitlines()) == 2


TINY_DVC = """stages:
  export:
    cmd: {python} -m callqa.cli review export --params params.yaml
    params: [review]
    outs: [labels.parquet]
  evaluate:
    cmd: python metrics.py
    deps: [metrics.py, labels.parquet]
    metrics: [reports/eval/metrics.json]
"""
METRICS_PY = """import json, os
os.makedirs("reports/eval", exist_ok=True)
json.dump({"f1": 0.5}, open("reports/eval/metrics.json", "w"))
"""


def test_retrain_flow(prefect_server, tmp_path):
    from retrain import retrain

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=tmp_path,
                   check=True, env=env)  # fmt: skip
    (tmp_path / "dvc.yaml").write_text(TINY_DVC.format(python=sys.executable))
    (tmp_path / "metrics.py").write_text(METRICS_PY)
    params = _params(tmp_path)
    p = yaml.safe_load(params.read_text())
    # one reviewed call in the review database: the flow's forced export picks it up
    from review_data import make_result

    from callqa.review.store import ReviewStore

    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}")
    store.upgrade()
    store.add_review(store.add_scored(make_result("r1"), source="api"), "greeting", "ana", "agree")
    p["review"].update(db_url=f"sqlite:///{tmp_path / 'review.db'}", labels_out="labels.parquet")
    p["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                       artifact_location=str(tmp_path / "artifacts"))  # fmt: skip
    p["registry"].update(name="callqa-scorer-flows-test", model_dir=None)
    p["registry"]["gate"].update(eval_calls=str(tmp_path / "eval"), eval_n_calls=3)
    params.write_text(yaml.safe_dump(p))

    decision = retrain(str(params), "evaluate")
    assert json.loads((tmp_path / "reports/eval/metrics.json").read_text()) == {"f1": 0.5}
    assert decision["candidate"] == "1" and decision["promoted"], decision
    md = _artifact("callqa-retrain")
    assert "promoted" in md and "| f1 | 0.5 |" in md
    assert "Reviewed calls in the labels: 1" in md


def test_the_flow_modules_turn_telemetry_off_before_prefect_reads_its_settings():
    """Found from outside: `python flows/score_inbox.py ...` (the README's way) started Prefect's
    temporary server with analytics on: the offline defaults came only when params loaded."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}  # fmt: skip
    env["PYTHONPATH"] = str(ROOT / "src")
    code = (
        "import sys; sys.path.insert(0, 'flows'); import score_inbox, retrain; "
        "from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED as A; print(A.value())"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"
