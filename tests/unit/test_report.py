"""HTML report and batch index on real stereo speech (LibriSpeech, one speaker per channel)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from callqa.audio.io import resample
from callqa.audio.metrics import mutual_silence, overtalk
from callqa.audio.vad import detect_speech
from callqa.qa import figures, report
from callqa.qa.index import write_index
from callqa.schemas import CHECK_IDS, QAError, QAResult

SR = 16000


@pytest.fixture(scope="module")
def stereo(realdata) -> Path:
    return (realdata / "overlap" / "fw_stereo_diarization.wav").resolve()


@pytest.fixture(scope="module")
def tracks(stereo) -> dict[str, np.ndarray]:
    x, sr = sf.read(str(stereo), dtype="float32", always_2d=True)
    y = resample(np.ascontiguousarray(x.T), sr, SR)
    return {"agent": y[0], "customer": y[1]}


@pytest.fixture(scope="module")
def activity(tracks) -> dict[str, list[tuple[float, float]]]:
    return {role: detect_speech(x, SR) for role, x in tracks.items()}


def _result(tracks, activity, path, call_id="0123456789abcdef", score=62.5) -> QAResult:
    """A valid QAResult whose metrics come from the real VAD activity of the tracks."""
    ag, cu = activity["agent"], activity["customer"]
    silences = [{"start": s, "end": e, "duration_s": e - s} for s, e in mutual_silence(activity)]
    overtalks = [{**ev, "duration_s": ev["end"] - ev["start"]} for ev in overtalk(activity)]
    a0, a1 = ag[0]
    words = ["he", "began", "a", "confused", "complaint", "<script>alert(1)</script>", "wizard"]
    edges = np.linspace(a0, a1, len(words) + 1)
    agent_words = [
        {"word": w, "start": float(s), "end": float(e), "probability": 0.9}
        for w, s, e in zip(words, edges[:-1], edges[1:], strict=True)
    ]
    bad = agent_words[5]
    c0, c1 = cu[0]
    speech = {"agent": a1 - a0, "customer": c1 - c0}
    checks = [
        {
            "id": "greeting",
            "passed": True,
            "score": 0.81,
            "evidence": [{"start": a0, "end": edges[2], "role": "agent", "text": "he began"}],
            "detail": "best match 0.81 >= 0.55",
        },
        {
            "id": "identity_verification",
            "passed": False,
            "score": 0.12,
            "evidence": [],
            "detail": "no phrase above 0.55 in [0, 60] s",
        },
        {
            "id": "recording_disclosure",
            "passed": True,
            "score": 0.7,
            "evidence": [],
            "detail": "ok",
        },
        {"id": "closing", "passed": True, "score": 0.66, "evidence": [], "detail": "ok"},
        {
            "id": "forbidden_language",
            "passed": False,
            "score": 0.0,
            "evidence": [
                {"start": bad["start"], "end": bad["end"], "role": "agent", "text": bad["word"]}
            ],
            "detail": 'forbidden phrase "<script>" & co',
        },
        {"id": "dead_air", "passed": True, "score": 1.0, "evidence": [], "detail": "none > 5 s"},
        {"id": "overtalk", "passed": None, "score": 0.0, "evidence": [], "detail": "not evaluated"},
        {
            "id": "agent_speech_rate",
            "passed": True,
            "score": 1.0,
            "evidence": [],
            "detail": "150 wpm",
        },
    ]
    return QAResult.model_validate(
        {
            "call_id": call_id,
            "path": str(path),
            "duration_s": len(tracks["agent"]) / SR,
            "channels": 2,
            "sample_rate_hz": SR,
            "roles_from": "channels",
            "segments": [
                {
                    "role": "agent",
                    "start": a0,
                    "end": a1,
                    "text": " ".join(w["word"] for w in agent_words),
                    "words": agent_words,
                },
                {
                    "role": "customer",
                    "start": c0,
                    "end": c1,
                    "text": "the horizon seems extremely distant",
                },
            ],
            "metrics": {
                "call": {"mutual_silence": silences, "overtalk": overtalks},
                "agent": {
                    "talk_time_s": speech["agent"],
                    "speech_rate_wpm": 150.0,
                    "loudness_lufs": -24.3,
                    "snr_db": None,
                    "pitch_mean_hz": 121.0,
                },
                "customer": {
                    "talk_time_s": speech["customer"],
                    "speech_rate_wpm": 171.2,
                    "loudness_lufs": -26.0,
                    "snr_db": 31.5,
                    "pitch_mean_hz": 190.5,
                },
            },
            "checks": checks,
            "score": score,
            "critical_fail": True,
            "asr": {"backend": "faster-whisper", "model": "tiny.en"},
            "scorecard": {"path": "scorecards/default.yaml", "sha256": "ab" * 32},
        }
    )


def _png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_contents(tmp_path, tracks, activity, stereo):
    result = _result(tracks, activity, stereo)
    out_dir = tmp_path / "reports" / "calls"
    path = report.write_report(result, tracks, SR, out_dir)
    assert path == out_dir / "0123456789abcdef.html"
    page = path.read_text(encoding="utf-8")

    # Player linked to the original file, relative to the report folder.
    src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', page).group(1)
    assert src == quote(os.path.relpath(stereo, out_dir))
    assert (out_dir / unquote(src)).resolve() == stereo

    # One inline PNG per role, small; nothing fetched from the network.
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) == 2
    for b64 in pngs:
        width, height = _png_size(b64)
        assert width == 1000 and 200 <= height <= 400
    assert not re.search(r'(src|href)="(https?:)?//', page)

    for check_id in CHECK_IDS:
        assert f'id="check-{check_id}"' in page
    assert page.count('class="badge fail">failed') == 2
    assert page.count('class="badge na">not evaluated') == 1
    for check in result.checks:
        for ev in check.evidence:
            assert f'data-t="{ev.start:.3f}"' in page

    # Transcript: every line seeks; the forbidden word is escaped, marked and its line flagged.
    for seg in result.segments:
        assert f'data-t="{seg.start:.3f}" data-e="{seg.end:.3f}"' in page
    assert "<script>alert" not in page
    assert "<mark>&lt;script&gt;alert(1)&lt;/script&gt;</mark>" in page
    flagged = re.findall(r'<div class="seg flagged".*?</div>', page)
    assert len(flagged) == 1 and "forbidden_language" in flagged[0]
    assert "&quot;&lt;script&gt;&quot; &amp; co" in page  # check detail escaped too

    # Header and key metrics.
    assert "62.5" in page and "CRITICAL FAIL" in page and "tiny.en" in page
    assert "ab" * 6 in page and "scorecards/default.yaml" in page
    assert "Loudness (LUFS)" in page and "-24.3" in page and "Speech rate (wpm)" in page
    ov = result.metrics["call"]["overtalk"]
    assert ov, "the two channels overlap (~0.3-2.5 s), VAD should find overtalk"
    total = sum(ev["duration_s"] for ev in ov)
    assert f"{total:.1f} s in {len(ov)} intervals" in page
    assert f'class="seek chip overtalk" data-t="{ov[0]["start"]:.3f}"' in page


def test_report_shows_emotion_model_and_evidence_probability(tmp_path, tracks, activity, stereo):
    result = _result(tracks, activity, stereo)
    plain = report.render_report(result, tracks, SR, tmp_path)
    assert "<th>Emotion</th>" not in plain and "<th>Model</th>" not in plain
    assert "p=0." not in plain
    checks = [c.model_copy(deep=True) for c in result.checks]
    ev = checks[4].evidence[0]
    checks[4].evidence.append(ev.model_copy(update={"start": ev.start + 1, "probability": 0.93}))
    with_model = QAResult.model_validate(
        {
            **result.model_dump(),
            "checks": [c.model_dump() for c in checks],
            "emotion": {
                "agent": {"label": "angry", "scores": {"angry": 0.71, "neutral": 0.29}},
                "customer": {"label": None, "scores": {}},
            },
            "model": {"path": "models/callqa-qa", "sha256": "d" * 64},
        }
    )
    page = report.render_report(with_model, tracks, SR, tmp_path)
    assert page.count("p=0.93") == 1 and "p=0." not in page.replace("p=0.93", "")
    emotion = re.search(r"<th>Emotion</th><td>(.*?)</td>", page).group(1)
    assert "agent</span> angry (0.71)" in emotion and "customer</span> <span" in emotion
    assert "no speech" in emotion
    assert "<code>models/callqa-qa</code>" in page and "d" * 12 in page


def test_report_audio_src_with_odd_file_name(tmp_path, tracks, activity, stereo):
    audio = tmp_path / "audio dir" / "appel #1 é.wav"
    audio.parent.mkdir()
    shutil.copy(stereo, audio)
    out_dir = tmp_path / "out"
    page = report.write_report(_result(tracks, activity, path=audio), tracks, SR, out_dir)
    src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', page.read_text()).group(1)
    assert src == "../audio%20dir/appel%20%231%20%C3%A9.wav"
    assert (out_dir / unquote(src)).resolve() == audio.resolve()


def test_report_two_minute_call_is_small(tmp_path, tracks, activity, stereo):
    reps = int(np.ceil(120 * SR / len(tracks["agent"])))
    long_tracks = {role: np.tile(x, reps) for role, x in tracks.items()}
    result = _result(tracks, activity, stereo).model_copy(update={"duration_s": 120.0})
    path = report.write_report(result, long_tracks, SR, tmp_path)
    assert path.stat().st_size < 1_000_000


def test_report_single_mono_derived_role(tmp_path, tracks, activity, stereo):
    """Diarized calls may give one role only, or tracks of different lengths."""
    result = _result(tracks, activity, stereo)
    page = report.write_report(result, {"agent": tracks["agent"][: SR * 2]}, SR, tmp_path)
    assert page.read_text().count("data:image/png;base64,") == 1


def test_report_rejects_path_like_call_id(tmp_path, tracks, activity, stereo):
    result = _result(tracks, activity, stereo).model_copy(update={"call_id": "../evil"})
    with pytest.raises(ValueError, match="call_id"):
        report.write_report(result, tracks, SR, tmp_path)


def test_index_and_summary(tmp_path, tracks, activity, stereo):
    low = _result(tracks, activity, stereo, call_id="aaaaaaaaaaaaaaaa", score=40.0)
    high = _result(tracks, activity, stereo, call_id="bbbbbbbbbbbbbbbb", score=90.0)
    err = QAError(
        path="inbox/broken <b>.wav",
        call_id=None,
        error={"code": "unreadable", "message": "broken <b>.wav: truncated"},
    )
    report.write_report(low, tracks, SR, tmp_path)
    index, summary = write_index([high, err, low], tmp_path)
    page = index.read_text(encoding="utf-8")

    # Worst score first, linked when the report exists.
    ids = re.findall(r'<td data-v="([0-9a-f]{16})">', page)
    assert ids == ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
    assert '<a href="aaaaaaaaaaaaaaaa.html">' in page
    assert '<a href="bbbbbbbbbbbbbbbb.html">' not in page  # no report written for it
    assert "table.sortable" in page and 'data-type="num"' in page
    assert "inbox/broken &lt;b&gt;.wav" in page and "truncated" in page and "<b>.wav" not in page

    df = pd.read_csv(summary)
    assert len(df) == 3
    assert list(df.columns[:5]) == ["call_id", "path", "score", "critical_fail", "duration_s"]
    assert set(CHECK_IDS) <= set(df.columns) and df.columns[-1] == "error"
    assert df["score"].tolist()[::2] == [90.0, 40.0]
    assert df.loc[0, "forbidden_language"] == False  # noqa: E712 - numpy bool
    assert df.loc[0, "greeting"] == True  # noqa: E712
    assert pd.isna(df.loc[0, "overtalk"])  # not evaluated
    assert df.loc[1, "error"].startswith("unreadable: ")
    assert pd.isna(df.loc[1, "score"])


def test_waveform_envelope_keeps_extremes():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, SR * 7 + 123).astype(np.float32)
    x[SR * 3 + 17] = 0.99
    t, lo, hi = figures.waveform_envelope(x, SR)
    assert len(t) <= figures.WAVEFORM_BINS
    assert hi.max() == pytest.approx(0.99) and lo.min() == x.min()
    assert abs(t[hi.argmax()] - 3.0) < 7.2 / figures.WAVEFORM_BINS * 2


def test_spectrogram_peak_at_tone_frequency():
    t = np.arange(SR * 3) / SR
    x = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    db, f_max_hz = figures.spectrogram_db(x, SR)
    assert db.shape[1] <= figures.SPEC_COLUMNS and f_max_hz == SR / 2
    peak_hz = db.mean(axis=1).argmax() * f_max_hz / (db.shape[0] - 1)
    assert abs(peak_hz - 1000) < SR / figures.SPEC_N_FFT


@pytest.mark.parametrize(
    ("t", "expected"), [(0, "0:00.0"), (59.96, "1:00.0"), (75.25, "1:15.2"), (3725.0, "1:02:05.0")]
)
def test_fmt_time(t, expected):
    assert figures.fmt_time(t) == expected
