"""callqa.data.validate: label reasons, the GX suite, Data Docs and the stage run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from callqa.config import IngestConfig, ValidateConfig
from callqa.data import ingest, validate


def test_label_reasons():
    cfg = ValidateConfig()
    assert validate.label_reasons({"label_status": "ok", "label": "sad"}, cfg) == {}
    assert validate.label_reasons({"label_status": "none", "label": None}, cfg) == {}
    unknown = validate.label_reasons({"label_status": "unknown", "label_raw": "bored"}, cfg)
    assert list(unknown) == ["unknown_label"] and "'bored'" in unknown["unknown_label"]
    narrow = ValidateConfig(labels=["angry", "neutral"])
    assert list(validate.label_reasons({"label_status": "ok", "label": "sad"}, narrow)) == [
        "label_out_of_scope"
    ]


def test_gx_suite_flags_manifest_rows(tmp_path):
    cfg = ValidateConfig(labels=["angry", "neutral", "sad", "happy"])
    df = pd.DataFrame(
        {
            "path": ["ok.wav", "noid.wav", "short.wav", "lowrate.wav", "six.wav", "bored.wav",
                     "dup.wav"],
            "id": ["a1", None, "a3", "a4", "a5", "a6", "a1"],
            "duration_s": [3.0, None, 0.1, 3.0, 3.0, 3.0, 3.0],
            "sample_rate_hz": [16000, None, 16000, 4000, 16000, 16000, 16000],
            "channels": [1, None, 1, 1, 6, 1, 1],
            "label": ["sad", None, None, None, None, None, "sad"],
            "label_status": ["ok", "none", "none", "none", "none", "unknown", "ok"],
            "probe_error": [None, "not_audio", None, None, None, None, None],
        }
    )  # fmt: skip
    reasons, outcomes = validate.run_expectations(df, cfg, tmp_path / "docs")
    assert reasons == {
        "noid.wav": {"not_audio"},
        "short.wav": {"too_short"},
        "lowrate.wav": {"sample_rate_too_low"},
        "six.wav": {"too_many_channels"},
        "bored.wav": {"unknown_label"},
    }  # duplicates are settled by path order in run(), not here
    assert outcomes["be_unique(id)"] is False and outcomes["not_be_null(duration_s)"] is False
    assert (tmp_path / "docs" / "index.html").is_file()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, realdata) -> Path:
    """8 RAVDESS clips from 4 actors (4 sad, 4 fearful = out of scope), copied to tmp."""
    folder = tmp_path_factory.mktemp("small_corpus")
    for actor in ("03", "04", "07", "08"):
        for emotion in ("04", "06"):
            name = f"03-01-{emotion}-02-01-02-{actor}.flac"
            shutil.copyfile(realdata / "emotion" / "ravdess" / name, folder / name)
    return folder


def test_run_accepts_real_speech_and_cleans_up(tmp_path, small_corpus, monkeypatch):
    manifest = tmp_path / "manifest.parquet"
    ingest.run(IngestConfig(), [small_corpus], manifest=manifest, progress=False)
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))  # catch anything GX leaves in /tmp
    cfg = ValidateConfig(min_accepted_share=1.0)  # out-of-scope labels do not count against it
    out = tmp_path / "out"
    kwargs = dict(manifest=manifest, accepted=out / "accepted.parquet",
                  quarantine=out / "quarantine.parquet", data_docs_dir=out / "docs",
                  progress=False, cache_dir=tmp_path / "cache")  # fmt: skip
    summary = validate.run(cfg, **kwargs)
    assert (summary["accepted"], summary["quarantined"]) == (4, 4)
    assert summary["by_reason"] == {"label_out_of_scope": 4}
    assert summary["accepted_share"] == 1.0
    acc = pd.read_parquet(out / "accepted.parquet")
    assert list(acc.columns) == list(ingest.MANIFEST_COLUMNS)
    assert set(acc["label"]) == {"sad"}
    assert Path(summary["data_docs"]).is_file()
    assert len(list((tmp_path / "cache" / "validate").glob("*.bin"))) == 8
    # A second run reads the cache, gives the same answer and replaces (not piles up) the docs.
    assert validate.run(cfg, **kwargs)["by_reason"] == summary["by_reason"]
    assert len(list((out / "docs").rglob("validations/**/*.html"))) == 1
    assert list(systmp.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["accepted.parquet", "docs",
                                                     "quarantine.parquet"]  # fmt: skip


def test_data_docs_never_replace_a_folder_callqa_did_not_write(tmp_path, small_corpus):
    manifest = tmp_path / "manifest.parquet"
    ingest.run(IngestConfig(), [small_corpus], manifest=manifest, progress=False)
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("months of work")
    kwargs = dict(manifest=manifest, accepted=tmp_path / "a.parquet",
                  quarantine=tmp_path / "q.parquet", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="did not write"):
        validate.run(ValidateConfig(), data_docs_dir=mine, **kwargs)
    assert (mine / "thesis.txt").read_text() == "months of work"
    assert not (tmp_path / "a.parquet").exists()  # refused before any work
    # A folder callqa built (it carries the marker) is replaced; an empty one is used.
    docs = tmp_path / "docs"
    docs.mkdir()
    validate.run(ValidateConfig(), data_docs_dir=docs, **kwargs)
    assert (docs / validate.DOCS_MARKER).is_file() and (docs / "index.html").is_file()
    validate.run(ValidateConfig(), data_docs_dir=docs, **kwargs)


def test_run_fails_after_writing_outputs(tmp_path, small_corpus, realdata):
    folder = tmp_path / "in"
    shutil.copytree(small_corpus, folder)
    shutil.copyfile(realdata / "asr" / "jfk.flac", folder / "jfk.flac")  # 11 s
    manifest = tmp_path / "manifest.parquet"
    ingest.run(IngestConfig(), [folder], manifest=manifest, progress=False)
    # A manifest edited by hand: GX catches what the file itself would not show.
    df = pd.read_parquet(manifest)
    tampered = df["path"].str.endswith("03-01-04-02-01-02-03.flac")
    df.loc[tampered, "duration_s"] = 0.1
    df.to_parquet(manifest)
    cfg = ValidateConfig(max_duration_s=5.0, min_accepted_share=0.9)
    with pytest.raises(validate.ValidationFailed, match="only 3 of 5 in-scope files"):
        validate.run(cfg, manifest, tmp_path / "a.parquet", tmp_path / "q.parquet",
                     tmp_path / "docs", progress=False)  # fmt: skip
    q = pd.read_parquet(tmp_path / "q.parquet").set_index("path")
    jfk = q.loc[str(folder / "jfk.flac")]
    assert list(jfk["reasons"]) == ["too_long"] and "validate.max_duration_s" in jfk["message"]
    edited = q.loc[df.loc[tampered, "path"].iloc[0]]
    assert list(edited["reasons"]) == ["too_short"]
    assert len(pd.read_parquet(tmp_path / "a.parquet")) + len(q) == 9


def test_a_file_replaced_after_ingest_is_quarantined_not_accepted_under_its_old_id(
    tmp_path, small_corpus
):
    folder = tmp_path / "in"
    shutil.copytree(small_corpus, folder)
    manifest = tmp_path / "manifest.parquet"
    ingest.run(IngestConfig(), [folder], manifest=manifest, progress=False)
    sad = sorted(folder.glob("03-01-04-*"))
    shutil.copyfile(sad[1], sad[0])  # valid audio, other bytes: the manifest's id is stale
    summary = validate.run(ValidateConfig(min_accepted_share=0.0), manifest,
                           tmp_path / "a.parquet", tmp_path / "q.parquet", tmp_path / "docs",
                           progress=False)  # fmt: skip
    q = pd.read_parquet(tmp_path / "q.parquet").set_index("path")
    changed = q.loc[str(sad[0])]
    assert list(changed["reasons"]) == ["content_changed"]
    assert "run `callqa ingest` again" in changed["message"]
    acc = pd.read_parquet(tmp_path / "a.parquet")
    assert str(sad[0]) not in set(acc["path"]) and summary["by_reason"]["content_changed"] == 1
