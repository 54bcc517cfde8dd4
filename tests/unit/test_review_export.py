"""`callqa review export` -> labels -> `callqa featurize`: people's answers become training rows.

Real SQLite review database, the real default scorecard, real audio and the bundled encoders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from review_data import make_result, write_call

from callqa.config import INTENTS, load_params
from callqa.qa.scorecard import Scorecard
from callqa.review.export import intent_checks, label_table, run
from callqa.review.store import ReviewStore

SCORECARD = Scorecard.load(ROOT / "scorecards" / "default.yaml")


@pytest.fixture
def store(tmp_path) -> ReviewStore:
    s = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}")
    s.upgrade()
    return s


def test_checks_map_to_intents_with_their_polarity():
    m = intent_checks(SCORECARD)
    assert {c.intent for c in m.values()} == set(INTENTS)
    assert m["greeting"].passed_means_heard and not m["forbidden_language"].passed_means_heard
    assert "dead_air" not in m


def test_latest_answer_counts_na_is_no_label_and_corrections_apply(store, tmp_path):
    # the system passed greeting (model, with evidence) and failed forbidden language
    sid = store.add_scored(make_result("c1", fail=("forbidden_language",)), source="score")
    store.add_review(sid, "greeting", "ana", "agree")
    store.add_review(sid, "forbidden_language", "ana", "agree")
    store.add_review(sid, "closing", "ana", "agree")
    store.add_review(sid, "closing", "bo", "disagree")  # later: the closing was missing
    store.add_review(sid, "dead_air", "ana", "na")
    store.add_correction(sid, 2, "sure, go ahead", "bo")
    table = label_table(store, SCORECARD)
    assert list(table["call_id"]) == ["c1"]
    row = table.iloc[0]
    checks = json.loads(row["checks"])
    assert checks == {"closing": False, "forbidden_language": False, "greeting": True}
    intents = json.loads(row["intents"])
    assert intents == {"closing": 0, "forbidden_language": 1, "greeting": 1}
    # located where the system's evidence was, since people agreed with it
    evidence = json.loads(row["intent_evidence"])
    assert evidence["greeting"] == [[0.4, 1.6]] and evidence["forbidden_language"] == [[3.8, 4.4]]
    segments = json.loads(row["segments"])
    assert segments[2]["text"] == "sure, go ahead" and segments[2]["corrected"]
    assert not segments[0]["corrected"]

    summary = run(store, SCORECARD, tmp_path / "labels.parquet")
    assert summary["calls"] == 1 and summary["labels"] == 3 and summary["corrected_lines"] == 1
    assert len(pd.read_parquet(tmp_path / "labels.parquet")) == 1


def test_a_disagreed_pass_is_heard_nowhere_known(store):
    """People say the greeting was heard where the system heard none: which line is unknown."""
    sid = store.add_scored(make_result("c2", p_greeting=0.2), source="score")
    store.add_review(sid, "greeting", "ana", "disagree")
    row = label_table(store, SCORECARD).iloc[0]
    assert json.loads(row["intents"]) == {"greeting": 1}
    assert json.loads(row["intent_evidence"]) == {}


def test_no_database_gives_an_empty_table(tmp_path):
    summary = run(None, SCORECARD, tmp_path / "labels.parquet")
    assert summary["calls"] == 0
    assert list(pd.read_parquet(tmp_path / "labels.parquet").columns)[:2] == [
        "call_id",
        "audio_sha256",
    ]


def test_synth_rows_are_overridden_by_people():
    from callqa.model.reviewed import override_synth

    rows = [
        {"role": "agent", "start": 0.0, "end": 2.0, "has_intents": True,
         **{i: int(i == "greeting") for i in INTENTS}},
        {"role": "agent", "start": 3.0, "end": 5.0, "has_intents": True,
         **{i: 0 for i in INTENTS}},
        {"role": "customer", "start": 2.0, "end": 3.0, "has_intents": False,
         **{i: 0 for i in INTENTS}},
    ]  # fmt: skip
    label = {"intents": json.dumps({"greeting": 0, "closing": 1}),
             "intent_evidence": json.dumps({"closing": [[3.5, 4.0]]})}  # fmt: skip
    assert override_synth(rows, label) == 2  # greeting removed, closing added
    assert [r["greeting"] for r in rows] == [0, 0, 0]
    assert [r["closing"] for r in rows] == [0, 1, 0]
    assert all(r["reviewed"] for r in rows)
    # heard, but nowhere the system pointed: the call's agent lines lose their intent labels
    label = {"intents": json.dumps({"identity_verification": 1}), "intent_evidence": "{}"}
    override_synth(rows, label)
    assert [r["has_intents"] for r in rows] == [False, False, False]


def test_export_then_featurize_round_trip(store, tmp_path):
    """A reviewed real call (not synth) joins the feature table with people's labels."""
    from callqa.model import featurize

    audio = write_call(tmp_path / "real.wav")
    sid = store.add_scored(make_result("real1"), source="api", audio_path=str(audio))
    store.add_review(sid, "greeting", "ana", "agree")  # heard, where the system's evidence was
    for check in ("identity_verification", "recording_disclosure", "closing"):
        store.add_review(sid, check, "ana", "disagree")  # the system passed them: never said
    store.add_review(sid, "forbidden_language", "ana", "disagree")  # it was rude after all...
    store.add_review(sid, "forbidden_language", "ana", "agree")  # ...no: the latest counts
    labels = tmp_path / "labels.parquet"
    run(store, SCORECARD, labels)

    p = load_params(ROOT / "params.yaml")
    pd.DataFrame(columns=["id", "source", "labels_json"]).to_parquet(tmp_path / "accepted.parquet")
    cfg = p.featurize.model_copy(update={
        "accepted": tmp_path / "accepted.parquet", "out_dir": tmp_path / "features",
        "transcripts_dir": tmp_path / "none", "emotion_corpora": [],
        "text_rows_per_sentence": 0, "review_labels": labels, "device": "cpu",
        "progress": False,
    })  # fmt: skip
    summary = featurize.run(cfg, p.preprocess, progress=False)
    table = pd.read_parquet(Path(cfg.out_dir) / "utterances.parquet")
    assert summary["reviewed_rows"] == len(table) == 3
    assert set(table["source"]) == {"review"} and table["reviewed"].all()
    assert len(set(table["split"])) == 1  # one call never crosses splits
    agent = table[table["role"] == "agent"].sort_values("start")
    # every intent known: greeting located on the first line, the others heard nowhere
    assert (
        agent["has_intents"].all() and not table[table["role"] == "customer"]["has_intents"].any()
    )
    assert list(agent["greeting"]) == [1, 0]
    assert agent[["identity_verification", "recording_disclosure", "closing",
                  "forbidden_language"]].to_numpy().sum() == 0  # fmt: skip
    arrays = __import__("numpy").load(Path(cfg.out_dir) / "arrays.npz")
    assert arrays["audio"].shape[0] == 3 and abs(arrays["audio"][0]).sum() > 0


def test_cli_import_skips_error_lines_counts_garbage_then_export(tmp_path):
    """`callqa review import` then `callqa review export`, the real CLI in a child process."""
    import yaml
    from conftest import run_callqa

    db = tmp_path / "review.db"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "review": {"db_url": f"sqlite:///{db}", "labels_out": str(tmp_path / "labels.parquet")},
        "score": {"scorecard": str(ROOT / "scorecards" / "default.yaml")},
    }))  # fmt: skip
    good = "600d" * 4
    call = write_call(tmp_path / "call.wav")
    lines = [json.dumps(make_result(good, path=str(call))),
             json.dumps({"path": "x.wav", "error": "bad"}),
             "SECRET-GARBAGE {", json.dumps(["no", "dict"])]  # fmt: skip
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    res = run_callqa(["review", "import", "results.jsonl", "--params", str(params)], tmp_path)
    assert res.returncode == 1, res.stderr  # two lines were not results
    assert "SECRET-GARBAGE" not in res.stdout + res.stderr
    store = ReviewStore(f"sqlite:///{db}")
    page = store.queue()
    assert [c.call_id for c in page.rows] == [good]
    store.add_review(page.rows[0].id, "greeting", "ana", "agree")
    res = run_callqa(["review", "export", "--params", str(params)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert list(pd.read_parquet(tmp_path / "labels.parquet")["call_id"]) == [good]
