import json

import jsonschema
import pytest
from conftest import ROOT
from pydantic import ValidationError

from callqa.schemas import CHECK_IDS, QAError, QAResult, json_schema, json_schema_text


def _result(**over):
    base = dict(
        call_id="0123456789abcdef",
        path="a.wav",
        duration_s=12.5,
        channels=2,
        sample_rate_hz=16000,
        roles_from="channels",
        segments=[
            {
                "role": "agent",
                "start": 0.5,
                "end": 2.0,
                "text": "hello",
                "words": [{"word": "hello", "start": 0.5, "end": 0.9, "probability": 0.9}],
            }
        ],
        metrics={"call": {"longest_mutual_silence_s": None}, "agent": {}, "customer": {}},
        checks=[{"id": cid, "passed": True, "score": 1.0} for cid in CHECK_IDS],
        score=100.0,
        critical_fail=False,
        asr={"backend": "faster-whisper", "model": "tiny.en"},
        scorecard={"path": "scorecards/default.yaml", "sha256": "x"},
    )
    return QAResult.model_validate({**base, **over})


def test_schema_file_is_current():
    path = ROOT / "docs" / "qa_result.schema.json"
    assert path.read_text(encoding="utf-8") == json_schema_text(), (
        "docs/qa_result.schema.json is stale: run `make schema`"
    )


def test_result_and_error_lines_validate_against_schema():
    schema = json_schema()
    jsonschema.validate(json.loads(_result().model_dump_json()), schema)
    err = QAError(path="b.wav", call_id=None, error={"code": "not_audio", "message": "m"})
    jsonschema.validate(json.loads(err.model_dump_json()), schema)


def test_schema_rejects_bad_lines():
    schema = json_schema()
    good = json.loads(_result().model_dump_json())
    for bad in (
        {**good, "score": 120},
        {**good, "roles_from": "magic"},
        {k: v for k, v in good.items() if k != "checks"},
        {**good, "emotion": {"customer": {"label": "happy"}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_role_names_are_contract_roles():
    with pytest.raises(ValidationError):
        _result(segments=[{"role": "Agent", "start": 0, "end": 1, "text": "x"}])


EMOTION = {
    "agent": {
        "label": "neutral",
        "scores": {"angry": 0.1, "happy": 0.2, "sad": 0.1, "neutral": 0.6},
    },
    "customer": {"label": None, "scores": {}},
}
MODEL = {"path": "models/callqa-qa", "sha256": "c" * 64}


def test_model_fields_are_absent_without_a_model_and_validate_with_one():
    plain = json.loads(_result().model_dump_json())
    assert "emotion" not in plain and "model" not in plain
    ev = {"start": 1.0, "end": 2.0, "role": "agent", "text": "hi"}
    checks = [{"id": c, "passed": True, "score": 1.0, "evidence": [ev]} for c in CHECK_IDS]
    plain_ev = json.loads(_result(checks=checks).model_dump_json())["checks"][0]["evidence"]
    assert plain_ev == [ev]
    checks[0]["evidence"] = [ev | {"probability": 0.87}]
    line = json.loads(_result(checks=checks, emotion=EMOTION, model=MODEL).model_dump_json())
    assert line["emotion"] == EMOTION and line["model"] == MODEL
    assert line["checks"][0]["evidence"][0]["probability"] == 0.87
    schema = json_schema()
    jsonschema.validate(line, schema)
    for bad in (
        {**line, "emotion": None},  # absent, never null
        {**line, "model": {"sha256": "x"}},
        {**plain, "checks": [{**line["checks"][0], "evidence": [ev | {"probability": 1.5}]}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    with pytest.raises(ValidationError, match="exactly one of `path` and `uri`"):
        _result(model=MODEL | {"uri": "models:/callqa/1"})
