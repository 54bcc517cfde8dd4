"""Calibration on a hand-labelled toy review DB (real SQLite through ReviewStore): exact
precision / recall / agreement, Wilson intervals, threshold proposals, the HTML, MLflow, and
the promotion gate's agreement rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from review_data import make_result, write_call

from callqa import tracking
from callqa.config import MlflowConfig, Params
from callqa.review import calibrate as cal
from callqa.review.calibration_report import render
from callqa.review.store import ReviewStore

# A greeting model whose probabilities separate people's labels perfectly at 0.70: calls
# without a greeting sit at 0.10-0.60, calls with one at 0.70-0.95. The system's threshold
# is 0.50, so it wrongly passes the calls at 0.50-0.60.
MISSING = [round(0.10 + 0.025 * i, 2) for i in range(21)]  # 0.10 ... 0.60
PRESENT = [0.70] * 6 + [round(0.72 + 0.0125 * i, 2) for i in range(19)]  # 0.70 ... 0.95


def _store(tmp_path: Path, share: float = 0.5) -> ReviewStore:
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}", random_seed=0, random_share=share)
    store.upgrade()
    return store


def _review_truth(store: ReviewStore, sid: int, check_id: str, truth_passed: bool) -> None:
    """Answer as a reviewer who knows the truth: agree when the system got it right."""
    (v,) = [v for v in store.verdicts(sid) if v.check_id == check_id]
    store.add_review(sid, check_id, "ana", "agree" if v.passed == truth_passed else "disagree")


@pytest.fixture
def greeting_store(tmp_path) -> ReviewStore:
    store = _store(tmp_path)
    for i, p in enumerate(MISSING + PRESENT):
        sid = store.add_scored(make_result(f"g{i:03d}", p_greeting=p), "score")
        _review_truth(store, sid, "greeting", truth_passed=p >= 0.7)
    return store


def test_wilson_interval_matches_the_textbook_value():
    # 8 of 10: Wilson 95% = (0.4902, 0.9433) (Newcombe 1998, method 3)
    assert cal.wilson(8, 10) == (0.4902, 0.9433)
    assert cal.wilson(0, 5)[0] == 0.0 and cal.wilson(5, 5)[1] == 1.0
    assert cal.wilson(0, 0) == (None, None)


def test_rules_check_precision_recall_agreement_by_hand(tmp_path):
    store = _store(tmp_path, share=0.0)  # nothing in the random share: all of it is "rest"
    # system fails 4 calls: people agree on 3 (TP 3, FP 1); passes 6: people say 2 failed
    # (FN 2, TN 4). precision 3/4, recall 3/5, agreement 7/10, F1 6/9.
    answers = ["agree"] * 3 + ["disagree"] + ["disagree"] * 2 + ["agree"] * 4
    for i, answer in enumerate(answers):
        fail = ("forbidden_language",) if i < 4 else ()
        sid = store.add_scored(make_result(f"r{i:02d}", fail=fail), "score")
        store.add_review(sid, "forbidden_language", "ana", answer)
        store.add_review(sid, "closing", "ana", "na")  # left out
    rows, n_na = cal.load_labelled(store)
    assert (len(rows), n_na) == (10, 10)
    report = cal.calibrate(rows, seed=0, min_reviews=5)
    st = report["checks"]["forbidden_language"]["shares"]
    assert st["random"]["n"] == 0 and st["rest"] == st["all"]
    a = st["all"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (3, 1, 2, 4)
    assert a["precision"]["value"] == 0.75 and a["recall"]["value"] == 0.6
    assert a["agreement"]["value"] == 0.7 and a["f1"]["value"] == pytest.approx(0.6667)
    assert (a["agreement"]["lo"], a["agreement"]["hi"]) == cal.wilson(7, 10)
    assert a["f1"]["lo"] <= 0.6667 <= a["f1"]["hi"]
    assert report["checks"]["forbidden_language"]["threshold"] is None  # rules: no proposal


def test_random_share_and_rest_split_the_labels(greeting_store):
    rows, _ = cal.load_labelled(greeting_store)
    shares = cal.calibrate(rows, seed=0, min_reviews=5)["checks"]["greeting"]["shares"]
    n_random = sum(r.random_share for r in rows)
    assert 0 < n_random < len(rows)
    assert shares["random"]["n"] + shares["rest"]["n"] == shares["all"]["n"] == len(rows)
    random_rows = [r for r in rows if r.random_share]
    hand = cal.share_stats([r.system_passed for r in random_rows],
                           [r.human_passed for r in random_rows], seed=0)  # fmt: skip
    assert shares["random"] == hand


def test_threshold_proposed_on_half_a_reported_on_half_b(greeting_store):
    rows, _ = cal.load_labelled(greeting_store)
    t = cal.calibrate(rows, seed=0, min_reviews=5)["checks"]["greeting"]["threshold"]
    assert t["status"] == "proposed" and t["passes_on_hit"] is True
    assert t["current"] == 0.5
    assert 0.6 < t["proposed"] <= 0.7
    assert t["proposed"] == 0.7  # the perfect threshold nearest the current one
    assert t["f1_a_proposed"] == 1.0 and t["f1_b_proposed"] == 1.0
    # half B's calls at 0.50-0.60 are passed by the current threshold but lack a greeting
    b_missed = [p for i, p in enumerate(MISSING + PRESENT)
                if 0.5 <= p <= 0.6 and cal.half_of(f"g{i:03d}", 0) == "B"]  # fmt: skip
    assert b_missed and t["f1_b_current"] < 1.0
    assert t["recommendation"] == "use the proposed threshold"
    assert t["n_a"] + t["n_b"] == len(rows)


def test_not_enough_reviews_means_no_proposal(greeting_store):
    rows, _ = cal.load_labelled(greeting_store)
    t = cal.calibrate(rows, seed=0, min_reviews=40)["checks"]["greeting"]["threshold"]
    assert t["proposed"] is None and t["status"].startswith("not enough reviews")
    html = render({**cal.calibrate(rows, 0, 40), "n_na": 0})
    assert "not enough reviews" in html


def test_html_has_every_check_and_marks_the_unbiased_share(greeting_store, tmp_path):
    sid = greeting_store.add_scored(make_result("x001", fail=("dead_air",)), "score")
    greeting_store.add_review(sid, "dead_air", "bo", "agree")
    rows, _ = cal.load_labelled(greeting_store)
    html = render({**cal.calibrate(rows, 0, 5), "n_na": 0})
    for cid in ("greeting", "dead_air"):
        assert f"<h2 id='{cid}'>" in html
    assert "random share (unbiased)" in html and "teach-first rest" in html
    assert "data:image/png;base64," in html  # greeting's threshold figure, inline
    assert "http://" not in html and "https://" not in html and "<script" not in html


def _params(tmp_path: Path, enabled: bool = True) -> Params:
    p = Params()
    mlflow = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow/mlflow.db",
                          artifact_location=str(tmp_path / "art"), experiment="calib-test",
                          enabled=enabled)  # fmt: skip
    review = p.review.model_copy(update={
        "calibration_out": tmp_path / "out", "calibration_min_reviews": 5})  # fmt: skip
    return p.model_copy(update={"mlflow": mlflow, "review": review})


def test_run_writes_html_json_and_logs_to_mlflow(greeting_store, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = _params(tmp_path)
    summary = cal.run(params, greeting_store)
    out = tmp_path / "out"
    report = json.loads((out / "calibration.json").read_text())
    assert report["checks"]["greeting"]["threshold"]["proposed"] == 0.7
    assert summary["proposed thresholds"] == {"greeting": 0.7}
    assert summary["better on half B"] == ["greeting"]
    assert "greeting" in (out / "calibration.html").read_text()
    client = mlflow.MlflowClient(params.mlflow.tracking_uri)
    exp = client.get_experiment_by_name("calib-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["mlflow.runName"] == "calibrate"
    assert run.data.metrics["greeting.threshold.proposed"] == 0.7
    assert run.data.metrics["greeting.n.all"] == len(MISSING + PRESENT)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"calibration.html", "calibration.json"}


def test_run_with_mlflow_off_logs_nothing(greeting_store, tmp_path):
    cal.run(_params(tmp_path, enabled=False), greeting_store)
    assert (tmp_path / "out" / "calibration.html").is_file()
    assert not (tmp_path / "mlflow").exists()
    tracking.configure(MlflowConfig(enabled=False))


# ---------------------------------------------------------------- the promotion gate


def test_agreement_counts_unevaluated_checks_as_misses():
    labels = [{"greeting": True, "closing": False}, {"greeting": False}]
    assert cal.agreement(labels, [{"greeting": True, "closing": False}, {"greeting": True}]) == (
        pytest.approx(2 / 3, abs=1e-4))  # fmt: skip
    assert cal.agreement(labels, [{"greeting": True}, {"greeting": False}]) == pytest.approx(
        2 / 3, abs=1e-4)  # fmt: skip


def test_review_agreement_of_two_scorers_on_a_toy_db(tmp_path):
    store = _store(tmp_path)
    truth = {}
    for i, p in enumerate([0.2, 0.55, 0.8, 0.9]):
        audio = write_call(tmp_path / f"call{i}.wav")
        result = make_result(f"call{i}", p_greeting=p, path=str(audio))
        sid = store.add_scored(result, "score", audio_path=audio)
        _review_truth(store, sid, "greeting", truth_passed=p >= 0.7)
        truth[audio.name] = p
    store.add_scored(make_result("gone", p_greeting=0.9), "score", audio_path=tmp_path / "x.wav")
    calls = cal.reviewed_calls(store)
    assert [c.call_id for c in calls] == ["call0", "call1", "call2", "call3"]
    assert calls[1].labels == {"greeting": False}

    def scorer(threshold: float):
        def score(_audio: bytes, name: str) -> dict:
            return {"checks": [{"id": "greeting", "passed": truth[name] >= threshold}]}

        return score

    assert cal.review_agreement(scorer(0.7), calls) == {
        "review_agreement": 1.0, "review_agreement_n": 4}  # fmt: skip
    assert cal.review_agreement(scorer(0.5), calls)["review_agreement"] == 0.75

    # the gate scores them with each loaded version, each on its own cache folder
    import os
    from types import SimpleNamespace

    from callqa.cache import CACHE_ENV
    from callqa.mlops.gate import agreement_metrics

    seen = []

    def version(threshold: float, cache: Path):
        def score(audio: bytes, name: str) -> dict:
            seen.append((threshold, os.environ.get(CACHE_ENV)))
            return scorer(threshold)(audio, name)

        return SimpleNamespace(score_bytes=score), str(cache)

    loaded = [version(0.7, tmp_path / "cand"), version(0.5, tmp_path / "prod")]
    got = agreement_metrics(loaded, store.url)
    assert [m["review_agreement"] for m in got] == [1.0, 0.75]
    assert set(seen) == {(0.7, str(tmp_path / "cand")), (0.5, str(tmp_path / "prod"))}


def test_gate_refuses_a_candidate_that_loses_agreement():
    from callqa.mlops.gate import judge

    params = Params()
    gate = params.registry.gate.model_copy(update={"review_agreement": True,
                                                   "max_agreement_drop": 0.02})  # fmt: skip
    params = params.model_copy(update={"registry": params.registry.model_copy(
        update={"gate": gate})})  # fmt: skip
    base = {"check_macro_f1": 0.8, "x_real_time": 0.1}
    prod = {**base, "review_agreement": 0.90, "review_agreement_n": 50}
    ok, reasons = judge({**base, "review_agreement": 0.85}, prod, params)
    assert not ok and any("review_agreement" in r and "0.85" in r for r in reasons)
    ok, reasons = judge({**base, "review_agreement": 0.89}, prod, params)
    assert ok, reasons
    # off (the default): agreement is not looked at
    assert judge({**base, "review_agreement": 0.5}, prod, Params())[0]


def test_gate_refuses_a_slower_candidate_and_names_the_growth():
    from callqa.mlops.gate import judge

    params = Params()  # max_x_real_time_growth 0.25
    prod = {"check_macro_f1": 0.8, "x_real_time": 0.10}
    ok, reasons = judge({"check_macro_f1": 0.8, "x_real_time": 0.124}, prod, params)
    assert ok, reasons
    ok, reasons = judge({"check_macro_f1": 0.9, "x_real_time": 0.13}, prod, params)
    assert not ok and any("x_real_time grows from 0.1 to 0.13" in r for r in reasons)


def test_cli_calibrate_writes_the_report(greeting_store, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from callqa.cli import app

    monkeypatch.delenv("CALLQA_REVIEW_DB_URL", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "review": {"db_url": greeting_store.url, "calibration_min_reviews": 5},
        "mlflow": {"enabled": False},
    }))  # fmt: skip
    res = CliRunner().invoke(app, ["calibrate", "--params", str(params), "--out",
                                   str(tmp_path / "rep")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "greeting: 0.7" in res.output
    assert (tmp_path / "rep" / "calibration.html").is_file()


def test_the_latest_review_counts_across_model_versions(tmp_path):
    store = _store(tmp_path)
    audio = write_call(tmp_path / "a.wav")
    r1 = make_result("a", p_greeting=0.9, path=str(audio))
    r2 = {**r1, "model": {"path": "models/v2", "sha256": "ef" * 32}}
    s1 = store.add_scored(r1, "score", audio_path=audio)
    s2 = store.add_scored(r2, "score", audio_path=audio)
    store.add_review(s1, "greeting", "ana", "agree")  # greeting present
    store.add_review(s2, "greeting", "bo", "disagree")  # later: it was not
    (call,) = cal.reviewed_calls(store)
    assert call.labels == {"greeting": False}
    rows, _ = cal.load_labelled(store, model_version=store.get_scored(s2).model_version)
    assert [(r.model_version, r.human_passed) for r in rows] == [("models/v2@efefefefefef", False)]
