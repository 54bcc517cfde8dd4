"""callqa.data.ingest: corpus names, labels, splits, and manifests built from real audio."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from callqa.config import IngestConfig, SplitConfig
from callqa.data import ingest
from callqa.data.ingest import IngestError
from callqa.data.labels import assign_splits, map_label, parse_corpus_name
from callqa.files import content_id

CHECK_IDS = ["greeting", "identity_verification", "recording_disclosure", "closing",
             "forbidden_language", "dead_air", "overtalk", "agent_speech_rate"]  # fmt: skip
LABEL_MAP = IngestConfig().label_map


def _ingest(tmp_path: Path, sources, labels_csv=None, split=None) -> pd.DataFrame:
    cfg = IngestConfig(split=split or SplitConfig())
    out = tmp_path / "manifest.parquet"
    ingest.run(cfg, sources=sources, labels_csv=labels_csv, manifest=out, progress=False)
    return pd.read_parquet(out)


# ------------------------------------------------------------------ pure functions


def test_parse_corpus_names():
    assert parse_corpus_name("03-01-02-01-01-01-08")[:3] == ("ravdess", "calm", "ravdess_actor08")
    source, label, speaker, extras = parse_corpus_name("1091_IEO_FEA_HI")
    assert (source, label, speaker) == ("cremad", "FEA", "cremad_1091")
    assert extras["level"] == "HI"
    for stem in ("03-01-09-01-01-01-08", "03-01-02-01-01-01", "call_0001", "1001_DFA_XYZ_XX"):
        assert parse_corpus_name(stem) is None, stem


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("calm", ("neutral", "ok")),
        ("ANG", ("angry", "ok")),
        ("Angry", ("angry", "ok")),  # spreadsheets capitalise
        (" sad ", ("sad", "ok")),
        ("fearful", (None, "out_of_scope")),
        ("bored", (None, "unknown")),
        ("", (None, "none")),
        (None, (None, "none")),
    ],
)
def test_map_label(raw, expected):
    assert map_label(raw, LABEL_MAP) == expected


def test_assign_splits_keeps_groups_whole_and_is_deterministic():
    sizes = {f"spk{i}": 5 + i % 7 for i in range(40)}
    a = assign_splits(sizes, SplitConfig(seed=3))
    assert a == assign_splits(dict(reversed(list(sizes.items()))), SplitConfig(seed=3))
    assert a != assign_splits(sizes, SplitConfig(seed=4))
    files = Counter()
    for g, s in a.items():
        files[s] += sizes[g]
    total = sum(sizes.values())
    assert abs(files["test"] / total - 0.15) < 0.05
    assert abs(files["val"] / total - 0.15) < 0.05


def test_assign_splits_with_few_groups():
    assert sorted(assign_splits({"a": 60, "b": 60, "c": 60}, SplitConfig()).values()) == [
        "test", "train", "val",
    ]  # fmt: skip
    assert sorted(assign_splits({"a": 3, "b": 3}, SplitConfig()).values()) == ["test", "train"]
    assert assign_splits({"a": 3}, SplitConfig()) == {"a": "train"}
    no_holdout = SplitConfig(val_share=0, test_share=0)
    assert set(assign_splits({"a": 1, "b": 1, "c": 1}, no_holdout).values()) == {"train"}
    # A giant speaker is not pushed into test just because it comes first.
    big = assign_splits({"big": 1000, **{f"s{i}": 10 for i in range(30)}}, SplitConfig())
    assert big["big"] == "train"


# ------------------------------------------------------------------ manifests from real files


@pytest.fixture(scope="module")
def ravdess_handful(tmp_path_factory, realdata) -> Path:
    """12 RAVDESS clips: 4 actors x 3 clips (angry, happy, fearful), copied to tmp."""
    folder = tmp_path_factory.mktemp("ravdess")
    for actor in ("01", "02", "05", "06"):
        for emotion in ("05", "03", "06"):
            name = f"03-01-{emotion}-01-01-01-{actor}.flac"
            shutil.copyfile(realdata / "emotion" / "ravdess" / name, folder / name)
    return folder


def test_ravdess_handful(tmp_path, ravdess_handful):
    df = _ingest(tmp_path, [ravdess_handful])
    assert len(df) == 12
    assert df["path"].tolist() == sorted(df["path"])
    assert set(df["source"]) == {"ravdess"}
    assert set(df["speaker"]) == {f"ravdess_actor{a}" for a in ("01", "02", "05", "06")}
    assert Counter(df["label_raw"]) == {"angry": 4, "happy": 4, "fearful": 4}
    fearful = df[df["label_raw"] == "fearful"]
    assert fearful["label"].isna().all() and set(fearful["label_status"]) == {"out_of_scope"}
    # Speaker-disjoint: every actor in exactly one split, and all three splits used.
    assert (df.groupby("speaker")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "val", "test"}
    row = df.iloc[0]
    assert row["id"] == content_id(row["path"])
    assert (row["sample_rate_hz"], row["channels"], row["format"]) == (16000, 1, "FLAC")
    assert 2.0 < row["duration_s"] < 6.0
    assert json.loads(row["labels_json"])["corpus"] == "ravdess"
    # Same inputs, same manifest.
    again = _ingest(tmp_path / "again", [ravdess_handful])
    pd.testing.assert_frame_equal(df, again)


def test_all_shared_ravdess_is_speaker_disjoint(tmp_path, realdata):
    df = _ingest(tmp_path, [realdata / "emotion" / "ravdess"])  # read in place: 480 clips, 8 actors
    # labels.tsv beside the clips is listed too (validate quarantines it as not_audio).
    tsv = df[df["path"].str.endswith("labels.tsv")]
    assert tsv["probe_error"].tolist() == ["not_audio"]
    df = df.drop(tsv.index)
    assert len(df) == 480 and df["probe_error"].isna().all()
    per_split = df.groupby("split")["speaker"].nunique().to_dict()
    assert per_split == {"test": 1, "val": 1, "train": 6}
    assert (df.groupby("speaker")["split"].nunique() == 1).all()


def _sidecar(customer: str) -> dict:
    return {
        "call_id": "abc", "seed": 1, "sample_rate_hz": 16000, "channels": 2,
        "channel_roles": ["agent", "customer"], "duration_s": 3.0,
        "checks": {c: True for c in CHECK_IDS} | {"dead_air": False},
        "emotion": {"agent": "neutral", "customer": customer},
        "agent_speech_rate_wpm": 140.0, "events": [], "turns": [],
    }  # fmt: skip


def test_synth_csv_cremad_and_plain_folder(tmp_path, realdata):
    asr = realdata / "asr"
    data = tmp_path / "in"
    (data / "synth").mkdir(parents=True)
    (data / "corpus" / "sub").mkdir(parents=True)
    (data / "corpus" / ".hidden").mkdir()
    shutil.copyfile(asr / "ps_cards_001.wav", data / "synth" / "call_0000.wav")
    sidecar = _sidecar("angry")
    (data / "synth" / "call_0000.json").write_text(json.dumps(sidecar))
    shutil.copyfile(asr / "ps_cards_002.wav", data / "corpus" / "1001_DFA_HAP_XX.wav")
    shutil.copyfile(asr / "ps_cards_003.wav", data / "corpus" / "sub" / "Anruf Müller.wav")
    shutil.copyfile(asr / "ps_goforward.wav", data / "corpus" / "sub" / "csv_listed.wav")
    shutil.copyfile(asr / "ps_goforward.wav", data / "corpus" / ".hidden" / "x.wav")
    (data / "corpus" / "notes.txt").write_text("not audio")
    csv = data / "corpus" / "labels.csv"
    # Byte-order mark and capitalised header, as spreadsheets write them.
    csv.write_text(
        "\ufeffPath,Label,Speaker\nsub/csv_listed.wav,Sad,caller7\nsub/gone.wav,angry,\n"
    )

    df = _ingest(tmp_path, [data / "synth", data / "corpus"], labels_csv=csv).set_index("path")
    # hidden folder and the labels CSV skipped; csv_listed.wav appears once; notes.txt is listed
    assert len(df) == 6
    assert df.loc[str(data / "corpus" / "notes.txt"), "probe_error"] == "not_audio"
    synth = df.loc[str(data / "synth" / "call_0000.wav")]
    assert (synth["source"], synth["label"]) == ("synth", "angry")
    assert pd.isna(synth["speaker"])  # synth calls carry no speaker identity
    assert json.loads(synth["labels_json"])["checks"] == sidecar["checks"]
    crema = df.loc[str(data / "corpus" / "1001_DFA_HAP_XX.wav")]
    assert (crema["source"], crema["label"], crema["speaker"]) == ("cremad", "happy", "cremad_1001")
    plain = df.loc[str(data / "corpus" / "sub" / "Anruf Müller.wav")]
    assert (plain["source"], plain["label_status"]) == ("folder", "none")
    assert plain["id"] == content_id(data / "corpus" / "sub" / "Anruf Müller.wav")
    listed = df.loc[str(data / "corpus" / "sub" / "csv_listed.wav")]
    assert (listed["source"], listed["label"], listed["speaker"]) == ("csv", "sad", "caller7")
    gone = df.loc[str(data / "corpus" / "sub" / "gone.wav")]
    assert pd.isna(gone["id"]) and gone["probe_error"] == "missing_file"
    assert "labels CSV" in gone["probe_message"]
    assert pd.isna(gone["duration_s"]) and pd.isna(gone["sample_rate_hz"])


def test_bad_inputs_to_ingest_are_explained(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        _ingest(tmp_path, [tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no audio files"):
        _ingest(tmp_path, [tmp_path / "empty"])
    csv = tmp_path / "labels.csv"
    csv.write_text("file,emotion\na.wav,angry\n")
    with pytest.raises(IngestError, match="missing column"):
        _ingest(tmp_path, [], labels_csv=csv)
    with pytest.raises(IngestError, match="not found"):
        _ingest(tmp_path, [], labels_csv=tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(IngestError, match="not a text CSV"):
        _ingest(tmp_path, [], labels_csv=binary)
    cfg = IngestConfig(split=SplitConfig())
    with pytest.raises(IngestError, match="is a folder"):  # was a traceback and a temp file left
        ingest.run(cfg, sources=[tmp_path], manifest=tmp_path / "empty", progress=False)
    assert not list(tmp_path.glob(".*tmp"))


def test_pipes_and_devices_get_a_row_without_being_read(tmp_path, realdata):
    """A FIFO named x.wav blocks a reader forever and a link to /dev/urandom never ends: each
    gets an `unreadable` row (validate quarantines it); the plain file beside them is ingested."""
    import os

    data = tmp_path / "in"
    data.mkdir()
    shutil.copyfile(realdata / "asr" / "ps_cards_001.wav", data / "call.wav")
    os.mkfifo(data / "fifo.wav")
    (data / "urandom.wav").symlink_to("/dev/urandom")
    df = _ingest(tmp_path, [data]).set_index("path")
    assert len(df) == 3 and pd.isna(df.loc[str(data / "call.wav"), "probe_error"])
    for name in ("fifo.wav", "urandom.wav"):
        row = df.loc[str(data / name)]
        assert row["probe_error"] == "unreadable" and "not a regular file" in row["probe_message"]
