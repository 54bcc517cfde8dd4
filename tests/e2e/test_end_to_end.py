"""End to end through the CLI: synth, ingest, validate, preprocess (then transcribe, score)."""

import json

import jsonschema
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app
from callqa.schemas import CHECK_IDS, json_schema

runner = CliRunner()
PARAMS = ["--params", str(ROOT / "params.yaml"), "--no-progress"]


def _ok(args):
    res = runner.invoke(app, args + PARAMS, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three stereo synthetic calls taken through the data half of the pipeline."""
    d = tmp_path_factory.mktemp("e2e")
    _ok(["synth", "-n", "3", "--out", str(d / "synth"), "--seed", "7"])
    _ok(["ingest", "--source", str(d / "synth"), "--manifest", str(d / "manifest.parquet")])
    _ok(
        [
            "validate",
            "--manifest",
            str(d / "manifest.parquet"),
            "--accepted",
            str(d / "accepted.parquet"),
            "--quarantine",
            str(d / "quarantine.parquet"),
            "--data-docs-dir",
            str(d / "docs"),
        ]
    )
    first = _ok(["preprocess", "--accepted", str(d / "accepted.parquet"), "--out", str(d / "pre")])
    return d, first


def test_smoke_data_half(corpus):
    d, first = corpus
    wavs = sorted((d / "synth").glob("*.wav"))
    assert len(wavs) == 3 and all(w.with_suffix(".json").exists() for w in wavs)
    manifest = pd.read_parquet(d / "manifest.parquet")
    accepted = pd.read_parquet(d / "accepted.parquet")
    quarantine = pd.read_parquet(d / "quarantine.parquet")
    assert len(manifest) == 3 and len(accepted) + len(quarantine) == 3
    assert len(accepted) == 3, quarantine.to_dict("records")
    assert (d / "docs" / "index.html").exists()
    assert sorted(p.name for p in (d / "pre").iterdir()) == sorted(accepted["id"])
    # A second run finds everything done.
    again = _ok(["preprocess", "--accepted", str(d / "accepted.parquet"), "--out", str(d / "pre")])
    assert "cached" in again.output


@pytest.mark.slow
def test_transcribe_and_score(corpus, realdata, tmp_path):
    d, _ = corpus
    _ok(["transcribe", "--preprocessed", str(d / "pre"), "--out", str(d / "tr")])
    transcripts = sorted((d / "tr").glob("*.json"))
    assert len(transcripts) == 3
    assert all(json.loads(t.read_text())["segments"] for t in transcripts)

    broken = tmp_path / "broken.wav"
    broken.write_text("this is not audio")
    wavs = sorted((d / "synth").glob("*.wav"))
    overlap = realdata / "overlap" / "fw_stereo_diarization.wav"
    inputs = [str(p) for p in [*wavs, overlap, broken]]
    out, reports = tmp_path / "results.jsonl", tmp_path / "reports"
    # Rules only, whatever models/ holds here (tests/e2e/test_model_pipeline.py covers the model).
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["score"]["model"] = None
    rules_only = tmp_path / "params.yaml"
    rules_only.write_text(yaml.safe_dump(p))
    args = ["--params", str(rules_only), "--no-progress"]
    res = runner.invoke(
        app,
        ["score", *inputs, "--out", str(out), "--report-dir", str(reports), *args],
        catch_exceptions=False,
    )
    assert res.exit_code == 1, res.output  # one input failed, every line still written
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["path"] for line in lines] == inputs
    schema = json_schema()
    for line in lines:
        jsonschema.validate(line, schema)
    assert lines[-1]["error"]["code"] == "not_audio"
    for line, wav in zip(lines[:3], wavs, strict=True):
        assert [c["id"] for c in line["checks"]] == CHECK_IDS
        truth = json.loads(wav.with_suffix(".json").read_text())["checks"]
        got = {c["id"]: c["passed"] for c in line["checks"]}
        agree = sum(got[k] == truth[k] for k in CHECK_IDS)
        assert agree >= 6, (wav.name, got, truth)
        assert "emotion" not in line
        assert (reports / f"{line['call_id']}.html").exists()
    real = lines[3]
    assert real["roles_from"] == "channels" and real["segments"]
    assert real["metrics"]["call"]["overtalk"], "the shared overlap file has overtalk"
    assert (reports / "index.html").exists() and (reports / "summary.csv").exists()
