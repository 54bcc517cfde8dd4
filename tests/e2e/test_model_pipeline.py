"""The model half through the CLI on a few synth calls and RAVDESS clips: featurize, train,
evaluate (features, calls and a manifest), then `callqa score` uses the model with no flag."""

import json
import os

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app
from callqa.config import EMOTIONS, INTENTS
from callqa.schemas import json_schema

pytestmark = pytest.mark.slow
runner = CliRunner()


def _ok(args, params):
    res = runner.invoke(app, [*args, "--params", str(params)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def project(tmp_path_factory, realdata):
    """A working folder with its own params.yaml: 5 calls, 2 RAVDESS actors per split."""
    d = tmp_path_factory.mktemp("model")
    clips = d / "ravdess"
    clips.mkdir()
    for actor in ("01", "02", "03", "04", "05", "06"):  # 6 actors -> train / val / test
        for f in sorted(
            (realdata / "emotion" / "ravdess").glob(f"03-01-0[1-5]-01-01-01-{actor}.flac")
        ):
            os.symlink(f, clips / f.name)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["synth"].update(out_dir=str(d / "synth"), n_calls=5, seed=11)
    p["ingest"].update(sources=[str(d / "synth")], manifest=str(d / "manifest.parquet"))
    p["validate"].update(
        manifest=str(d / "manifest.parquet"),
        accepted=str(d / "accepted.parquet"),
        quarantine=str(d / "quarantine.parquet"),
        data_docs_dir=str(d / "docs"),
    )
    p["preprocess"].update(accepted=str(d / "accepted.parquet"), out_dir=str(d / "pre"))
    p["transcribe"].update(preprocessed_dir=str(d / "pre"), out_dir=str(d / "tr"))
    p["featurize"].update(
        accepted=str(d / "accepted.parquet"),
        preprocessed_dir=str(d / "pre"),
        transcripts_dir=str(d / "tr"),
        out_dir=str(d / "features"),
        emotion_corpora=[str(clips)],
        text_rows_per_sentence=1,
    )
    p["train"].update(
        features_dir=str(d / "features"),
        out_dir=str(d / "models" / "qa"),
        curves_dir=str(d / "curves"),
        epochs=2,
        hidden=64,
    )
    p["evaluate"].update(
        model=str(d / "models" / "qa"),
        features_dir=str(d / "features"),
        metrics_out=str(d / "eval" / "metrics.json"),
        plots_dir=str(d / "eval"),
    )
    p["score"].update(
        scorecard=str(ROOT / "scorecards" / "default.yaml"),
        model=str(d / "models" / "qa"),
        report_dir=None,
    )
    p["mlflow"].update(tracking_uri=f"sqlite:///{d}/mlflow.db", artifact_location=str(d / "art"))
    params = d / "params.yaml"
    params.write_text(yaml.safe_dump(p))  # fmt: skip
    for stage in ("synth", "ingest", "validate", "preprocess", "transcribe", "featurize", "train"):
        _ok([stage, "--no-progress"] if stage != "ingest" else [stage], params)
    return d, params


def test_featurize_labels_splits_and_arrays(project):
    d, _ = project
    table = pd.read_parquet(d / "features" / "utterances.parquet")
    synth = table[table["source"] == "synth"]
    assert set(synth["split"]) <= {"train", "val", "test"} and len(set(synth["split"])) >= 2
    agent = synth[synth["role"] == "agent"]
    assert agent[list(INTENTS)].to_numpy().sum() > 0  # sidecar intents reached the rows
    assert (synth["text"].str.len() > 0).all()  # ASR text, not the script
    assert (synth["text"] != synth["script"]).any()
    clips = table[table["source"] == "emotion_clip"]
    by_split = clips.groupby("split")["speaker"].apply(set)
    assert len(by_split) == 3 and not set.intersection(*by_split)  # speaker-disjoint
    assert set(clips["emotion"]) <= set(EMOTIONS)
    # each clip also over a phone line and as an 8-bit export: same speaker, split and label,
    # other features
    clean = clips[clips["channel"] == "clean"].set_index("path")
    with np.load(d / "features" / "arrays.npz") as npz:
        audio = npz["audio"]
    pos = {
        (r.path, r.channel): i for i, r in enumerate(table.itertuples()) if r.path in clean.index
    }
    for channel in ("telephone", "pcm8"):
        copy = clips[clips["channel"] == channel].set_index("path")
        assert len(copy) == len(clean) > 0 and set(copy.index) == set(clean.index)
        for col in ("split", "speaker", "emotion"):
            assert (copy[col] == clean.loc[copy.index, col]).all()
        pairs = [(pos[(path, "clean")], pos[(path, channel)]) for path in clean.index]
        assert all(not np.allclose(audio[a], audio[b], atol=1e-3) for a, b in pairs)
    text = table[table["source"] == "bank_text"]
    assert len(text) > 0 and (text["split"] == "train").all() and not text["has_audio"].any()
    summary = json.loads((d / "features" / "featurize.json").read_text())
    assert any("CC BY-NC-SA" in lic for lic in summary["licenses"])


def test_train_writes_the_model_and_mlflow_run(project):
    d, _ = project
    from mlflow.tracking import MlflowClient

    saved = json.loads((d / "models" / "qa" / "data.json").read_text())
    assert any("CC BY-NC-SA" in lic for lic in saved["licenses"])
    assert (d / "curves" / "curves.csv").exists() and (d / "curves" / "curves.png").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db")
    exp = client.get_experiment_by_name("callqa")
    runs = client.search_runs([exp.experiment_id], "tags.`callqa.stage` = 'train'")
    assert runs and "CC BY-NC-SA" in runs[0].data.tags["licenses"]
    assert "val_macro_f1" in runs[0].data.metrics


def test_evaluate_on_features_calls_and_a_manifest(project, tmp_path):
    d, params = project
    _ok(["evaluate", "--no-progress"], params)
    m = json.loads((d / "eval" / "metrics.json").read_text())
    assert set(m["ablation"]) == {"fused", "text_only", "audio_only"}
    assert set(m["emotion"]) >= {"macro_f1", "accuracy", "per_class", "labels", "calibration"}
    cal = m["emotion"]["calibration"]  # with the saved temperature, and as the network gave it
    config = json.loads((d / "models" / "qa" / "config.json").read_text())
    assert cal["temperature"] == config["emotion_temperature"] > 0
    assert cal["nll"] > 0 and 0 <= cal["ece"] <= 1 and set(cal["at_t1"]) == {"nll", "ece"}
    assert (d / "eval" / "confusion_emotion.png").exists()
    assert set(m["calls"]["f1"]) == {"rules", "rules_model"}
    # a RAVDESS folder ingested with `callqa ingest`, evaluated with --split all
    manifest, out = tmp_path / "ravdess.parquet", tmp_path / "rav.json"
    _ok(["ingest", "--source", str(d / "ravdess"), "--manifest", str(manifest)], params)
    _ok(["evaluate", "--manifest", str(manifest), "--split", "all", "--metrics-out", str(out),
         "--no-progress"], params)  # fmt: skip
    r = json.loads(out.read_text())
    assert r["n"] == 6 * 5  # 5 emotions (calm maps to neutral) of one statement per actor
    assert r["skipped"] == 0 and set(r["emotion"]["per_class"]) == set(EMOTIONS)
    assert r["emotion"]["calibration"]["temperature"] == config["emotion_temperature"]


def test_score_uses_the_model_with_no_flag(project, tmp_path):
    d, params = project
    wav = sorted((d / "synth").glob("*.wav"))[0]
    out = tmp_path / "results.jsonl"
    _ok(["score", str(wav), "--out", str(out), "--no-progress"], params)
    line = json.loads(out.read_text())
    jsonschema.validate(line, json_schema())
    assert line["model"]["path"] == str(d / "models" / "qa")
    assert line["emotion"]["agent"]["label"] in EMOTIONS
    assert line["emotion"]["customer"]["label"] in EMOTIONS
