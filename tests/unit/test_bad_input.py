"""Broken and awkward inputs go through ingest + validate; each ends quarantined with its reason.

Good files are copies of real speech from ../shared/realdata (made in tmp_path only).
"""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import ROOT, run_callqa

from callqa.config import IngestConfig, ValidateConfig
from callqa.data import ingest, validate

NON_ASCII = "appel_client_é_通話.wav"
HOUR_S = 3600


def _speech(asr: Path, name: str = "librivox_ss01_0880.wav") -> tuple[np.ndarray, int]:
    x, sr = sf.read(asr / name, dtype="float32", always_2d=True)
    return x, sr


def write_silent_wav(path: Path, seconds: int, sample_rate_hz: int = 8000) -> None:
    """16-bit mono WAV of digital silence, written as a header plus a sparse zero-filled body."""
    n_bytes = seconds * sample_rate_hz * 2
    header = b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate_hz, sample_rate_hz * 2, 2, 16)
    header += b"data" + struct.pack("<I", n_bytes)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n_bytes)


def write_corrupt_flac(path: Path, x: np.ndarray, sr: int) -> None:
    """3 s of real speech as FLAC with 2 kB of random bytes in the middle of its body."""
    sf.write(path, x[: 3 * sr], sr)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def no_speech_signals() -> dict[str, tuple[np.ndarray, int]]:
    """Audio with sound but no voice: line noise, a dial tone, fax calling tones, hold music."""
    rng = np.random.default_rng(1)
    t = np.arange(10 * 8000) / 8000
    tt = np.arange(12 * 16000) / 16000
    music = np.zeros_like(tt)
    for i, f in enumerate([262, 330, 392, 523, 392, 330] * 2):  # a plucked arpeggio
        seg = (tt >= i) & (tt < i + 1)
        music[seg] = np.exp(-3 * (tt[seg] - i)) * sum(
            np.sin(2 * np.pi * f * k * tt[seg]) / k for k in (1, 2, 3)
        )
    out = {
        "line_noise.wav": (rng.normal(0, 0.03, t.size), 8000),
        "dial_tone.wav": (0.2 * (np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t)), 8000),
        "fax_tone.wav": (0.3 * np.sin(2 * np.pi * 1100 * t) * ((t % 3.5) < 0.5), 8000),
        "hold_music.wav": (0.2 * music, 16000),
    }
    return {k: (y.astype(np.float32), r) for k, (y, r) in out.items()}


# file name -> expected reason code (None = accepted)
EXPECTED = {
    "good_a.wav": None,
    "good_b.wav": None,
    "good_c.flac": None,
    NON_ASCII: None,
    "zz_copy_of_good_a.wav": "duplicate_content",
    "empty.wav": "empty_file",
    "truncated_header.wav": "unreadable",
    "notes.wav": "not_audio",
    "nan_samples.wav": "nan_samples",
    "one_sample.wav": "too_short",
    "six_channels.wav": "too_many_channels",
    "hour_of_silence.wav": "silent",
    "clipped.wav": "clipped",
    "low_rate.wav": "sample_rate_too_low",
    "phone_gsm.wav": None,  # GSM 6.10, 8 kHz: libsndfile cannot seek in it
    "phone_u8.wav": None,  # 8-bit unsigned PCM, 8 kHz
    "voicemail.m4a": "unreadable",  # a real container that soundfile cannot decode
    "header_only.wav": "too_short",  # a valid header and no samples
    "dangling_link.wav": "missing_file",  # a symlink to nowhere
    "labels/missing.wav": "missing_file",
    "labels/bored.wav": "unknown_label",
    "labels/fearful.wav": "label_out_of_scope",
    "readme.txt": "not_audio",  # not an audio extension: listed, never dropped silently
    "scan.pdf": "not_audio",
    "corrupt_body.flac": "unreadable",  # "flac decoder lost sync" part-way through
    "zz_link_to_good_b.wav": "duplicate_content",  # a symlink to a file already listed
    "a_link_to_good_c.flac": "duplicate_content",  # sorts first, but the real file is kept
    "line_noise.wav": "no_speech",
    "dial_tone.wav": "no_speech",
    "fax_tone.wav": "no_speech",
    "hold_music.wav": "no_speech",
}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, realdata):
    asr = realdata / "asr"
    root = tmp_path_factory.mktemp("bad_input")
    calls = root / "calls"
    (calls / "labels").mkdir(parents=True)
    shutil.copyfile(asr / "librivox_ss01_0870.wav", calls / "good_a.wav")
    shutil.copyfile(asr / "ps_cards_002.wav", calls / "good_b.wav")
    shutil.copyfile(asr / "jfk.flac", calls / "good_c.flac")
    shutil.copyfile(asr / "librivox_ss01_0880.wav", calls / NON_ASCII)
    shutil.copyfile(asr / "librivox_ss01_0870.wav", calls / "zz_copy_of_good_a.wav")
    (calls / "empty.wav").write_bytes(b"")
    (calls / "truncated_header.wav").write_bytes((asr / "ps_cards_001.wav").read_bytes()[:20])
    (calls / "notes.wav").write_text("agent: hello, this is not audio\n", encoding="utf-8")
    x, sr = _speech(asr)
    nan = x.copy()
    nan[1000:1010] = np.nan
    sf.write(calls / "nan_samples.wav", nan, sr, subtype="FLOAT")
    sf.write(calls / "one_sample.wav", x[:1], sr)
    sf.write(calls / "six_channels.wav", np.tile(x, (1, 6)), sr)
    write_silent_wav(calls / "hour_of_silence.wav", HOUR_S)
    sf.write(calls / "clipped.wav", np.clip(8 * x / np.abs(x).max(), -1, 1), sr)
    sf.write(calls / "low_rate.wav", x[::4], sr // 4)  # 4 kHz: below the 8 kHz minimum
    phone = x[::2, 0]  # 16 -> 8 kHz (librivox is narrow-band enough not to alias badly)
    sf.write(calls / "phone_gsm.wav", phone, sr // 2, subtype="GSM610", format="WAV")
    sf.write(calls / "phone_u8.wav", phone, sr // 2, subtype="PCM_U8")
    mp4_head = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00isomiso2"
    (calls / "voicemail.m4a").write_bytes(mp4_head + bytes(range(256)) * 8)
    (calls / "header_only.wav").write_bytes((asr / "ps_cards_001.wav").read_bytes()[:44])
    (calls / "dangling_link.wav").symlink_to(calls / "no_such_target.wav")
    shutil.copyfile(asr / "ps_goforward.wav", calls / "labels" / "bored.wav")
    shutil.copyfile(asr / "ps_cards_003.wav", calls / "labels" / "fearful.wav")
    (calls / "readme.txt").write_text("not an audio extension, but never dropped silently")
    (calls / "scan.pdf").write_bytes(b"%PDF-1.4\n" + bytes(200))
    (calls / "good_a.txt").write_text("a transcript beside good_a.wav: a companion, not an input")
    write_corrupt_flac(calls / "corrupt_body.flac", x, sr)
    (calls / "zz_link_to_good_b.wav").symlink_to(calls / "good_b.wav")
    (calls / "a_link_to_good_c.flac").symlink_to(calls / "good_c.flac")
    for name, (y, rate) in no_speech_signals().items():
        sf.write(calls / name, y, rate)
    labels = calls / "labels" / "labels.csv"
    labels.write_text(
        "path,label,speaker\n"
        "../good_a.wav,angry,spk1\n"
        "missing.wav,neutral,spk2\n"
        "bored.wav,bored,spk3\n"
        "fearful.wav,fearful,spk4\n",
        encoding="utf-8",
    )

    manifest = root / "manifest.parquet"
    ing = ingest.run(IngestConfig(), [calls], labels, manifest, progress=False)
    cfg = ValidateConfig()
    t0 = time.perf_counter()
    with pytest.raises(validate.ValidationFailed) as failed:
        validate.run(
            cfg, manifest, root / "accepted.parquet", root / "quarantine.parquet",
            root / "docs", progress=False,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    return {
        "calls": calls,
        "ingest": ing,
        "manifest": pd.read_parquet(manifest),
        "accepted": pd.read_parquet(root / "accepted.parquet"),
        "quarantine": pd.read_parquet(root / "quarantine.parquet"),
        "error": str(failed.value),
        "seconds": seconds,
        "docs": root / "docs",
    }


def _rel(calls: Path, path: str) -> str:
    return Path(path).relative_to(calls).as_posix()


def test_every_file_accounted_for_exactly_once(outcome):
    calls = outcome["calls"]
    manifest = {_rel(calls, p) for p in outcome["manifest"]["path"]}
    assert manifest == set(EXPECTED)  # labels.csv and good_a.txt (a companion) are not inputs
    acc = {_rel(calls, p) for p in outcome["accepted"]["path"]}
    quar = {_rel(calls, p) for p in outcome["quarantine"]["path"]}
    assert acc.isdisjoint(quar)
    assert acc | quar == set(EXPECTED)
    assert outcome["manifest"]["path"].tolist() == sorted(outcome["manifest"]["path"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_ends_with_its_reason(outcome, name):
    calls = outcome["calls"]
    acc = {_rel(calls, p) for p in outcome["accepted"]["path"]}
    q = outcome["quarantine"]
    q = q.assign(rel=[_rel(calls, p) for p in q["path"]]).set_index("rel")
    expected = EXPECTED[name]
    if expected is None:
        assert name in acc, (
            f"{name} quarantined: {q.loc[name, 'message'] if name in q.index else ''}"
        )
        return
    assert name in q.index
    reasons = list(q.loc[name, "reasons"])
    assert reasons[0] == expected or expected in reasons, reasons
    # The specific reason leads (nothing spurious before it) and the message names the file.
    assert reasons == [c for c in validate.CODES if c in reasons]
    message = q.loc[name, "message"]
    assert Path(name).name in message and len(message) > 25


def test_specific_reasons_are_not_muddled(outcome):
    q = outcome["quarantine"]
    by_name = {Path(p).name: list(r) for p, r in zip(q["path"], q["reasons"], strict=True)}
    assert by_name["hour_of_silence.wav"] == ["silent"]
    assert by_name["clipped.wav"] == ["clipped"]
    assert by_name["six_channels.wav"] == ["too_many_channels"]
    assert by_name["nan_samples.wav"] == ["nan_samples"]
    assert by_name["missing.wav"] == ["missing_file"]
    assert by_name["bored.wav"] == ["unknown_label"]
    assert by_name["fearful.wav"] == ["label_out_of_scope"]
    assert by_name["zz_copy_of_good_a.wav"] == ["duplicate_content"]
    assert by_name["voicemail.m4a"] == ["unreadable"]
    assert by_name["corrupt_body.flac"] == ["unreadable"]
    assert by_name["readme.txt"] == ["not_audio"]
    for name in ("line_noise.wav", "dial_tone.wav", "fax_tone.wav", "hold_music.wav"):
        assert by_name[name] == ["no_speech"], name
    assert by_name["a_link_to_good_c.flac"] == ["duplicate_content"]
    assert "good_c.flac" not in by_name and "good_b.wav" not in by_name
    message = q.set_index("path").loc[str(outcome["calls"] / "voicemail.m4a"), "message"]
    assert "MP4/M4A" in message and "convert" in message


def test_duplicate_message_names_the_kept_file(outcome):
    q = outcome["quarantine"].set_index("path")
    dup = str(outcome["calls"] / "zz_copy_of_good_a.wav")
    assert "good_a.wav" in q.loc[dup, "message"]
    assert q.loc[dup, "id"] == outcome["manifest"].set_index("path").loc[dup, "id"]


def test_missing_file_has_null_id_and_csv_label_wins(outcome):
    m = outcome["manifest"].set_index("path")
    calls = outcome["calls"]
    missing = m.loc[str(calls / "labels" / "missing.wav")]
    assert pd.isna(missing["id"]) and missing["probe_error"] == "missing_file"
    good_a = m.loc[str(calls / "good_a.wav")]  # listed by the folder scan and by the CSV
    assert (good_a["label"], good_a["speaker"], good_a["source"]) == ("angry", "spk1", "csv")


def test_run_fails_with_a_readable_message_and_finishes_quickly(outcome):
    assert "validate.min_accepted_share" in outcome["error"]
    assert "quarantine.parquet" in outcome["error"]
    assert (outcome["docs"] / "index.html").is_file()
    # An hour of silence is streamed, not loaded: the whole validation stays quick.
    assert outcome["seconds"] < 30


@pytest.mark.slow
def test_files_the_process_may_not_read_are_quarantined(tmp_path, realdata):
    """Mode-000 files, locked before ingest and between ingest and validate (real CLI runs)."""
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("librivox_ss01_0870.wav", "librivox_ss01_0880.wav", "ps_goforward.wav"):
        shutil.copyfile(realdata / "asr" / name, calls / name)
    shutil.copyfile(realdata / "asr" / "ps_cards_001.wav", calls / "locked_early.wav")
    shutil.copyfile(realdata / "asr" / "ps_cards_002.wav", calls / "locked_late.wav")
    (calls / "locked_early.wav").chmod(0)
    manifest, acc, quar = (tmp_path / n for n in ("m.parquet", "a.parquet", "q.parquet"))
    ing = run_callqa(
        ["ingest", "--source", str(calls), "--manifest", str(manifest), "--no-progress"],
        cwd=ROOT, obey_file_modes=True,
    )  # fmt: skip
    assert ing.returncode == 0, ing.stderr
    (calls / "locked_late.wav").chmod(0)
    val = run_callqa(
        ["validate", "--manifest", str(manifest), "--accepted", str(acc), "--quarantine",
         str(quar), "--data-docs-dir", str(tmp_path / "docs"), "--no-progress"],
        cwd=ROOT, obey_file_modes=True,
    )  # fmt: skip
    assert val.returncode == 1, val.stderr  # 3 of 5 accepted: below min_accepted_share
    assert "Traceback" not in val.stderr
    q = pd.read_parquet(quar).set_index("path")
    for name in ("locked_early.wav", "locked_late.wav"):
        row = q.loc[str(calls / name)]
        assert list(row["reasons"]) == ["unreadable"], row.to_dict()
        assert "permission" in row["message"].lower()
    assert len(pd.read_parquet(acc)) == 3


def test_only_known_companions_of_a_recording_are_left_out(tmp_path):
    """Found from outside: `a.dat` (a recording) beside `a.wav` vanished from ingest and score
    without a word; only sidecars, transcripts and annotations belong to the recording."""
    from callqa.audio.io import scan_folder

    for name in ("a.wav", "a.json", "a.rttm", "a.dat", "b.wave", "c.mp3.bak"):
        (tmp_path / name).write_bytes(b"x")
    found = scan_folder(tmp_path)
    assert [p.name for p in found.audio] == ["a.wav", "b.wave"]
    assert [p.name for p in found.other] == ["a.dat", "c.mp3.bak"]


def test_a_pipe_or_a_device_is_unreadable_not_empty(tmp_path):
    """Found from outside: a FIFO named x.wav was reported as an empty file."""
    import os

    from callqa.audio.io import AudioError, load_audio

    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "urandom.wav").symlink_to("/dev/urandom")
    for name in ("fifo.wav", "urandom.wav"):
        with pytest.raises(AudioError) as err:
            load_audio(tmp_path / name)
        assert err.value.code == "unreadable" and "not a regular file" in err.value.message
